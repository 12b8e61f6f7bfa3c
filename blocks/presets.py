"""The papers' models as one-line functions returning an ``ArchSpec``.

Each names the table it comes from. They are the baselines of the reproduction specs
and the subjects of the faithfulness tests.
"""

from __future__ import annotations

import blocks.mixers  # noqa: F401  (fills MIXERS)
from blocks.registry import MIXERS
from blocks.spec import ArchSpec, EmbeddingSpec, MixerSpec, StageSpec, Transition

# Vision X-formers (Jeevan & Sethi 2022), section 4: CIFAR-10 at patch 1, width 128,
# 4 layers, 4 heads of 32, MLP 256, and each mixer with its reference settings.
VIX_MIXERS = {
    "attention": {"heads": 4, "head_dim": 32},
    "performer": {"heads": 4, "head_dim": 32, "qkv_bias": True, "features": 256, "kernel": "relu"},
    "linformer": {"heads": 4, "head_dim": 32, "k": 256, "share_kv": True, "one_kv_head": True},
    "nystrom": {"heads": 4, "head_dim": 32, "landmarks": 64, "conv_kernel": 33},
    "fourier": {"norm": "backward"},
    "mlp_mixer": {"token_ratio": 0.5},
}


def vix(mixer: str = "attention", *, hybrid: bool = False, positional: str = "learned") -> ArchSpec:
    """ViT / ViP / ViL / ViN / FNet / MLP-Mixer of ViX Tables 1 (linear), 2 (hybrid) and 5 (rope)."""
    embedding = EmbeddingSpec("conv", 1, {"channels": [32, 64]}) if hybrid else EmbeddingSpec("patch", 1)
    stage = StageSpec(depth=4, width=128, mlp_ratio=2.0, mixer=MixerSpec(mixer, VIX_MIXERS[mixer]))
    return ArchSpec((32, 32), 10, (stage,), embedding=embedding, positional=positional, head=_head_for(mixer))


# GFNet (Rao et al. 2021), Table "Complexity and Variants": patch 16, MLP ratio 4, GAP head.
GFNET = {"ti": (256, 12), "xs": (384, 12), "s": (384, 19), "b": (512, 19)}


def gfnet(size: str = "xs", *, image_size: int = 224, num_classes: int = 1000) -> ArchSpec:
    """GFNet-Ti / XS / S / B at 224x224 (about 7 / 16 / 25 / 43 M parameters)."""
    width, depth = GFNET[size]
    stage = StageSpec(depth=depth, width=width, mixer=MixerSpec("global_filter"))
    return ArchSpec((image_size, image_size), num_classes, (stage,), embedding=EmbeddingSpec("patch", 16))


def vit(
    mixer: str = "attention",
    *,
    image_size: int = 224,
    patch_size: int = 16,
    width: int = 384,
    depth: int = 12,
    heads: int = 6,
    num_classes: int = 1000,
) -> ArchSpec:
    """A plain isotropic ViT with any mixer (the FiT scaling comparison: same width and
    depth, only the mixer differs)."""
    options = {"heads": heads} if mixer in MIXERS and MIXERS[mixer].takes("heads") else {}
    stage = StageSpec(depth=depth, width=width, mixer=MixerSpec(mixer, options))
    return ArchSpec(
        (image_size, image_size),
        num_classes,
        (stage,),
        embedding=EmbeddingSpec("patch", patch_size),
        head=_head_for(mixer),
    )


def _head_for(mixer: str) -> str:
    """A class token where the mixer can carry one, else global average pooling. An
    unknown mixer gets the class token and is left for the builder to refuse by name."""
    return "cls" if mixer not in MIXERS or MIXERS[mixer].cls_token else "gap"


def funnel_vit(
    layout: tuple[int, ...] = (6, 6),
    *,
    mode: str = "mean",
    stride=(1, 2),
    query_only: bool = True,
    width: int = 768,
    heads: int = 12,
):
    """Funnel-ViT (Zhang 2022) Table 2 on ViT-B/16: blocks of ``layout`` layers, each block
    after the first pooled by ``stride`` (1x2 halves the 197 tokens to 99, then 50; 2x2
    quarters them), the first layer after a pool attending from pooled queries."""
    strides = [stride, stride[::-1]] * len(layout)
    stages = tuple(
        StageSpec(
            depth=d,
            width=width,
            mixer=MixerSpec("attention", {"heads": heads}),
            transition=Transition("pool", mode, strides[i - 1], query_only) if i else Transition(),
        )
        for i, d in enumerate(layout)
    )
    return ArchSpec((224, 224), 1000, stages, embedding=EmbeddingSpec("patch", 16), head="cls")


_VIX_NAMES = {"attention": "vit", "performer": "vip", "linformer": "vil", "nystrom": "vin", "fourier": "fnet"}

# Named presets, as ``python main.py cost`` lists them.
PRESETS = {
    **{f"vix-{short}": (lambda m=m: vix(m)) for m, short in _VIX_NAMES.items()},
    **{f"vix-hybrid-{short}": (lambda m=m: vix(m, hybrid=True)) for m, short in _VIX_NAMES.items()},
    **{f"gfnet-{size}": (lambda s=size: gfnet(s)) for size in GFNET},
    "funnel-b12": lambda: funnel_vit((12,)),
    "funnel-b6-6": lambda: funnel_vit((6, 6)),
    "funnel-b4-4-4": lambda: funnel_vit((4, 4, 4)),
    "funnel-b6-6-quarter": lambda: funnel_vit((6, 6), mode="max", stride=(2, 2)),
}

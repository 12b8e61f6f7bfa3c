"""The papers' models as one-line functions returning an ``ArchSpec``.

Each names the table it comes from. They are the baselines of the reproduction specs
and the subjects of the faithfulness tests.
"""

from __future__ import annotations

from dataclasses import dataclass

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
    # Table 1's 8,533,002 parameters fix both MLP widths: the token MLP as wide as the 1,024
    # tokens and the channel MLP as wide as the 128 channels (the only other whole-number
    # solution has widths 767 and 2,177). No class token and no position table (lucidrains'
    # MLPMixer, which the paper's code builds on).
    "mlp_mixer": {"token_hidden": 1024},
}


def vix(mixer: str = "attention", *, hybrid: bool = False, positional: str | None = None) -> ArchSpec:
    """ViT / ViP / ViL / ViN / FNet / MLP-Mixer of ViX Tables 1 (linear), 2 (hybrid) and 5
    (rope). ``positional``: learned, or none for the MLP-Mixer, unless given."""
    embedding = EmbeddingSpec("conv", 1, {"channels": [32, 64]}) if hybrid else EmbeddingSpec("patch", 1)
    mixer_mlp = mixer == "mlp_mixer"
    options = VIX_MIXERS.get(mixer, {})
    stage = StageSpec(depth=4, width=128, mlp_ratio=1.0 if mixer_mlp else 2.0, mixer=MixerSpec(mixer, options))
    positional = positional or ("none" if mixer_mlp else "learned")
    return ArchSpec((32, 32), 10, (stage,), embedding=embedding, positional=positional, head=_head_for(mixer))


# GFNet (Rao et al. 2021), Table "Complexity and Variants": patch 16, MLP ratio 4, GAP head;
# the official block (one residual around filter and MLP) and LayerNorm eps 1e-6.
GFNET = {"ti": (256, 12), "xs": (384, 12), "s": (384, 19), "b": (512, 19)}


def gfnet(size: str = "xs", *, image_size: int = 224, num_classes: int = 1000) -> ArchSpec:
    """GFNet-Ti / XS / S / B at 224x224 (7.5 / 16.0 / 24.9 / 43.1 M parameters)."""
    width, depth = GFNET[size]
    stage = StageSpec(depth=depth, width=width, mixer=MixerSpec("global_filter"), block="shared")
    return ArchSpec(
        (image_size, image_size), num_classes, (stage,), embedding=EmbeddingSpec("patch", 16), norm_eps=1e-6
    )


# timm's ViT and DeiT (Dosovitskiy et al. 2021, Touvron et al. 2021): patch 16, class
# token, learned positions, q/k/v biases, MLP ratio 4, LayerNorm eps 1e-6.
DEIT = {"deit-ti": (192, 3), "deit-s": (384, 6), "vit-b16": (768, 12)}


def deit(name: str = "deit-ti", *, image_size: int = 224, num_classes: int = 1000) -> ArchSpec:
    """DeiT-Ti, DeiT-S or ViT-B/16 (DeiT-B) as timm builds them: 12 pre-norm blocks."""
    width, heads = DEIT[name]
    mixer = MixerSpec("attention", {"heads": heads, "qkv_bias": True})
    stage = StageSpec(depth=12, width=width, mixer=mixer)
    size = (image_size, image_size)
    return ArchSpec(size, num_classes, (stage,), embedding=EmbeddingSpec("patch", 16), head="cls", norm_eps=1e-6)


def mixer_b16(*, image_size: int = 224, num_classes: int = 1000) -> ArchSpec:
    """Mixer-B/16 (Tolstikhin et al. 2021, Table 1): 12 layers of width 768, token MLP 384,
    channel MLP 3072; no position table, global average pooling; eps 1e-6 as timm."""
    stage = StageSpec(depth=12, width=768, mixer=MixerSpec("mlp_mixer", {"token_hidden": 384}))
    size = (image_size, image_size)
    return ArchSpec(size, num_classes, (stage,), embedding=EmbeddingSpec("patch", 16), positional="none", norm_eps=1e-6)


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
    quarters them), the first layer after a pool attending from pooled queries. ViT-B/16's
    blocks as timm builds them (q/k/v biases, eps 1e-6): pooling adds no parameter."""
    strides = [stride, stride[::-1]] * len(layout)
    stages = tuple(
        StageSpec(
            depth=d,
            width=width,
            mixer=MixerSpec("attention", {"heads": heads, "qkv_bias": True}),
            transition=Transition("pool", mode, strides[i - 1], query_only) if i else Transition(),
        )
        for i, d in enumerate(layout)
    )
    return ArchSpec((224, 224), 1000, stages, embedding=EmbeddingSpec("patch", 16), head="cls", norm_eps=1e-6)


_VIX_NAMES = {
    "attention": "vit",
    "performer": "vip",
    "linformer": "vil",
    "nystrom": "vin",
    "fourier": "fnet",
    "mlp_mixer": "mixer",
}

# Named presets, as ``python main.py cost`` lists them.
PRESETS = {
    **{f"vix-{short}": (lambda m=m: vix(m)) for m, short in _VIX_NAMES.items()},
    **{f"vix-hybrid-{short}": (lambda m=m: vix(m, hybrid=True)) for m, short in _VIX_NAMES.items()},
    **{f"gfnet-{size}": (lambda s=size: gfnet(s)) for size in GFNET},
    **{name: (lambda n=name: deit(n)) for name in DEIT},
    "mixer-b16": mixer_b16,
    "funnel-b12": lambda: funnel_vit((12,)),
    "funnel-b6-6": lambda: funnel_vit((6, 6)),
    "funnel-b4-4-4": lambda: funnel_vit((4, 4, 4)),
    "funnel-b6-6-quarter": lambda: funnel_vit((6, 6), mode="max", stride=(2, 2)),
}


@dataclass(frozen=True)
class Published:
    """A count as a preset's source prints it. ``layer``: the Vision X-formers tables'
    convention (each module's own weight and bias: no class token, position table or bare
    parameter); else every parameter. ``gmacs`` where the source gives one (GFLOPs as
    multiply-adds)."""

    params: int
    source: str
    layer: bool = False
    gmacs: float | None = None


_VIX_TABLES = {  # (table 1 linear, table 2 hybrid)
    "vit": (530_442, 623_178),
    "vip": (531_978, 624_714),
    "vil": (415_754, 508_490),
    "vin": (530_970, 623_706),
    "fnet": (267_786, 360_522),
    "mixer": (8_533_002, 8_625_738),
}
_TIMM = {  # preset: (parameters, timm's model)
    "deit-ti": (5_717_416, "deit_tiny_patch16_224"),
    "deit-s": (22_050_664, "deit_small_patch16_224"),
    "vit-b16": (86_567_656, "vit_base_patch16_224"),
}
PUBLISHED = {
    **{f"vix-{short}": Published(linear, "ViX Table 1", layer=True) for short, (linear, _) in _VIX_TABLES.items()},
    **{f"vix-hybrid-{s}": Published(hybrid, "ViX Table 2", layer=True) for s, (_, hybrid) in _VIX_TABLES.items()},
    # Totals of the official models (raoyongming/GFNet), position table included.
    "gfnet-ti": Published(7_511_784, "GFNet (official code)", gmacs=1.3),
    "gfnet-xs": Published(15_985_768, "GFNet (official code)", gmacs=2.9),
    "gfnet-s": Published(24_869_608, "GFNet (official code)", gmacs=4.5),
    "gfnet-b": Published(43_120_616, "GFNet (official code)", gmacs=7.9),
    **{name: Published(n, f"timm {timm_name}") for name, (n, timm_name) in _TIMM.items()},
    "mixer-b16": Published(59_880_472, "timm mixer_b16_224"),
    **{name: Published(86_567_656, "ViT-B/16 (timm); pooling adds none") for name in PRESETS if "funnel" in name},
}

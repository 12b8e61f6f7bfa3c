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
# 4 layers, 4 heads of 32, MLP 256, and each mixer as the authors' code sets it
# (pranavphoenix/VisionXformer Models/ViP.py, ViL.py, ViN.py): Performer's softmax kernel
# at its default int(32 ln 32) = 110 features, Linformer k = 64.
VIX_MIXERS = {
    "attention": {"heads": 4, "head_dim": 32},
    "performer": {"heads": 4, "head_dim": 32, "qkv_bias": True, "features": 110},
    "linformer": {"heads": 4, "head_dim": 32, "k": 64, "share_kv": True, "one_kv_head": True},
    "nystrom": {"heads": 4, "head_dim": 32, "landmarks": 64, "conv_kernel": 33},
    "fourier": {"norm": "backward"},
    # Table 1's 8,533,002 parameters fix both MLP widths: the token MLP as wide as the 1,024
    # tokens and the channel MLP as wide as the 128 channels (the only other whole-number
    # solution has widths 767 and 2,177). No class token and no position table (lucidrains'
    # MLPMixer, which the paper's code builds on).
    "mlp_mixer": {"token_hidden": 1024},
}


_HYBRID_STEM = EmbeddingSpec("conv", 1, {"channels": [32, 64]})  # Table 2's: 3 -> 32 -> 64 -> width, 3x3


def vix(mixer: str = "attention", *, hybrid: bool = False, positional: str | None = None) -> ArchSpec:
    """ViT / ViP / ViL / ViN / FNet / MLP-Mixer of ViX Tables 1 (linear), 2 (hybrid) and 5
    (rope). ``positional``: learned, or none for the MLP-Mixer, unless given."""
    embedding = _HYBRID_STEM if hybrid else EmbeddingSpec("patch", 1)
    mixer_mlp = mixer == "mlp_mixer"
    options = VIX_MIXERS.get(mixer, {})
    stage = StageSpec(depth=4, width=128, mlp_ratio=1.0 if mixer_mlp else 2.0, mixer=MixerSpec(mixer, options))
    positional = positional or ("none" if mixer_mlp else "learned")
    return ArchSpec((32, 32), 10, (stage,), embedding=embedding, positional=positional, head=_head_for(mixer))


# Vision X-formers Tables 3 and 4: LeViT, CCT, CvT and PiT with their attention swapped
# (the X arms). The settings are the authors' notebooks' (Models/LeViN.ipynb, CCN.py,
# ccp.py, CvN.ipynb, CvP.ipynb) and the lucidrains/vit-pytorch classes they copy, at
# CIFAR-10's 32x32 and 10 classes; spaces/reproduce/vix_table3.yaml and vix_table4.yaml say
# where each size comes from.
_X_MIXERS = {m: VIX_MIXERS[m] for m in ("performer", "linformer", "nystrom")}
VIX_FAMILY_MIXERS = {
    # LeViT's own attention: keys and values 32 wide per head, its position bias removed.
    "levit": {"levit": {"heads": 4, "head_dim": 32, "value_dim": 32}, **_X_MIXERS},
    "cct": {"attention": VIX_MIXERS["attention"], **_X_MIXERS},
    # CvT's attention: heads of 64 behind 3x3 depthwise-conv projections, keys and values unstrided.
    "cvt": {"attention": {"heads": 4, "head_dim": 64, "proj_kernel": 3}, **_X_MIXERS},
    "pit": {"attention": VIX_MIXERS["attention"], **_X_MIXERS},
}


def levix(mixer: str = "levit") -> ArchSpec:
    """LeViT / LeViP / LeViL / LeViN (ViX Table 3): one stage of 4 blocks at width 128 over
    a 32x32 grid behind LeViT's stem of three 3x3 convs (stride 1 here, no activation),
    residuals without norms, a GELU MLP of ratio 2, no position encoding, no final norm."""
    stem = EmbeddingSpec(
        "conv_tokenizer", 1, {"channels": [32, 64], "bias": True, "activation": "none", "pool_kernel": 0}
    )
    stage = StageSpec(4, 128, MixerSpec(mixer, VIX_FAMILY_MIXERS["levit"].get(mixer, {})), mlp_ratio=2.0, block="bare")
    return ArchSpec((32, 32), 10, (stage,), embedding=stem, positional="none", head="gap", final_norm=False)


def ccx(mixer: str = "attention") -> ArchSpec:
    """CCT / CCP / CCL / CCN (ViX Table 3): CCT's tokenizer of three 3x3 convs (3 -> 64 ->
    64 -> 128, no bias, the first at stride 2, each with ReLU and a 3x3 max pool at stride
    1), a learned position table, 4 blocks of CCT's wiring with MLP ratio 4 (the notebook's
    ``mlp_radio=1.`` is a misspelt keyword, so the default 4 stands), sequence pooling."""
    stem = EmbeddingSpec("conv_tokenizer", 2, {"channels": [64, 64], "stride": [2, 1, 1], "pool_stride": 1})
    stage = StageSpec(4, 128, MixerSpec(mixer, VIX_FAMILY_MIXERS["cct"].get(mixer, {})), mlp_ratio=4.0, block="mid")
    return ArchSpec((32, 32), 10, (stage,), embedding=stem, positional="learned", head="seq_pool")


def cvx(mixer: str = "attention") -> ArchSpec:
    """CvT / CvP / CvL / CvN (ViX Table 3): three stages of 1, 1 and 2 blocks at width 128,
    each entered by a 3x3 stride-1 conv token embedding with LayerNorm (the X arms' code
    fixes a 32x32 grid, so no stage strides), pre-norm blocks with MLP ratio 2, global
    average pooling, no position encoding, no final norm."""
    options = VIX_FAMILY_MIXERS["cvt"].get(mixer, {})
    embed = Transition("conv_embed", options={"kernel_size": 3, "stride": 1})
    stages = tuple(
        StageSpec(depth, 128, MixerSpec(mixer, options), mlp_ratio=2.0, transition=embed if i else Transition())
        for i, depth in enumerate((1, 1, 2))
    )
    first = EmbeddingSpec("overlap", 1, {"kernel_size": 3})  # conv 3 -> 128, 3x3, then LayerNorm
    return ArchSpec((32, 32), 10, stages, embedding=first, positional="none", head="gap", final_norm=False)


def pix(mixer: str = "attention", *, hybrid: bool = False) -> ArchSpec:
    """PiT / PiN / PiP and their hybrids (ViX Table 4): 2 blocks at width 128 over the
    32x32 grid, PiT's pooling to width 256 over 16x16, 2 more blocks; heads of 32, an MLP
    256 wide in both stages, a class token and a learned position table. Linear patch
    embedding at patch 1, or Table 2's conv stem."""
    options = VIX_FAMILY_MIXERS["pit"].get(mixer, {})
    stages = (
        StageSpec(2, 128, MixerSpec(mixer, options), mlp_ratio=2.0),
        StageSpec(2, 256, MixerSpec(mixer, options), mlp_ratio=1.0, transition=Transition("pit_pool")),
    )
    embedding = _HYBRID_STEM if hybrid else EmbeddingSpec("patch", 1)
    return ArchSpec((32, 32), 10, stages, embedding=embedding, positional="learned", head="cls")


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

# The X arms' names: the family's stem and the mixer's letter (CCT with Performer: CCP).
_FAMILY_NAMES = {"levit": ("levi", levix), "cct": ("cc", ccx), "cvt": ("cv", cvx), "pit": ("pi", pix)}
_LETTERS = {"levit": "t", "attention": "t", "performer": "p", "linformer": "l", "nystrom": "n"}
_FAMILY_PRESETS = {
    f"vix-{stem}{_LETTERS[m]}": (lambda make=make, m=m: make(m))
    for family, (stem, make) in _FAMILY_NAMES.items()
    for m in VIX_FAMILY_MIXERS[family]
    if not (family == "pit" and m == "linformer")  # Table 4 has no PiL
}

# Named presets, as ``python main.py cost`` lists them.
PRESETS = {
    **_FAMILY_PRESETS,
    **{f"vix-hybrid-pi{_LETTERS[m]}": (lambda m=m: pix(m, hybrid=True)) for m in ("attention", "nystrom", "performer")},
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
    multiply-adds). ``difference``: the measured count minus this one where they differ
    for a reason ``note`` gives."""

    params: int
    source: str
    layer: bool = False
    gmacs: float | None = None
    note: str = ""
    difference: int = 0  # measured minus published, where ``note`` explains it


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
_VIX_FAMILY_TABLES = {  # ViX Tables 3 and 4, "Parameters"
    **{"vix-levit": 624_970, "vix-levip": 662_410, "vix-levil": 506_186, "vix-levin": 621_402},
    **{"vix-cct": 905_547, "vix-ccp": 907_083, "vix-ccl": 790_859, "vix-ccn": 906_075},
    **{"vix-cvt": 1_099_786, "vix-cvp": 827_914, "vix-cvl": 711_690, "vix-cvn": 826_906},
    **{"vix-pit": 897_034, "vix-pin": 897_562, "vix-pip": 898_570},
    **{"vix-hybrid-pit": 989_770, "vix-hybrid-pin": 990_298, "vix-hybrid-pip": 991_306},
}
_CVT_NORMS = (
    "the table leaves out the 11 LayerNorms (2,816 parameters): lucidrains' CvT normalises over "
    "channels with a module that keeps its gain and bias as bare g and b"
)
_VIX_FAMILY_DIFFERENCES = {"vix-levip": -40_000, **{f"vix-cv{x}": 2_816 for x in "tpln"}}
_VIX_FAMILY_NOTES = {
    "vix-levip": (
        "a misprint: the model is 622,410 (40,000 fewer is 10,000 per block, no multiple of the width), "
        "and the table's own Size column, 77.14 MB, is torchsummary's estimate for 622,410"
    ),
    **{f"vix-cv{x}": _CVT_NORMS for x in "tpln"},
}
PUBLISHED = {
    **{
        name: Published(
            n,
            f"ViX Table {3 if 'pi' not in name else 4}",
            layer=True,
            note=_VIX_FAMILY_NOTES.get(name, ""),
            difference=_VIX_FAMILY_DIFFERENCES.get(name, 0),
        )
        for name, n in _VIX_FAMILY_TABLES.items()
    },
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


def published_for(arch: ArchSpec) -> tuple[str, Published] | None:
    """The preset ``arch`` is, with its source's count, if it is one (``validate`` shows a
    reproduction arm's count beside the paper's)."""
    for name, make in PRESETS.items():
        if name in PUBLISHED and make() == arch:
            return name, PUBLISHED[name]
    return None

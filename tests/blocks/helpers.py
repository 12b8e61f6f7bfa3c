"""Small architectures for tests."""

from blocks import ArchSpec, EmbeddingSpec, MixerSpec, StageSpec, Transition
from blocks.registry import MIXERS


def small_options(name: str) -> dict:
    """Options that keep every mixer tiny (2 heads of 8 where it has heads)."""
    opts = {"heads": 2} if MIXERS[name].takes("heads") else {}
    extra = {
        "performer": {"features": 16},
        "linformer": {"k": 8},
        "nystrom": {"landmarks": 4},
        "fft_conv": {"kernel_size": 5},
        # LeViT starts its attention's output gain at zero: no gradient would reach the
        # branch at the first step, nor would its output depend on the input, by design.
        "levit": {"zero_init": False},
    }
    return {**opts, **extra.get(name, {})}


def heads_for(name: str) -> list[str]:
    return ["cls", "gap", "seq_pool"] if MIXERS[name].cls_token else ["gap", "seq_pool"]


def small_arch(mixer: str, *, head: str = "gap", positional: str = "learned", **stage_kw) -> ArchSpec:
    """16x16 images, patch 4 (a 4x4 grid), one stage of two blocks at width 16."""
    stage = StageSpec(depth=2, width=16, mlp_ratio=2.0, mixer=MixerSpec(mixer, small_options(mixer)), **stage_kw)
    return ArchSpec((16, 16), 5, (stage,), embedding=EmbeddingSpec("patch", 4), head=head, positional=positional)


def two_stage(first: str, second: str, transition: Transition, *, head: str = "gap", positional: str = "learned"):
    stages = (
        StageSpec(depth=1, width=16, mixer=MixerSpec(first, small_options(first))),
        StageSpec(depth=1, width=24, mixer=MixerSpec(second, small_options(second)), transition=transition),
    )
    return ArchSpec((16, 16), 5, stages, embedding=EmbeddingSpec("patch", 2), head=head, positional=positional)

"""archsweep's model half: token mixers, embeddings, positional encodings, funnel pooling,
the stage-graph builder and cost measurement. Pure PyTorch.

    from blocks import ArchSpec, StageSpec, MixerSpec, build, summary
    arch = ArchSpec((32, 32), 10, (StageSpec(2, 64, MixerSpec("fourier")),))
    model = build(arch)          # nn.Module: (B, 3, 32, 32) -> (B, 10)
"""

from blocks.builder import ArchError, Problem, build, check, summary, token_grids
from blocks.model import WIRINGS
from blocks.registry import EMBEDDINGS, HEADS, MIXERS, POSITIONALS, TRANSITIONS, describe
from blocks.spec import ArchSpec, EmbeddingSpec, MixerSpec, StageSpec, Transition, from_dict, to_dict

__all__ = [
    "EMBEDDINGS",
    "HEADS",
    "MIXERS",
    "POSITIONALS",
    "TRANSITIONS",
    "WIRINGS",
    "ArchError",
    "ArchSpec",
    "EmbeddingSpec",
    "MixerSpec",
    "Problem",
    "StageSpec",
    "Transition",
    "build",
    "check",
    "describe",
    "from_dict",
    "summary",
    "to_dict",
    "token_grids",
]

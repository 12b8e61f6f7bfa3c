"""Imported once by the fork server that trials' processes come from (runs.worker), so
each trial starts warm: torch, the blocks, and what torch's FLOP counter imports on its
first use (sympy and friends: about 2 s, which every trial would otherwise pay again)."""

import torch

from blocks import ArchSpec, MixerSpec, StageSpec, build
from blocks.cost import count_flops
from runs import worker  # noqa: F401 (the trials' entry point)

_TINY = ArchSpec(
    image_size=(8, 8), num_classes=2, stages=(StageSpec(depth=1, width=8, mixer=MixerSpec("attention", {"heads": 2})),)
)
# On the meta device, not through blocks.cost.flops_per_image (which counts a model this
# small on the CPU): a CPU op here starts torch's OpenMP threads in the fork server, and a
# trial forked from it hangs at its first parallel op.
count_flops(build(_TINY, device="meta"), torch.empty(1, 3, 8, 8, device="meta"))

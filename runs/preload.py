"""Imported once by the fork server that trials' processes come from (runs.worker), so
each trial starts warm: torch, the blocks, and what torch's FLOP counter imports on its
first use (sympy and friends: about 2 s, which every trial would otherwise pay again)."""

from blocks import ArchSpec, MixerSpec, StageSpec
from blocks.cost import flops_per_image
from runs import worker  # noqa: F401 (the trials' entry point)

_TINY = StageSpec(depth=1, width=8, mixer=MixerSpec("attention", {"heads": 2}))
flops_per_image(ArchSpec(image_size=(8, 8), num_classes=2, stages=(_TINY,)))

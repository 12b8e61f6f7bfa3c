"""Float32 islands inside mixed-precision models."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext

import torch


def autocast_off(t: torch.Tensor):
    """A context that disables autocast on ``t``'s device (nothing to disable on meta)."""
    if t.device.type in ("cpu", "cuda", "xpu", "mps"):
        return torch.autocast(t.device.type, enabled=False)
    return nullcontext()


def in_float32(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """Run ``fn`` on ``x`` in float32 with autocast off, cast the result back.

    FFTs reject bfloat16 on CPU and CUDA, and CUDA float16 FFTs only take power-of-two
    sizes; CUDA autocast does not list the FFT ops, so half inputs would reach them.
    """
    with autocast_off(x):
        return fn(x.float()).to(x.dtype)

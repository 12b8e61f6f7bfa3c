"""FNet Fourier token mixing (Lee-Thorp et al. 2021), as FiT uses it for images."""

from __future__ import annotations

import torch

from blocks.mixers._common import Mixer, in_float32, one_of
from blocks.registry import MIXERS, register


@register(MIXERS, "fourier")
class FourierMix(Mixer):
    """FNet: real part of the 2-D FFT over tokens and hidden; no parameters, O(ND log ND).

    ``norm="backward"`` is FNet's unnormalised transform: its output is about
    sqrt(N*D/2) times its input, which post-norm blocks absorb but which swamps a
    pre-norm residual stream, hence the default ``"ortho"``.
    """

    cls_token = True

    def __init__(self, dim: int, *, tokens_hw: tuple[int, int], prefix: int = 0, norm: str = "ortho") -> None:
        super().__init__()
        self.norm = one_of("norm", norm, ("ortho", "backward", "forward"))

    def forward(self, x: torch.Tensor, hw=None) -> torch.Tensor:
        # (B, N, D): FFT over hidden, then over tokens; keep the real part.
        return in_float32(lambda t: torch.fft.fft2(t, dim=(-2, -1), norm=self.norm).real, x)

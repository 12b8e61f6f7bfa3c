"""GFNet global filter layer (Rao et al. 2021, raoyongming/GFNet)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from blocks.mixers._common import Mixer, in_float32
from blocks.registry import MIXERS, register


@torch.no_grad()
def _init_filter(h: int, w: int, dim: int) -> torch.Tensor:
    return torch.randn(h, w // 2 + 1, dim, 2) * 0.02


@register(MIXERS, "global_filter")
class GlobalFilter(Mixer):
    """GFNet: rfft2 over the token grid, a learned complex filter, irfft2; O(ND log N)."""

    def __init__(self, dim: int, *, tokens_hw: tuple[int, int], prefix: int = 0) -> None:
        super().__init__()
        h, w = tokens_hw
        # (H, W//2+1, D, 2): real and imaginary parts of the half spectrum.
        self.complex_weight = nn.Parameter(_init_filter(h, w, dim))

    def filter_for(self, hw: tuple[int, int]) -> torch.Tensor:
        """The complex filter ``(h, w//2+1, D)``, resized bicubically (as GFNet does
        when fine-tuning at a new resolution) if the grid differs from the built one."""
        weight = self.complex_weight
        h, w = hw
        if weight.shape[:2] != (h, w // 2 + 1):
            grid = weight.permute(2, 3, 0, 1).flatten(0, 1)[None]  # (1, 2D, H, W')
            grid = F.interpolate(grid, size=(h, w // 2 + 1), mode="bicubic", align_corners=True)
            weight = grid[0].unflatten(0, (-1, 2)).permute(2, 3, 0, 1)
        return torch.view_as_complex(weight.float().contiguous())

    def forward(self, x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        B, N, D = x.shape
        h, w = hw

        def mix(t: torch.Tensor) -> torch.Tensor:
            t = t.reshape(B, h, w, D)
            spectrum = torch.fft.rfft2(t, dim=(1, 2), norm="ortho")  # (B, h, w//2+1, D)
            t = torch.fft.irfft2(spectrum * self.filter_for(hw), s=(h, w), dim=(1, 2), norm="ortho")
            return t.reshape(B, N, D)

        return in_float32(mix, x)

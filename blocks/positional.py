"""Positional encodings, applied to ``(B, N, D)`` tokens (class token first, if any)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from blocks.registry import POSITIONALS, register
from blocks.rope import grid_coords


@register(POSITIONALS, "learned")
class LearnedPositions(nn.Module):
    """A learned table over the grid (and class token); resized bicubically for a new grid."""

    rotary = False

    def __init__(self, dim: int, *, tokens_hw: tuple[int, int], prefix: int) -> None:
        super().__init__()
        self.hw, self.prefix = tuple(tokens_hw), prefix
        self.table = nn.Parameter(torch.zeros(1, prefix + tokens_hw[0] * tokens_hw[1], dim))
        nn.init.trunc_normal_(self.table, std=0.02)

    def forward(self, x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        table = self.table
        if tuple(hw) != self.hw:
            head, grid = table[:, : self.prefix], table[:, self.prefix :]
            grid = grid.reshape(1, *self.hw, -1).permute(0, 3, 1, 2)  # (1, D, h, w)
            grid = F.interpolate(grid, size=tuple(hw), mode="bicubic", align_corners=False)
            table = torch.cat([head, grid.flatten(2).transpose(1, 2)], dim=1)
        return x + table


def sincos_table(dim: int, hw: tuple[int, int], device=None) -> torch.Tensor:
    """``(h*w, dim)`` fixed 2-D sin-cos table (MAE): half the channels encode the row,
    half the column, each as sin and cos at geometric frequencies."""
    if dim % 4:
        raise ValueError(f"sincos needs a width divisible by 4, got {dim}")
    ys, xs = grid_coords(hw, device=device)
    freqs = 1.0 / 10000 ** (torch.arange(dim // 4, device=device, dtype=torch.float32) / (dim // 4))
    parts = [torch.outer(c, freqs) for c in (ys, xs)]
    return torch.cat([f(p) for p in parts for f in (torch.sin, torch.cos)], dim=1)


@register(POSITIONALS, "sincos")
class SinCosPositions(nn.Module):
    """Fixed 2-D sine-cosine positions (MAE); recomputed for a new grid, class token gets none."""

    rotary = False

    def __init__(self, dim: int, *, tokens_hw: tuple[int, int], prefix: int) -> None:
        super().__init__()
        self.dim, self.prefix = dim, prefix
        sincos_table(dim, (1, 1))  # refuse a bad width at build time
        self.register_buffer("table", sincos_table(dim, tokens_hw), persistent=False)

    def forward(self, x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        table = self.table
        if table.shape[0] != hw[0] * hw[1]:
            table = sincos_table(self.dim, hw, device=x.device)
        grid = x[:, self.prefix :] + table.to(x.dtype)
        return torch.cat([x[:, : self.prefix], grid], dim=1)


@register(POSITIONALS, "rope")
class RotaryPositions(nn.Module):
    """2-D axial rotary embedding on the queries and keys of every mixer (class token unrotated)."""

    rotary = True

    def __init__(self, dim: int, *, tokens_hw: tuple[int, int], prefix: int) -> None:
        super().__init__()

    def forward(self, x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        return x  # the rotation happens inside the mixers (blocks.rope.Rotary2D)


@register(POSITIONALS, "none")
class NoPositions(nn.Module):
    """No position information (the mixers must supply it, as convolutions and filters do)."""

    rotary = False

    def __init__(self, dim: int, *, tokens_hw: tuple[int, int], prefix: int) -> None:
        super().__init__()

    def forward(self, x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        return x

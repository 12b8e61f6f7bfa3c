"""2-D axial rotary position embedding (RoPE-Axial, Heo et al. 2024, naver-ai/rope-vit).

Half of a head's rotation pairs turn with the token's column, half with its row, at
frequencies ``theta ** (-4i / d)``. Prefix (class) tokens are left unrotated. The
rotation runs in float32 with autocast off and is cast back, as in the reference.
"""

from __future__ import annotations

import torch
from torch import nn

from blocks.precision import autocast_off


def grid_coords(
    hw: tuple[int, int],
    stride: tuple[int, int] = (1, 1),
    device: torch.device | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Row and column coordinates of a raster-ordered ``hw`` grid, each ``(h*w,)``.

    With ``stride`` the grid is a pooled one and each token sits at the centroid of its
    window in the unpooled frame: what a pool-query-only query must be rotated by so
    that it lines up with the unpooled keys.
    """
    h, w = hw
    sy, sx = stride
    ys = torch.arange(h, device=device, dtype=torch.float32) * sy + (sy - 1) / 2
    xs = torch.arange(w, device=device, dtype=torch.float32) * sx + (sx - 1) / 2
    return ys.repeat_interleave(w), xs.repeat(h)


class Rotary2D(nn.Module):
    """Rotates queries or keys ``(B, H, N, d)`` by their 2-D grid position."""

    def __init__(self, head_dim: int, *, theta: float = 100.0) -> None:
        super().__init__()
        if head_dim % 4:
            raise ValueError(f"rope needs a head dimension divisible by 4 (2 axes x rotation pairs), got {head_dim}")
        freqs = theta ** (-torch.arange(head_dim // 4, dtype=torch.float32) * 4 / head_dim)
        self.register_buffer("freqs", freqs, persistent=False)  # (d/4,)
        self._cache: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}

    def cos_sin(self, hw, prefix: int, stride, device) -> tuple[torch.Tensor, torch.Tensor]:
        """``(P+h*w, d/2)`` cosines and sines; cached, as every step reuses the same grid."""
        key = (tuple(hw), prefix, tuple(stride), str(device))
        if key not in self._cache:
            self._cache[key] = self._angles(hw, prefix, stride, device)
        return self._cache[key]

    @torch.inference_mode(False)  # the cache outlives an inference-mode latency probe
    @torch.no_grad()
    def _angles(self, hw, prefix: int, stride, device) -> tuple[torch.Tensor, torch.Tensor]:
        ys, xs = grid_coords(hw, stride, device=device)
        freqs = self.freqs.to(device)
        angles = torch.cat([xs[:, None] * freqs, ys[:, None] * freqs], dim=-1)  # (HW, d/2)
        angles = torch.cat([angles.new_zeros(prefix, angles.shape[1]), angles])  # class tokens: angle 0
        return angles.cos(), angles.sin()

    def forward(
        self,
        t: torch.Tensor,
        hw: tuple[int, int],
        prefix: int,
        stride: tuple[int, int] = (1, 1),
    ) -> torch.Tensor:
        cos, sin = self.cos_sin(hw, prefix, stride, t.device)
        with autocast_off(t):
            a, b = t.float().chunk(2, dim=-1)  # pairs (a_i, b_i)
            out = torch.cat([a * cos - b * sin, a * sin + b * cos], dim=-1)
        return out.to(t.dtype)

"""How tokens enter a stage: ``((B, N, Din), hw) -> ((B, N', Dout), hw')``."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from blocks.registry import TRANSITIONS, register


def _project(dim_in: int, dim_out: int) -> nn.Module:
    return nn.Identity() if dim_in == dim_out else nn.Linear(dim_in, dim_out)


def split_grid(x: torch.Tensor, hw: tuple[int, int], prefix: int):
    """(B, P+h*w, D) -> (B, P, D) prefix tokens and (B, D, h, w) grid."""
    B, _, D = x.shape
    return x[:, :prefix], x[:, prefix:].transpose(1, 2).reshape(B, D, *hw)


def join_grid(head: torch.Tensor, grid: torch.Tensor):
    tokens = grid.flatten(2).transpose(1, 2)  # (B, h*w, D)
    hw = (grid.shape[-2], grid.shape[-1])
    return (torch.cat([head, tokens], dim=1) if head.shape[1] else tokens), hw  # no prefix: head may be narrower


@register(TRANSITIONS, "none")
class Keep(nn.Module):
    """Tokens pass unchanged (through a linear projection when the width changes)."""

    def __init__(self, dim_in: int, dim_out: int, *, prefix: int) -> None:
        super().__init__()
        self.proj = _project(dim_in, dim_out)

    def forward(self, x: torch.Tensor, hw: tuple[int, int]):
        return self.proj(x), hw


@register(TRANSITIONS, "pool")
class FunnelPool(nn.Module):
    """Funnel pooling: mean or max over stride windows of the 2-D grid, class token kept apart.

    Odd sides are pooled with ceil mode (the last window is partial), as
    Funnel-Transformer pools odd lengths. A width change projects before pooling, so that
    a pool-query-only block sees keys and values at the new width.
    """

    def __init__(
        self,
        dim_in: int,
        dim_out: int,
        *,
        prefix: int,
        mode: str = "mean",
        stride: tuple[int, int] = (2, 2),
    ) -> None:
        super().__init__()
        self.proj = _project(dim_in, dim_out)
        self.prefix, self.mode, self.stride = prefix, mode, tuple(stride)

    def pool(self, x: torch.Tensor, hw: tuple[int, int]):
        head, grid = split_grid(x, hw, self.prefix)  # (B, P, D), (B, D, h, w)
        pool = F.avg_pool2d if self.mode == "mean" else F.max_pool2d
        return join_grid(head, pool(grid, self.stride, self.stride, ceil_mode=True))

    def forward(self, x: torch.Tensor, hw: tuple[int, int]):
        return self.pool(self.proj(x), hw)


@register(TRANSITIONS, "merge")
class PatchMerge(nn.Module):
    """Patch merging (GFNet-H's DownLayer): a 2x2 stride-2 conv to the new width; grid halves.
    A class token, when there is one, is carried to the new width by a linear map."""

    def __init__(self, dim_in: int, dim_out: int, *, prefix: int) -> None:
        super().__init__()
        self.prefix = prefix
        self.conv = nn.Conv2d(dim_in, dim_out, 2, stride=2)
        # Only a class token uses it: without one it would be a parameter no forward pass reads.
        self.head_proj = _project(dim_in, dim_out) if prefix else nn.Identity()

    def forward(self, x: torch.Tensor, hw: tuple[int, int]):
        head, grid = split_grid(x, hw, self.prefix)
        return join_grid(self.head_proj(head), self.conv(grid))


@register(TRANSITIONS, "pit_pool")
class PiTPool(nn.Module):
    """PiT's pooling (Heo et al. 2021): a strided depthwise conv widening the channels, then
    a pointwise conv; the grid halves. A class token is carried by a linear map.

    As lucidrains' ``pit.Pool``: the depthwise conv has ``groups = dim_in`` and
    ``dim_out / dim_in`` outputs per input channel (kernel 3, stride 2, padding 1), both
    convs have biases, and there is no norm or activation.
    """

    def __init__(self, dim_in: int, dim_out: int, *, prefix: int, kernel_size: int = 3) -> None:
        super().__init__()
        if dim_out % dim_in:
            raise ValueError(f"pit_pool widens each channel into whole groups: {dim_out} is not a multiple of {dim_in}")
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        self.prefix = prefix
        self.depthwise = nn.Conv2d(dim_in, dim_out, kernel_size, stride=2, padding=kernel_size // 2, groups=dim_in)
        self.pointwise = nn.Conv2d(dim_out, dim_out, 1)
        self.head_proj = nn.Linear(dim_in, dim_out) if prefix else nn.Identity()

    @staticmethod
    def out_grid(hw: tuple[int, int], kernel_size: int = 3) -> tuple[int, int]:
        return (-(-hw[0] // 2), -(-hw[1] // 2))  # an odd kernel padded by half, at stride 2

    def forward(self, x: torch.Tensor, hw: tuple[int, int]):
        head, grid = split_grid(x, hw, self.prefix)  # (B, P, Din), (B, Din, h, w)
        return join_grid(self.head_proj(head), self.pointwise(self.depthwise(grid)))  # grid (B, Dout, h/2, w/2)


@register(TRANSITIONS, "conv_embed")
class ConvEmbed(nn.Module):
    """CvT's convolutional token embedding between stages: a strided conv to the new width
    over the token grid, then LayerNorm. A class token is carried by a linear map.

    As lucidrains' ``cvt.CvT``: padding is half the kernel, the conv has a bias, and the
    norm is over channels (a LayerNorm of each token).
    """

    def __init__(self, dim_in: int, dim_out: int, *, prefix: int, kernel_size: int = 3, stride: int = 2) -> None:
        super().__init__()
        if kernel_size < 1 or stride < 1:
            raise ValueError(f"kernel_size and stride must be positive, got {kernel_size} and {stride}")
        self.prefix = prefix
        self.conv = nn.Conv2d(dim_in, dim_out, kernel_size, stride=stride, padding=kernel_size // 2)
        self.norm = nn.LayerNorm(dim_out)
        self.head_proj = nn.Linear(dim_in, dim_out) if prefix else nn.Identity()

    @staticmethod
    def out_grid(hw: tuple[int, int], kernel_size: int = 3, stride: int = 2) -> tuple[int, int]:
        pad = kernel_size // 2
        return tuple((side + 2 * pad - kernel_size) // stride + 1 for side in hw)  # type: ignore[return-value]

    def forward(self, x: torch.Tensor, hw: tuple[int, int]):
        head, grid = split_grid(x, hw, self.prefix)  # (B, P, Din), (B, Din, h, w)
        tokens, hw = join_grid(self.head_proj(head), self.conv(grid))  # (B, P + h'w', Dout)
        return self.norm(tokens), hw

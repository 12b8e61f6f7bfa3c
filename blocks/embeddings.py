"""Image -> token embeddings: ``(B, C, H, W) -> ((B, N, D), (h, w))``."""

from __future__ import annotations

import math

import torch
from torch import nn

from blocks.registry import EMBEDDINGS, register


def _tokens(maps: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
    """(B, D, h, w) feature maps -> (B, h*w, D) raster-ordered tokens and the grid."""
    return maps.flatten(2).transpose(1, 2), (maps.shape[-2], maps.shape[-1])


@register(EMBEDDINGS, "patch")
class PatchEmbed(nn.Module):
    """Linear patchify (ViT): non-overlapping p x p patches, each projected to the width."""

    def __init__(self, in_channels: int, dim: int, *, patch_size: int) -> None:
        super().__init__()
        # A stride-p conv is exactly the linear map of each flattened patch.
        self.proj = nn.Conv2d(in_channels, dim, patch_size, stride=patch_size)

    def forward(self, images: torch.Tensor):
        return _tokens(self.proj(images))


@register(EMBEDDINGS, "conv")
class ConvStem(nn.Module):
    """Hybrid conv stem (ViX): 3x3 convs at full resolution (e.g. 32, 64), then a conv to the width.

    As in the Vision X-formers hybrids there is no norm or activation between the convs
    unless ``norm_act`` (BatchNorm + ReLU, as in Xiao et al.'s early convolutions). The
    last conv is 3x3 at patch size 1 (ViX), else p x p with stride p.
    """

    def __init__(
        self,
        in_channels: int,
        dim: int,
        *,
        patch_size: int,
        channels: tuple[int, ...] | list[int] = (32, 64),
        norm_act: bool = False,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = in_channels
        for out in channels:
            if isinstance(out, bool) or not isinstance(out, int) or out < 1:
                raise ValueError(f"channels must be positive integers, got {list(channels)!r}")
            layers.append(nn.Conv2d(c, out, 3, padding=1))
            if norm_act:
                layers += [nn.BatchNorm2d(out), nn.ReLU(inplace=True)]
            c = out
        if patch_size == 1:
            layers.append(nn.Conv2d(c, dim, 3, padding=1))
        else:
            layers.append(nn.Conv2d(c, dim, patch_size, stride=patch_size))
        self.stem = nn.Sequential(*layers)

    def forward(self, images: torch.Tensor):
        return _tokens(self.stem(images))


@register(EMBEDDINGS, "overlap")
class OverlapEmbed(nn.Module):
    """Overlapping patches (PVTv2-style): a (2p-1) x (2p-1) conv at stride p, then LayerNorm."""

    def __init__(self, in_channels: int, dim: int, *, patch_size: int, kernel_size: int | None = None) -> None:
        super().__init__()
        k = 2 * patch_size - 1 if kernel_size is None else kernel_size
        if k < patch_size or k % 2 == 0:
            raise ValueError(f"kernel_size must be odd and at least the patch size {patch_size}, got {k}")
        # Padding (k-1)/2 keeps h = H/p exactly when p divides H.
        self.proj = nn.Conv2d(in_channels, dim, k, stride=patch_size, padding=(k - 1) // 2)
        self.norm = nn.LayerNorm(dim)

    def forward(self, images: torch.Tensor):
        tokens, hw = _tokens(self.proj(images))
        return self.norm(tokens), hw


def _per_conv(name: str, value, count: int) -> tuple[int, ...]:
    """One integer for every conv, or a list with one each."""
    values = (value,) * count if isinstance(value, int) and not isinstance(value, bool) else tuple(value)
    if len(values) != count or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in values):
        raise ValueError(f"{name} must be a positive integer or a list of {count}, one per convolution; got {value!r}")
    return values


def _out_side(side: int, kernel: int, stride: int, padding: int) -> int:
    return (side + 2 * padding - kernel) // stride + 1


# Activations a conv tokenizer may put after each conv.
ACTIVATIONS = {"relu": nn.ReLU, "hardswish": nn.Hardswish, "gelu": nn.GELU, "none": nn.Identity}


@register(EMBEDDINGS, "conv_tokenizer")
class ConvTokenizer(nn.Module):
    """A stack of convolutions, each followed by an activation and a max pool (CCT's tokenizer, LeViT's stem).

    ``channels`` are the widths of the convolutions before the last (which goes to the
    model width); every conv has the same kernel and padding and its own stride
    (``stride``: one number or one per conv), no bias unless ``bias``, then
    ``activation`` and a max pool (``pool_kernel`` 0: none). CCT's tokenizer is the
    default (ReLU, 3x3 pools at stride 2); lucidrains' LeViT stem is ``stride: 2``,
    ``bias: true``, ``activation: none``, ``pool_kernel: 0`` (the Vision X-formers' LeViT:
    the same at stride 1). ``patch_size`` is the total stride of the convs and pools, so
    the token grid is the image over it.
    """

    def __init__(
        self,
        in_channels: int,
        dim: int,
        *,
        patch_size: int,
        channels: tuple[int, ...] | list[int] = (64,),
        kernel_size: int = 3,
        stride: int | tuple[int, ...] | list[int] | None = None,  # None: 1 for every conv
        padding: int = 1,
        bias: bool = False,
        activation: str = "relu",
        pool_kernel: int = 3,
        pool_stride: int = 2,
        pool_padding: int = 1,
    ) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}; got {activation!r}")
        widths = [in_channels, *_per_conv("channels", list(channels), len(channels)), dim]
        strides = _per_conv("stride", 1 if stride is None else stride, len(widths) - 1)
        if pool_kernel and 2 * pool_padding > pool_kernel:
            raise ValueError(f"pool_padding must be at most half the pool kernel {pool_kernel}, got {pool_padding}")
        total = math.prod(strides) * (pool_stride ** len(strides) if pool_kernel else 1)
        if total != patch_size:
            raise ValueError(f"its convolutions and pools stride {total} in all; set patch_size: {total}")
        self.geometry: list[tuple[int, int, int]] = []  # (kernel, stride, padding) of each conv and pool
        layers: list[nn.Module] = []
        for c_in, c_out, s in zip(widths, widths[1:], strides, strict=False):
            layers.append(nn.Conv2d(c_in, c_out, kernel_size, stride=s, padding=padding, bias=bias))
            self.geometry.append((kernel_size, s, padding))
            if activation != "none":
                layers.append(ACTIVATIONS[activation]())
            if pool_kernel:
                layers.append(nn.MaxPool2d(pool_kernel, pool_stride, pool_padding))
                self.geometry.append((pool_kernel, pool_stride, pool_padding))
        self.convs = nn.Sequential(*layers)

    def grid_of(self, hw: tuple[int, int]) -> tuple[int, int]:
        """The token grid this tokenizer makes of an ``hw`` image (floors of every layer)."""
        for kernel, stride, padding in self.geometry:
            hw = (_out_side(hw[0], kernel, stride, padding), _out_side(hw[1], kernel, stride, padding))
        return hw

    def forward(self, images: torch.Tensor):
        return _tokens(self.convs(images))

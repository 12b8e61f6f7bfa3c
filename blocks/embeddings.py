"""Image -> token embeddings: ``(B, C, H, W) -> ((B, N, D), (h, w))``."""

from __future__ import annotations

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

"""LeViT attention (Graham et al. 2021; lucidrains/vit-pytorch ``levit.py``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from blocks.mixers._common import Mixer, merge_heads, positive_int, split_heads
from blocks.registry import MIXERS, register


def _channel_norm(norm: nn.BatchNorm1d, t: torch.Tensor) -> torch.Tensor:
    """BatchNorm over the channels of ``(B, N, C)`` tokens: LeViT's BatchNorm2d of 1x1-conv maps.
    Contiguous again: heads split from a transposed view send attention to the unfused
    kernel, which keeps every score matrix for backward (3.2x the training memory)."""
    return norm(t.transpose(1, 2)).transpose(1, 2).contiguous()


def relative_offsets(hw: tuple[int, int]) -> torch.Tensor:
    """``(N, N)`` index of each pair's absolute offset ``|dy| * w + |dx|`` (lucidrains' LeViT,
    for any grid): one learned bias per offset and head."""
    ys, xs = torch.meshgrid(torch.arange(hw[0]), torch.arange(hw[1]), indexing="ij")
    ys, xs = ys.flatten(), xs.flatten()
    return (ys[:, None] - ys[None, :]).abs() * hw[1] + (xs[:, None] - xs[None, :]).abs()


@register(MIXERS, "levit")
class LeViTAttention(Mixer):
    """LeViT attention: BatchNorm'd q/k/v of their own widths, GELU then a BatchNorm'd output.

    As lucidrains' ``levit.Attention``, a 1x1 conv and a BatchNorm per projection (here a
    linear map of each token and a BatchNorm over channels, the same function), keys
    ``head_dim`` and values ``value_dim`` wide per head, softmax at scale head_dim^-1/2,
    then GELU, the output projection and a BatchNorm whose gain starts at zero
    (``zero_init``: the branch adds nothing at the first step). ``pos_bias`` adds LeViT's
    learned bias per head and grid offset to the scores (the Vision X-formers' LeViT drops
    it, since its linear attentions cannot take one).
    """

    # No class token: the BatchNorms and the offset bias are over the image grid.

    def __init__(
        self,
        dim: int,
        *,
        tokens_hw: tuple[int, int],
        prefix: int = 0,
        heads: int = 4,
        head_dim: int = 32,
        value_dim: int = 64,
        pos_bias: bool = False,
        zero_init: bool = True,
    ) -> None:
        super().__init__()
        self.heads = positive_int("heads", heads)
        key, value = heads * positive_int("head_dim", head_dim), heads * positive_int("value_dim", value_dim)
        self.scale = head_dim**-0.5
        self.to_q, self.norm_q = nn.Linear(dim, key, bias=False), nn.BatchNorm1d(key)
        self.to_k, self.norm_k = nn.Linear(dim, key, bias=False), nn.BatchNorm1d(key)
        self.to_v, self.norm_v = nn.Linear(dim, value, bias=False), nn.BatchNorm1d(value)
        self.to_out, self.norm_out = nn.Linear(value, dim), nn.BatchNorm1d(dim)
        if zero_init:
            nn.init.zeros_(self.norm_out.weight)
        self.pos_bias = nn.Embedding(tokens_hw[0] * tokens_hw[1], heads) if pos_bias else None
        if pos_bias:
            self.register_buffer("offsets", relative_offsets(tokens_hw), persistent=False)

    def forward(self, x: torch.Tensor, hw) -> torch.Tensor:
        q = split_heads(_channel_norm(self.norm_q, self.to_q(x)), self.heads)  # (B, H, N, dk)
        k = split_heads(_channel_norm(self.norm_k, self.to_k(x)), self.heads)  # (B, H, N, dk)
        v = split_heads(_channel_norm(self.norm_v, self.to_v(x)), self.heads)  # (B, H, N, dv)
        bias = None
        if self.pos_bias is not None:  # lucidrains adds bias / scale to the scaled scores
            bias = (self.pos_bias(self.offsets).permute(2, 0, 1) / self.scale).unsqueeze(0).to(q.dtype)  # (1, H, N, N)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=self.scale)  # (B, H, N, dv)
        out = self.to_out(F.gelu(merge_heads(out)))  # (B, N, D)
        return _channel_norm(self.norm_out, out)

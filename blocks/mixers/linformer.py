"""Linformer attention (Wang et al. 2020; lucidrains/linformer)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from blocks.mixers._common import (
    ConvProjection,
    Mixer,
    conv_projection_options,
    merge_heads,
    positive_int,
    resolve_heads,
    split_heads,
)
from blocks.registry import MIXERS, register


def _sequence_projection(seq_len: int, k: int) -> nn.Parameter:
    bound = k**-0.5
    return nn.Parameter(torch.empty(seq_len, k).uniform_(-bound, bound))


@register(MIXERS, "linformer")
class Linformer(Mixer):
    """Linformer: keys and values projected along the sequence to k slots, O(N k D).

    The projection is a (tokens, k) matrix, so the layer is built for one token count
    (class token included) and refuses any other.
    """

    # No rope: the sequence projection mixes positions, leaving no relative property to keep.
    cls_token = True

    def __init__(
        self,
        dim: int,
        *,
        tokens_hw: tuple[int, int],
        prefix: int = 0,
        heads: int = 4,
        head_dim: int | None = None,
        k: int = 256,
        share_kv: bool = False,
        one_kv_head: bool = False,
        qkv_bias: bool = False,
        value_dim: int | None = None,
        proj_kernel: int = 0,
    ) -> None:
        super().__init__()
        conv_projection_options(proj_kernel, 1, False)
        heads, head_dim = resolve_heads(dim, heads, head_dim)
        value_dim = positive_int("value_dim", value_dim or head_dim)
        if share_kv and value_dim != head_dim:
            raise ValueError(f"share_kv makes the keys the values: value_dim must be head_dim {head_dim}")
        self.heads, self.one_kv_head = heads, one_kv_head
        self.seq_len = tokens_hw[0] * tokens_hw[1] + prefix
        k = positive_int("k", k)
        kv_heads = 1 if one_kv_head else heads
        self.to_q = nn.Linear(dim, heads * head_dim, bias=qkv_bias)
        self.to_k = nn.Linear(dim, kv_heads * head_dim, bias=qkv_bias)
        self.to_v = None if share_kv else nn.Linear(dim, kv_heads * value_dim, bias=qkv_bias)
        self.proj_k = _sequence_projection(self.seq_len, k)  # (N, k)
        self.proj_v = None if share_kv else _sequence_projection(self.seq_len, k)
        self.to_out = nn.Linear(heads * value_dim, dim)
        # CvT's depthwise-conv projections, unstrided: the sequence projection fixes the length.
        self.conv_q = ConvProjection(dim, proj_kernel, 1) if proj_kernel else None
        self.conv_kv = ConvProjection(dim, proj_kernel, 1) if proj_kernel else None
        self.prefix = prefix

    def _heads(self, t: torch.Tensor) -> torch.Tensor:
        if self.one_kv_head:  # (B, k, d) -> (B, H, k, d), one head shared by all
            return t.unsqueeze(1).expand(-1, self.heads, -1, -1)
        return split_heads(t, self.heads)

    def forward(self, x: torch.Tensor, hw=None) -> torch.Tensor:
        B, N, D = x.shape
        if self.seq_len != N:
            raise ValueError(
                f"linformer was built for {self.seq_len} tokens and got {N}; build the model "
                "at this resolution (its sequence projection has a fixed length)"
            )
        kv = x
        if self.conv_q is not None:
            x, kv = self.conv_q(x, hw, self.prefix)[0], self.conv_kv(x, hw, self.prefix)[0]
        q = split_heads(self.to_q(x), self.heads)  # (B, H, N, d)
        keys = self.to_k(kv)  # (B, N, C)
        values = keys if self.to_v is None else self.to_v(kv)
        proj_v = self.proj_k if self.proj_v is None else self.proj_v
        keys = torch.einsum("bnc,nk->bkc", keys, self.proj_k)  # (B, k, C)
        values = torch.einsum("bnc,nk->bkc", values, proj_v)
        out = F.scaled_dot_product_attention(q, self._heads(keys), self._heads(values))
        return self.to_out(merge_heads(out))  # (B, N, D)

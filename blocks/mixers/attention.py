"""Multi-head softmax self-attention (Vaswani et al. 2017; ViT, Dosovitskiy et al. 2021)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from blocks.mixers._common import QKV, Mixer, merge_heads, resolve_heads
from blocks.registry import MIXERS, register


@register(MIXERS, "attention")
class Attention(Mixer):
    """Multi-head softmax attention through scaled_dot_product_attention, O(N^2 D)."""

    rope = "exact"
    cls_token = True
    query_pool = True

    def __init__(
        self,
        dim: int,
        *,
        tokens_hw: tuple[int, int],
        prefix: int = 0,
        rope: bool = False,
        heads: int = 4,
        head_dim: int | None = None,
        qkv_bias: bool = False,
        attn_drop: float = 0.0,
    ) -> None:
        super().__init__()
        heads, head_dim = resolve_heads(dim, heads, head_dim)
        self.prefix, self.attn_drop = prefix, attn_drop
        self.qkv = QKV(dim, heads, head_dim, bias=qkv_bias, rope=rope)
        self.to_out = nn.Linear(heads * head_dim, dim)

    def forward(self, x, hw, kv=None, kv_hw=None) -> torch.Tensor:
        q, k, v = self.qkv(x, hw, self.prefix, kv, kv_hw)  # (B, H, N, d), (B, H, M, d)
        drop = self.attn_drop if self.training else 0.0
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=drop)  # (B, H, N, d)
        return self.to_out(merge_heads(out))  # (B, N, D)

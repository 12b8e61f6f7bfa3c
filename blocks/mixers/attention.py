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
        value_dim: int | None = None,
        proj_kernel: int = 0,
        kv_stride: int = 1,
        attn_drop: float = 0.0,
    ) -> None:
        super().__init__()
        heads, head_dim = resolve_heads(dim, heads, head_dim)
        self.prefix, self.attn_drop = prefix, attn_drop
        self.qkv = QKV(
            dim,
            heads,
            head_dim,
            bias=qkv_bias,
            rope=rope,
            value_dim=value_dim,
            proj_kernel=proj_kernel,
            kv_stride=kv_stride,
        )
        self.to_out = nn.Linear(heads * self.qkv.value_dim, dim)

    def forward(self, x, hw, kv=None, kv_hw=None) -> torch.Tensor:
        q, k, v = self.qkv(x, hw, self.prefix, kv, kv_hw)  # (B, H, N, d), (B, H, M, d)
        drop = self.attn_drop if self.training else 0.0
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=drop)  # (B, H, N, d)
        return self.to_out(merge_heads(out))  # (B, N, D)

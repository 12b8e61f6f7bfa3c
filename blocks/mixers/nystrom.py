"""Nystromformer attention (Xiong et al. 2021; mlpen/Nystromformer, lucidrains/nystrom-attention)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from blocks.mixers._common import QKV, Mixer, autocast_off, merge_heads, positive_int, resolve_heads
from blocks.registry import MIXERS, register


def landmarks_of(t: torch.Tensor, m: int) -> torch.Tensor:
    """``(B, H, N, d) -> (B, H, m, d)``: means of m contiguous, near-equal segments.

    Adaptive pooling instead of the reference's zero-padding to a multiple of m: padded
    tokens would take softmax weight and dilute the attention.
    """
    B, H, N, d = t.shape
    pooled = F.adaptive_avg_pool1d(t.reshape(B * H, N, d).transpose(1, 2), m)  # (BH, d, m)
    return pooled.transpose(1, 2).reshape(B, H, m, d)


def newton_schulz_pinv(a: torch.Tensor, iters: int) -> torch.Tensor:
    """Moore-Penrose inverse of each ``(m, m)`` matrix by Razavi's iteration (the paper's
    eq. 13), started per matrix from A^T / (max col sum * max row sum)."""
    eye = torch.eye(a.shape[-1], device=a.device, dtype=a.dtype)
    col = a.abs().sum(dim=-2).amax(dim=-1)
    row = a.abs().sum(dim=-1).amax(dim=-1)
    z = a.transpose(-2, -1) / (col * row)[..., None, None]
    for _ in range(iters):
        az = a @ z
        z = 0.25 * z @ (13 * eye - az @ (15 * eye - az @ (7 * eye - az)))
    return z


def nystrom_attention(q, k, v, landmarks: int, pinv_iters: int) -> torch.Tensor:
    """softmax(Q K~^T) pinv(softmax(Q~ K~^T)) softmax(Q~ K^T) V for (B, H, N, d) inputs,
    with m = min(landmarks, N) landmarks. When m = N every token is its own landmark and
    the approximation would only add the pseudo-inverse's error (2% at 6 iterations):
    plain softmax attention instead, as the official code does."""
    m = min(landmarks, q.shape[2])
    q = q * q.shape[-1] ** -0.5
    if m == q.shape[2]:
        return torch.softmax(q @ k.transpose(-2, -1), dim=-1) @ v
    q_l, k_l = landmarks_of(q, m), landmarks_of(k, m)  # (B, H, m, d)
    kernel_1 = torch.softmax(q @ k_l.transpose(-2, -1), dim=-1)  # (B, H, N, m)
    kernel_2 = torch.softmax(q_l @ k_l.transpose(-2, -1), dim=-1)  # (B, H, m, m)
    kernel_3 = torch.softmax(q_l @ k.transpose(-2, -1), dim=-1)  # (B, H, m, N)
    return kernel_1 @ (newton_schulz_pinv(kernel_2, pinv_iters) @ (kernel_3 @ v))


@register(MIXERS, "nystrom")
class Nystrom(Mixer):
    """Nystromformer: softmax attention through m landmarks and a pseudo-inverse, O(N m d)."""

    rope = "approx"
    cls_token = True
    # No query_pool: the landmarks are drawn from the same tokens as the queries.

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
        landmarks: int = 64,
        pinv_iters: int = 6,
        conv_kernel: int = 33,
    ) -> None:
        super().__init__()
        heads, head_dim = resolve_heads(dim, heads, head_dim)
        self.prefix = prefix
        self.landmarks = positive_int("landmarks", landmarks)
        self.pinv_iters = positive_int("pinv_iters", pinv_iters)
        if kv_stride != 1:
            raise ValueError(
                "nystrom draws its landmarks and its value conv from the queries' tokens: kv_stride must be 1"
            )
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
        if conv_kernel and conv_kernel % 2 == 0:
            raise ValueError(f"conv_kernel must be odd (or 0 for none), got {conv_kernel}")
        # Depthwise conv over each head's values along the sequence (the paper's skip).
        self.res_conv = None
        if conv_kernel:
            self.res_conv = nn.Conv2d(
                heads, heads, (conv_kernel, 1), padding=(conv_kernel // 2, 0), groups=heads, bias=False
            )

    def forward(self, x: torch.Tensor, hw) -> torch.Tensor:
        q, k, v = self.qkv(x, hw, self.prefix)  # (B, H, N, d)
        with autocast_off(x):  # the pseudo-inverse needs float32
            out = nystrom_attention(q.float(), k.float(), v.float(), self.landmarks, self.pinv_iters)
        out = out.to(x.dtype)
        if self.res_conv is not None:
            out = out + self.res_conv(v)
        return self.to_out(merge_heads(out))  # (B, N, D)

"""Performer FAVOR+ attention (Choromanski et al. 2021; lucidrains/performer-pytorch)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from blocks.mixers._common import QKV, Mixer, autocast_off, merge_heads, one_of, positive_int, resolve_heads
from blocks.registry import MIXERS, register


def orthogonal_features(num: int, dim: int) -> torch.Tensor:
    """``(num, dim)`` Gaussian directions, orthogonal within each block of ``dim`` rows,
    with chi-distributed norms so each row is marginally N(0, I).

    Drawn on the CPU (QR is slow and sometimes unsupported on accelerators) from the
    global generator, so a seeded run draws the same features.
    """
    blocks = []
    for _ in range(math.ceil(num / dim)):
        q, _ = torch.linalg.qr(torch.randn(dim, dim, device="cpu"))
        blocks.append(q.T)
    directions = torch.cat(blocks)[:num]
    norms = torch.randn(num, dim, device="cpu").norm(dim=1, keepdim=True)
    return directions * norms


def softmax_features(t: torch.Tensor, proj: torch.Tensor, *, is_query: bool) -> torch.Tensor:
    """Positive random features phi(t) with E[phi(q).phi(k)] = exp(q.k / sqrt(d))."""
    d = t.shape[-1]
    t = t * d**-0.25
    dash = t @ proj.T  # (B, H, N, F)
    diag = t.pow(2).sum(-1, keepdim=True) / 2
    # Subtracting a max only rescales phi, which the normaliser cancels; keys share one
    # max so that every key is scaled alike.
    dims = (-1,) if is_query else (-2, -1)
    stab = dash.amax(dim=dims, keepdim=True).detach()
    return (torch.exp(dash - diag - stab) + 1e-4) * proj.shape[0] ** -0.5


def relu_features(t: torch.Tensor, proj: torch.Tensor) -> torch.Tensor:
    """Generalised-attention features relu(omega t) (the Performer-ReLU of ViX)."""
    return F.relu((t * t.shape[-1] ** -0.25) @ proj.T) + 1e-3


def favor_attention(q, k, v, proj: torch.Tensor, kernel: str = "softmax") -> torch.Tensor:
    """D^-1 phi(Q) (phi(K)^T V): (B, H, N, d) queries, (B, H, M, d) keys and values."""
    if kernel == "softmax":
        qf, kf = softmax_features(q, proj, is_query=True), softmax_features(k, proj, is_query=False)
    else:
        qf, kf = relu_features(q, proj), relu_features(k, proj)  # (B, H, N|M, F)
    context = kf.transpose(-2, -1) @ v  # (B, H, F, d)
    normaliser = qf @ kf.sum(dim=-2).unsqueeze(-1)  # (B, H, N, 1)
    return (qf @ context) / normaliser  # (B, H, N, d)


@register(MIXERS, "performer")
class Performer(Mixer):
    """Performer: FAVOR+ linear attention with positive orthogonal random features, O(N F d)."""

    rope = "approx"
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
        features: int = 256,
        kernel: str = "softmax",
        redraw: int = 0,
    ) -> None:
        super().__init__()
        heads, head_dim = resolve_heads(dim, heads, head_dim)
        self.prefix = prefix
        self.kernel = one_of("kernel", kernel, ("softmax", "relu"))
        self.features = positive_int("features", features)
        if isinstance(redraw, bool) or not isinstance(redraw, int) or redraw < 0:
            raise ValueError(f"redraw must be 0 (never) or a number of training steps, got {redraw!r}")
        self.redraw, self._steps = redraw, 0
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
        # A buffer, so it is saved with the weights and eval is deterministic. On the meta
        # device (checks, counting) nothing is drawn: QR on the CPU would allocate for real.
        device = self.to_out.weight.device
        if device.type == "meta":
            proj = torch.empty(self.features, head_dim, device=device)
        else:
            proj = orthogonal_features(self.features, head_dim).to(device)
        self.register_buffer("proj", proj)

    @torch.no_grad()
    def redraw_features(self) -> None:
        self.proj.copy_(orthogonal_features(*self.proj.shape).to(self.proj.device))

    def forward(self, x, hw, kv=None, kv_hw=None) -> torch.Tensor:
        if self.training and self.redraw:
            if self._steps and self._steps % self.redraw == 0:
                self.redraw_features()
            self._steps += 1
        q, k, v = self.qkv(x, hw, self.prefix, kv, kv_hw)  # (B, H, N, d), (B, H, M, d)
        with autocast_off(x):  # the normaliser needs float32
            out = favor_attention(q.float(), k.float(), v.float(), self.proj.float(), self.kernel)
        return self.to_out(merge_heads(out.to(x.dtype)))

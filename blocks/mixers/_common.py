"""Pieces shared by the mixers: the ``Mixer`` base, option checks, head splitting, q/k/v
projections."""

from __future__ import annotations

import inspect

import torch
from torch import nn

from blocks.precision import autocast_off, in_float32  # noqa: F401  (re-exported)
from blocks.rope import Rotary2D


class Mixer(nn.Module):
    """A token mixer, ``(B, N, D) -> (B, N, D)``. The class attributes state what it can
    do, and the builder reads them to refuse what it cannot; the defaults claim nothing,
    so a mixer states only what it can.

    - ``rope``: ``"exact"`` or ``"approx"`` when it has queries and keys that RoPE can
      rotate (it then takes a ``rope: bool`` keyword), ``None`` otherwise.
    - ``cls_token``: a class token may ride along in front of the image tokens.
    - ``query_pool``: ``forward`` accepts ``kv=, kv_hw=`` of another length than the
      queries (funnel pool-query-only blocks).
    """

    rope: str | None = None
    cls_token: bool = False
    query_pool: bool = False

    @classmethod
    def takes(cls, option: str) -> bool:
        """Whether the constructor has the keyword ``option`` (``heads``, say)."""
        return option in inspect.signature(cls).parameters


def positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if value > 2**31 - 1:  # no tensor dimension is that large
        raise ValueError(f"{name} must be a positive integer up to {2**31 - 1}, got {value!r}")
    return value


def one_of(name: str, value: object, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")
    return value  # type: ignore[return-value]


def resolve_heads(dim: int, heads: int, head_dim: int | None) -> tuple[int, int]:
    """``(heads, head_dim)``; without an explicit head_dim the width is split evenly."""
    positive_int("heads", heads)
    if head_dim is None:
        if dim % heads:
            raise ValueError(f"width {dim} does not split into {heads} heads; pick heads dividing it or set head_dim")
        return heads, dim // heads
    return heads, positive_int("head_dim", head_dim)


def split_heads(t: torch.Tensor, heads: int) -> torch.Tensor:
    B, N, _ = t.shape
    return t.reshape(B, N, heads, -1).transpose(1, 2)  # (B, H, N, d)


def merge_heads(t: torch.Tensor) -> torch.Tensor:
    B, H, N, d = t.shape
    return t.transpose(1, 2).reshape(B, N, H * d)  # (B, N, H*d)


class ConvProjection(nn.Module):
    """CvT's convolutional projection of the token grid: a depthwise conv (no bias) and a
    BatchNorm, class-token prefix passed through unchanged, as Wu et al.'s ``conv_proj``.
    ``(B, P + h*w, D) -> (B, P + h'*w', D)``; the linear projection follows it."""

    def __init__(self, dim: int, kernel_size: int, stride: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(dim, dim, kernel_size, stride=stride, padding=kernel_size // 2, groups=dim, bias=False)
        self.norm = nn.BatchNorm2d(dim)

    def forward(self, x: torch.Tensor, hw: tuple[int, int], prefix: int):
        B, _, D = x.shape
        grid = x[:, prefix:].transpose(1, 2).reshape(B, D, *hw)  # (B, D, h, w)
        grid = self.norm(self.conv(grid))  # (B, D, h', w')
        tokens = torch.cat([x[:, :prefix], grid.flatten(2).transpose(1, 2)], dim=1)
        return tokens, (grid.shape[-2], grid.shape[-1])


def conv_projection_options(proj_kernel: int, kv_stride: int, rope: bool) -> None:
    """Refuse what a convolutional projection cannot do (a ValueError the builder reports)."""
    odd = isinstance(proj_kernel, int) and not isinstance(proj_kernel, bool) and proj_kernel % 2 == 1
    if proj_kernel != 0 and not odd:
        raise ValueError(f"proj_kernel must be 0 (linear projections) or an odd kernel size, got {proj_kernel!r}")
    positive_int("kv_stride", kv_stride)
    if kv_stride > 1 and not proj_kernel:
        raise ValueError("kv_stride strides the convolutional projection of keys and values: set proj_kernel too")
    if kv_stride > 1 and rope:
        raise ValueError("rope needs keys on the queries' grid; kv_stride > 1 puts them on a coarser one")


class QKV(nn.Module):
    """Query, key and value projections, with optional 2-D RoPE on queries and keys.

    Queries come from ``x``, keys and values from ``kv`` (``x`` itself unless a
    funnel pool-query-only block passes the unpooled tokens). Keys are ``head_dim`` wide
    per head, values ``value_dim`` (LeViT's ``dim_key``/``dim_value``). With
    ``proj_kernel`` the tokens go through CvT's ``ConvProjection`` first: one for the
    queries, one shared by keys and values at stride ``kv_stride`` (lucidrains' ``cvt``).
    """

    def __init__(
        self,
        dim: int,
        heads: int,
        head_dim: int,
        *,
        bias: bool,
        rope: bool,
        value_dim: int | None = None,
        proj_kernel: int = 0,
        kv_stride: int = 1,
    ) -> None:
        super().__init__()
        conv_projection_options(proj_kernel, kv_stride, rope)
        self.heads, self.value_dim = heads, positive_int("value_dim", value_dim or head_dim)
        self.inner_k = heads * head_dim
        self.to_q = nn.Linear(dim, self.inner_k, bias=bias)
        self.to_kv = nn.Linear(dim, self.inner_k + heads * self.value_dim, bias=bias)
        self.conv_q = ConvProjection(dim, proj_kernel, 1) if proj_kernel else None
        self.conv_kv = ConvProjection(dim, proj_kernel, kv_stride) if proj_kernel else None
        self.rotary = Rotary2D(head_dim) if rope else None

    def forward(self, x, hw, prefix, kv=None, kv_hw=None):
        kv, kv_hw = (x, hw) if kv is None else (kv, kv_hw)
        if self.conv_q is not None:
            x, _ = self.conv_q(x, hw, prefix)
            kv, kv_hw = self.conv_kv(kv, kv_hw, prefix)
        q = split_heads(self.to_q(x), self.heads)  # (B, H, N, d)
        k, v = self.to_kv(kv).split([self.inner_k, self.heads * self.value_dim], dim=-1)
        k, v = split_heads(k, self.heads), split_heads(v, self.heads)  # (B, H, M, d), (B, H, M, dv)
        if self.rotary is not None:
            q = self.rotary(q, hw, prefix, stride=_pool_stride(hw, kv_hw))
            k = self.rotary(k, kv_hw, prefix)
        return q, k, v


def _pool_stride(hw: tuple[int, int], kv_hw: tuple[int, int]) -> tuple[int, int]:
    """The pooling stride that took a ``kv_hw`` grid to ``hw`` (1, 1 when equal)."""
    return (-(-kv_hw[0] // hw[0]), -(-kv_hw[1] // hw[1]))

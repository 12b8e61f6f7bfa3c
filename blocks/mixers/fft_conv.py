"""Large-kernel depthwise convolution computed through the FFT (FiT report section 3;
fkodom/fft-conv-pytorch; RepLKNet's 31x31 depthwise kernels)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from blocks.mixers._common import Mixer, in_float32, one_of, positive_int
from blocks.registry import MIXERS, register


def fast_fft_size(n: int) -> int:
    """The smallest 2^a 3^b 5^c 7^d >= n: sizes every FFT library handles quickly."""
    while True:
        rest = n
        for p in (2, 3, 5, 7):
            while rest % p == 0:
                rest //= p
        if rest == 1:
            return n
        n += 1


def fft_depthwise_conv2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """Same-padded depthwise cross-correlation, equal to ``F.conv2d(x, weight, bias,
    padding=K//2, groups=C)`` for an odd K, in O(C HW log HW) whatever the kernel size.

    ``x`` is (B, C, H, W), ``weight`` (C, 1, K, K). Both are zero-padded to at least
    H+K-1 by W+K-1 before the transform, so the product of spectra is a *linear*
    convolution (no wrap-around); flipping the kernel turns it into the correlation that
    conv2d computes, and the "same" window is cut out of the full result.
    """
    B, C, H, W = x.shape
    K = weight.shape[-1]
    pad = K // 2
    size = (fast_fft_size(H + K - 1), fast_fft_size(W + K - 1))
    spectrum = torch.fft.rfft2(x, s=size)  # (B, C, fh, fw//2+1)
    kernel = torch.fft.rfft2(weight[:, 0].flip(-2, -1), s=size)  # (C, fh, fw//2+1)
    full = torch.fft.irfft2(spectrum * kernel, s=size)  # (B, C, fh, fw)
    out = full[..., pad : pad + H, pad : pad + W]
    return out if bias is None else out + bias[:, None, None]


@register(MIXERS, "fft_conv")
class FFTConv(Mixer):
    """Depthwise KxK convolution over the token grid, by FFT (linear, not circular).

    ``method="direct"`` computes the same layer with ``conv2d``: the two are equal, which
    is what the direct-vs-FFT speed comparison of the FiT report needs.
    """

    def __init__(
        self,
        dim: int,
        *,
        tokens_hw: tuple[int, int],
        prefix: int = 0,
        kernel_size: int = 31,
        method: str = "fft",
        bias: bool = True,
    ) -> None:
        super().__init__()
        self.kernel_size = positive_int("kernel_size", kernel_size)
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd so that 'same' padding is symmetric, got {kernel_size}")
        self.method = one_of("method", method, ("fft", "direct"))
        self.weight = nn.Parameter(torch.empty(dim, 1, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(dim)) if bias else None
        # conv2d's default init (kaiming-uniform over a fan-in of K*K).
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))

    def forward(self, x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        B, N, D = x.shape
        grid = x.transpose(1, 2).reshape(B, D, *hw)  # (B, D, H, W)
        if self.method == "direct":
            out = F.conv2d(grid, self.weight, self.bias, padding=self.kernel_size // 2, groups=D)
        else:
            # The grid is a channels-last view of the tokens: the direct conv likes that
            # (oneDNN), but strided FFT planes are 2x slower than contiguous ones.
            fn = lambda g: fft_depthwise_conv2d(g.contiguous(), self.weight.float(), _float(self.bias))  # noqa: E731
            out = in_float32(fn, grid)
        return out.reshape(B, D, N).transpose(1, 2)  # (B, N, D)


def _float(t: torch.Tensor | None) -> torch.Tensor | None:
    return None if t is None else t.float()

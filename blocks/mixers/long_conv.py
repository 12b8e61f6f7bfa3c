"""SGConv long convolution (Li et al. 2022, "What makes convolutional models great on long
sequence modeling?"; ctlllll/SGConv), as section 3.2 of the FiT report describes it."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from blocks.mixers._common import Mixer, in_float32, positive_int
from blocks.registry import MIXERS, register


@register(MIXERS, "long_conv")
class LongConv(Mixer):
    """SGConv: a sequence-long kernel from a few taps per scale, decaying across scales, by FFT.

    Scale i holds ``kernel_dim`` learned taps, is linearly upsampled by 2^max(0, i-1) and
    weighted by ``decay**-i``; the scales are concatenated until they cover the token
    sequence (raster order, class token first). Bidirectional adds an anti-causal
    kernel. Output: Linear(GELU(conv(u) + skip * u)). O(N D log N).
    """

    cls_token = True

    def __init__(
        self,
        dim: int,
        *,
        tokens_hw: tuple[int, int],
        prefix: int = 0,
        kernel_dim: int = 16,
        decay: float = 2.0,
        bidirectional: bool = True,
    ) -> None:
        super().__init__()
        positive_int("kernel_dim", kernel_dim)
        if not decay >= 1:
            raise ValueError(f"decay must be >= 1 (nearer scales weigh more), got {decay!r}")
        length = tokens_hw[0] * tokens_hw[1] + prefix
        self.scales = 1 + max(0, math.ceil(math.log2(length / kernel_dim)))
        self.decay, self.bidirectional = decay, bidirectional
        directions = 2 if bidirectional else 1
        self.taps = nn.Parameter(torch.randn(self.scales, directions, dim, kernel_dim))
        self.skip = nn.Parameter(torch.randn(dim))
        self.out = nn.Linear(dim, dim)
        # The reference freezes the kernel's norm at its first forward; computing it here
        # gives the same fixed scale without hidden state changing on first use.
        self.register_buffer("kernel_norm", self.kernel().norm(dim=-1, keepdim=True).detach())

    def kernel(self) -> torch.Tensor:
        """``(directions, D, kernel_dim * 2^(scales-1))``, before normalisation."""
        parts = []
        for i, taps in enumerate(self.taps):  # taps: (directions, D, kernel_dim)
            if i > 1:
                taps = F.interpolate(taps, scale_factor=2 ** (i - 1), mode="linear")
            parts.append(taps * self.decay**-i)
        return torch.cat(parts, dim=-1)

    def forward(self, x: torch.Tensor, hw=None) -> torch.Tensor:
        B, N, D = x.shape
        k = self.kernel() / self.kernel_norm
        k = F.pad(k, (0, max(0, N - k.shape[-1])))[..., :N]  # (directions, D, N)

        def conv(u: torch.Tensor) -> torch.Tensor:
            u = u.transpose(1, 2)  # (B, D, N)
            kf = k.float()
            # Causal taps at lags 0..N-1, anti-causal ones at lags -1..-N (wrapping to the
            # end of a 2N-long buffer), so one length-2N FFT gives the linear convolution.
            full = F.pad(kf[0], (0, N))
            if self.bidirectional:
                full = full + F.pad(kf[1].flip(-1), (N, 0))
            y = torch.fft.irfft(torch.fft.rfft(u, n=2 * N) * torch.fft.rfft(full, n=2 * N), n=2 * N)
            return (y[..., :N] + u * self.skip.float()[:, None]).transpose(1, 2)  # (B, N, D)

        return self.out(F.gelu(in_float32(conv, x)))

"""Direct depthwise convolution against ``fft_conv`` across kernel and map sizes (the FiT
report's section 3: RepLKNet-B with FFT convolutions), and the crossover kernel size."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import torch

from bench.common import Env, pyplot, save_figure, write_csv
from blocks.mixers.fft_conv import FFTConv

KERNELS = [3, 5, 7, 9, 11, 13, 15, 19, 23, 27, 31, 39, 47, 55, 63]
MAPS = [28, 56, 112]


def forward_ms(layer: FFTConv, x: torch.Tensor, hw, repeats: int) -> float:
    times = []
    with torch.inference_mode():
        for i in range(repeats + 2):  # two warm-ups: FFT plans, allocator
            if x.is_cuda:
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            layer(x, hw)
            if x.is_cuda:
                torch.cuda.synchronize()
            if i >= 2:
                times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def run(out: Path, *, device: str, repeats: int, cap_s: float, quick: bool, console) -> list[dict]:
    channels, batch = (8, 1) if quick else (128, 4)  # RepLKNet-B's first stage: 128 channels at 56x56
    kernels, maps = ([3, 7], [8]) if quick else (KERNELS, MAPS)
    rows = []
    for side in maps:
        x = torch.randn(batch, side * side, channels, device=device)  # (B, N, D) tokens
        for k in kernels:
            torch.manual_seed(0)
            layer = FFTConv(channels, tokens_hw=(side, side), kernel_size=k).to(device)
            fft = forward_ms(layer, x, (side, side), repeats)
            layer.method = "direct"
            direct = forward_ms(layer, x, (side, side), repeats)
            rows.append({"map": side, "kernel": k, "direct_ms": direct, "fft_ms": fft, "speedup": direct / fft})
            console.print(f"  {side}x{side} k={k}: direct {direct:.2f} ms, fft {fft:.2f} ms")
    env = Env.current(device, repeats)
    crossover = [{"map": side, "crossover_kernel": crossover_kernel(rows, side)} for side in maps]
    write_csv(out / "conv.csv", rows, env)
    write_csv(out / "conv_crossover.csv", crossover, env)
    plot(rows, maps, out / "conv.png")
    return rows


def crossover_kernel(rows: list[dict], side: int) -> int | None:
    """The smallest kernel from which the FFT is faster at every larger kernel measured."""
    mine = sorted((r for r in rows if r["map"] == side), key=lambda r: r["kernel"])
    for i, r in enumerate(mine):
        if all(later["speedup"] > 1 for later in mine[i:]):
            return r["kernel"]
    return None


def plot(rows: list[dict], maps: list[int], path: Path) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for side in maps:
        mine = [r for r in rows if r["map"] == side]
        line = ax.plot([r["kernel"] for r in mine], [r["direct_ms"] for r in mine], "o-", label=f"direct {side}x{side}")
        ax.plot(
            [r["kernel"] for r in mine],
            [r["fft_ms"] for r in mine],
            "s--",
            color=line[0].get_color(),
            label=f"fft {side}x{side}",
        )
    ax.set_yscale("log")
    ax.set_xlabel("kernel size")
    ax.set_ylabel("forward ms (depthwise layer)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    save_figure(fig, path)

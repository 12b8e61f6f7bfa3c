"""How latency and memory grow with the token count, per mixer (the FiT report's Table 2,
GFNet's Figure 2): models that differ only in their mixer, over image sizes at a fixed
patch size, with the fitted growth exponent per mixer."""

from __future__ import annotations

from pathlib import Path

import torch

from bench.common import Env, fit_exponent, predicted_over_cap, pyplot, save_figure, timed, write_csv
from blocks import build, presets
from blocks.cost import flops_per_image, gmacs_of, latency_ms, peak_memory_mb, train_step_ms

MIXERS = ("attention", "fourier", "global_filter", "performer", "fft_conv")
# (image size, patch size). 1080 is not divisible by 16: 1072 (67x67 tokens) stands in.
SIZES = [(32, 4), (64, 4), (128, 4), (224, 4), (320, 4), (448, 4), (1072, 16), (1072, 4)]
QUICK_SIZES = [(16, 4), (32, 4)]


def matmul_flops_per_s(device: str) -> float:
    """A rough FLOP rate of this device (a 1024^3 matmul), for predicting hopeless runs."""
    a = torch.randn(1024, 1024, device=device)
    for _ in range(2):
        a @ a
    if device == "cuda":
        torch.cuda.synchronize()
    import time

    t0 = time.perf_counter()
    for _ in range(5):
        a @ a
    if device == "cuda":
        torch.cuda.synchronize()
    return 5 * 2 * 1024**3 / (time.perf_counter() - t0)


def measure(mixer, size, patch, *, width, depth, device, repeats, cap_s, rate) -> dict:
    arch = presets.vit(mixer, image_size=size, patch_size=patch, width=width, depth=depth, heads=4, num_classes=10)
    flops = flops_per_image(arch)
    row = {"mixer": mixer, "image": size, "patch": patch, "tokens": (size // patch) ** 2, "gmacs": gmacs_of(flops)}
    # Forward (1 + repeats calls) and a training step (about 3x a forward, 2 + repeats calls).
    reason = predicted_over_cap(flops, rate, (1 + repeats) + 3 * (2 + repeats), cap_s)
    if reason:
        return {**row, "forward_ms": None, "step_ms": None, "peak_mb": None, "status": reason}
    torch.manual_seed(0)
    model = build(arch, device=device)
    image = torch.randn(1, 3, size, size, device=device)
    fwd, status = timed(lambda: latency_ms(model, image, repeats=repeats, warmup=1), cap_s=cap_s)
    step = peak = None
    if fwd is not None and not status:
        step, status = timed(lambda: train_step_ms(model, image, repeats=repeats, warmup=1), cap_s=cap_s)
        if step is not None and not status:
            peak, status = timed(lambda: peak_memory_mb(model, image), cap_s=cap_s)
    return {**row, "forward_ms": fwd, "step_ms": step, "peak_mb": peak, "status": status or "ok"}


def exponents(rows: list[dict], min_tokens: int) -> dict[str, float]:
    """Per mixer, the slope of log forward time against log tokens over finished runs
    with at least ``min_tokens`` tokens."""
    out = {}
    for mixer in dict.fromkeys(r["mixer"] for r in rows):
        pts = [(r["tokens"], r["forward_ms"]) for r in rows if r["mixer"] == mixer and r["status"] == "ok"]
        pts = [p for p in pts if p[0] >= min_tokens]
        if len(pts) >= 2:
            out[mixer] = fit_exponent([p[0] for p in pts], [p[1] for p in pts])
    return out


def plot(rows: list[dict], slopes: dict[str, float], path: Path) -> None:
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for mixer in dict.fromkeys(r["mixer"] for r in rows):
        done = sorted(
            (r for r in rows if r["mixer"] == mixer and r["forward_ms"] is not None), key=lambda r: r["tokens"]
        )
        label = f"{mixer} (slope {slopes[mixer]:.2f})" if mixer in slopes else mixer
        axes[0].plot([r["tokens"] for r in done], [r["forward_ms"] for r in done], "o-", label=label)
        mem = [r for r in done if r["peak_mb"] is not None]
        axes[1].plot([r["tokens"] for r in mem], [r["peak_mb"] for r in mem], "o-", label=mixer)
    for ax, what in zip(axes, ("forward latency, batch 1 (ms)", "training-step peak memory (MiB)"), strict=True):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("tokens")
        ax.set_ylabel(what)
        ax.grid(alpha=0.3, which="both")
    axes[0].legend(fontsize=8)
    save_figure(fig, path)


def run(out: Path, *, device: str, repeats: int, cap_s: float, quick: bool, console) -> list[dict]:
    width, depth = (16, 1) if quick else (128, 4)
    sizes = QUICK_SIZES if quick else SIZES
    rate = matmul_flops_per_s(device)
    rows = []
    for size, patch in sizes:
        for mixer in MIXERS:
            rows.append(
                measure(
                    mixer, size, patch, width=width, depth=depth, device=device, repeats=repeats, cap_s=cap_s, rate=rate
                )
            )
            console.print(f"  {mixer:14s} {size}x{size}/{patch}: {rows[-1]['status']} {rows[-1]['forward_ms']}")
    slopes = exponents(rows, min_tokens=16 if quick else 1024)
    env = Env.current(device, repeats)
    write_csv(out / "scaling.csv", rows, env)
    write_csv(out / "scaling_exponents.csv", [{"mixer": m, "exponent": s} for m, s in slopes.items()], env)
    plot(rows, slopes, out / "scaling.png")
    return rows

"""Flat against 2- and 3-block funnel layouts of one ViT (Funnel-ViT Table 2): time per
training step, peak memory and activation memory."""

from __future__ import annotations

from pathlib import Path

import torch

from bench.common import Env, pyplot, save_figure, timed, write_csv
from blocks import build, presets, summary
from blocks.cost import activation_memory_mb, flops_per_image, gmacs_of, peak_memory_mb, train_step_ms

# name -> (blocks, pool-query-only in the first layer after each pool)
LAYOUTS = {
    "flat B12": ((12,), True),
    "funnel B6-6": ((6, 6), True),
    "funnel B4-4-4": ((4, 4, 4), True),
    "funnel B4-4-4, pooled k/v": ((4, 4, 4), False),
}


def run(
    out: Path,
    *,
    device: str,
    repeats: int,
    cap_s: float,
    quick: bool,
    console,
    width: int = 192,
    heads: int = 3,
    batch: int = 16,
) -> list[dict]:
    layouts = {"flat B2": ((2,), True), "funnel B1-1": ((1, 1), True)} if quick else LAYOUTS
    if quick:
        width, heads, batch = 16, 2, 2
    rows = []
    for name, (layout, query_only) in layouts.items():
        arch = presets.funnel_vit(layout, width=width, heads=heads, query_only=query_only)
        torch.manual_seed(0)
        model = build(arch, device=device)
        images = torch.randn(batch, 3, 224, 224, device=device)
        step, status = timed(lambda m=model, x=images: train_step_ms(m, x, repeats=repeats, warmup=1), cap_s=cap_s)
        rows.append(
            {
                "layout": name,
                "gmacs": gmacs_of(flops_per_image(arch)),
                "step_ms": step,
                "peak_mb": peak_memory_mb(model, images),
                "activation_mb": activation_memory_mb(model, images),
                "status": status or "ok",
                "summary": summary(arch),
            }
        )
        console.print(f"  {name}: {step:.0f} ms/step")
    flat = rows[0]
    for r in rows:
        r["step_saving_%"] = 100 * (1 - r["step_ms"] / flat["step_ms"])
        r["activation_saving_%"] = 100 * (1 - r["activation_mb"] / flat["activation_mb"])
    env = Env.current(device, repeats)
    write_csv(out / "funnel.csv", rows, env)
    plot(rows, out / "funnel.png")
    return rows


def plot(rows: list[dict], path: Path) -> None:
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.5))
    names = [r["layout"] for r in rows]
    for ax, key, label in zip(
        axes,
        ("step_ms", "activation_mb", "peak_mb"),
        ("ms per training step", "activation MiB", "peak MiB"),
        strict=True,
    ):
        ax.bar(names, [r[key] for r in rows], color=["tab:gray"] + ["tab:blue"] * (len(rows) - 1))
        ax.set_ylabel(label)
        ax.tick_params(axis="x", labelsize=8)
    save_figure(fig, path)

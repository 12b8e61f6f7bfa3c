"""What every bench shares: the environment line, the time cap, CSV and table output."""

from __future__ import annotations

import csv
import math
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table
from rich.text import Text


@dataclass(frozen=True)
class Env:
    device: str
    threads: int
    torch: str
    repeats: int

    @classmethod
    def current(cls, device: str, repeats: int) -> Env:
        name = torch.cuda.get_device_name() if device == "cuda" else platform.processor() or platform.machine()
        return cls(f"{device} ({name})", torch.get_num_threads(), torch.__version__, repeats)

    def line(self) -> str:
        return f"device {self.device}, {self.threads} threads, torch {self.torch}, median of {self.repeats} repeats"


def pick_device(device: str | None) -> str:
    return device or ("cuda" if torch.cuda.is_available() else "cpu")


def timed(fn: Callable[[], float], *, cap_s: float) -> tuple[float | None, str]:
    """Run a measurement; (value, "") or (None, why it did not finish): out of memory,
    or past ``cap_s`` of wall time (checked after the fact; see ``predicted_over_cap``)."""
    start = time.perf_counter()
    try:
        value = fn()
    except (torch.OutOfMemoryError, MemoryError) as err:
        return None, f"DNF: out of memory ({type(err).__name__})"
    except RuntimeError as err:
        if "memory" in str(err).lower():
            return None, "DNF: out of memory"
        raise
    if time.perf_counter() - start > cap_s:
        return value, f"over the {cap_s:g} s cap"
    return value, ""


def predicted_over_cap(flops: float, flops_per_s: float, calls: int, cap_s: float) -> str:
    """A DNF reason when a configuration's FLOPs at the measured rate would exceed the
    cap, so that hopeless configurations are recorded without being run for hours."""
    predicted = flops * calls / flops_per_s
    return f"DNF: predicted {predicted:,.0f} s from its FLOPs > {cap_s:g} s cap" if predicted > cap_s else ""


def write_csv(path: Path, rows: Sequence[dict], env: Env) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = [*dict.fromkeys(k for row in rows for k in row), "device", "threads", "torch", "repeats"]
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow(
                {**row, "device": env.device, "threads": env.threads, "torch": env.torch, "repeats": env.repeats}
            )


def print_table(console: Console, title: str, rows: Sequence[dict], env: Env) -> None:
    """The rows as tables, one per set of columns (long text columns stay in the CSV)."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault(tuple(row), []).append(row)
    for keys, members in groups.items():
        columns = [c for c in keys if c not in ("summary", "ray")]
        table = Table(*columns, title=f"{title}\n{env.line()}")
        for row in members:
            table.add_row(*(Text(fmt(row.get(c))) for c in columns))
        console.print(table)


def fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}"
    return str(value)


def fit_exponent(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Slope of log y against log x (least squares): the growth exponent."""
    lx, ly = [math.log(x) for x in xs], [math.log(y) for y in ys]
    mx, my = sum(lx) / len(lx), sum(ly) / len(ly)
    den = sum((a - mx) ** 2 for a in lx)
    return sum((a - mx) * (b - my) for a, b in zip(lx, ly, strict=True)) / den if den else float("nan")


def save_figure(fig, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt

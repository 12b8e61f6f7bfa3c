"""Pareto fronts over trial metrics: the non-dominated set, its hypervolume, a CSV, a plot."""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np


def _as_min(rows: Sequence[Mapping[str, float]], objectives) -> np.ndarray:
    """(n, k) values turned so that smaller is better for every objective."""
    sign = np.array([-1.0 if o.direction == "max" else 1.0 for o in objectives])
    return np.array([[row[o.metric] for o in objectives] for row in rows], dtype=float).reshape(-1, len(sign)) * sign


@dataclass(frozen=True)
class _Min:  # an objective already in "smaller is better" form, keyed by position
    metric: int
    direction: str = "min"


_MIN = [_Min(i) for i in range(16)]


def nondominated(rows: Sequence[Mapping[str, float]], objectives) -> list[int]:
    """Indices of the rows no other row dominates (at least as good everywhere, better once).

    Rows are visited in lexicographic order, where a dominating row always comes before
    the rows it dominates; a row is kept unless one already kept dominates it (a dominated
    dominator implies a kept one). O(n x front) rather than O(n^2): a 15,625-row table in
    well under a second."""
    values = _as_min(rows, objectives)
    kept: list[int] = []
    for i in np.lexsort(values.T[::-1]):
        v = values[i]
        front = values[kept]
        if not np.any(np.all(front <= v, axis=1) & np.any(front < v, axis=1)):
            kept.append(int(i))
    return sorted(kept)


def hypervolume(rows: Sequence[Mapping[str, float]], objectives) -> tuple[float, list[float]]:
    """The hypervolume the rows dominate, and the reference point used: per objective
    the worst observed value plus 10% of the observed range (in "smaller is better"
    form, so a maximised metric's reference is reported negated)."""
    values = _as_min(rows, objectives)
    if len(values) == 0:
        return 0.0, []
    worst, best = values.max(axis=0), values.min(axis=0)
    ref = worst + 0.1 * np.where(worst > best, worst - best, np.maximum(np.abs(worst), 1.0))
    front = values[nondominated(rows, objectives)]
    # Optuna's exact WFG algorithm. Optuna has no public hypervolume function (only the
    # plot_hypervolume_history figure), so this is archsweep's one use of a private Optuna
    # module, pinned with Optuna's version; tests/search/results/test_pareto.py checks it by hand.
    from optuna._hypervolume import compute_hypervolume

    return float(compute_hypervolume(front, ref)), ref.tolist()


def hypervolume_at(rows: Sequence[Mapping[str, float]], objectives, reference: Sequence[float]) -> float:
    """The hypervolume the rows dominate up to a fixed ``reference`` (one value per
    objective, in the metrics' own units and directions): rows that do not dominate it
    add nothing. A fixed reference makes values of different sweeps comparable."""
    values = _as_min(rows, objectives)
    sign = np.array([-1.0 if o.direction == "max" else 1.0 for o in objectives])
    ref = np.asarray(reference, dtype=float) * sign
    inside = values[np.all(values < ref, axis=1)] if len(values) else values
    if len(inside) == 0:
        return 0.0
    from optuna._hypervolume import compute_hypervolume  # see hypervolume()

    keep = nondominated([dict(zip(range(len(ref)), v, strict=True)) for v in inside], _MIN[: len(ref)])
    return float(compute_hypervolume(inside[keep], ref))


def to_csv(rows: Sequence[Mapping[str, object]], columns: Sequence[str]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def plot(rows: Sequence[Mapping[str, float]], front: Sequence[int], objectives):
    """Accuracy-like first objective against each other objective; the front highlighted."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    first, others = objectives[0], list(objectives[1:]) or [objectives[0]]
    fig, axes = plt.subplots(1, len(others), figsize=(5 * len(others), 4), squeeze=False)
    on_front = set(front)
    for ax, other in zip(axes[0], others, strict=True):
        xs = [r[other.metric] for r in rows]
        ys = [r[first.metric] for r in rows]
        colors = ["tab:red" if i in on_front else "tab:gray" for i in range(len(rows))]
        ax.scatter(xs, ys, c=colors, s=30)
        pts = sorted((xs[i], ys[i]) for i in front)
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], color="tab:red", lw=1)
        for i in front:
            ax.annotate(
                str(rows[i].get("trial", i)), (xs[i], ys[i]), fontsize=7, xytext=(3, 3), textcoords="offset points"
            )
        ax.set_xlabel(f"{other.metric} ({other.direction})")
        ax.set_ylabel(f"{first.metric} ({first.direction})")
        if other.metric in ("params", "gmacs", "gflops", "latency_ms", "peak_mem_mb") and min(xs) > 0:
            ax.set_xscale("log")
        ax.grid(alpha=0.3)
    fig.suptitle("Pareto front (red) of the feasible completed trials")
    fig.tight_layout()
    return fig

"""An ablation's statistics: per-arm means, the paired difference of every arm to the
base arm (paired by seed), and its markdown table and plot."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy import stats


def paired(arm: Sequence[float], base: Sequence[float], confidence: float = 0.95) -> dict[str, float]:
    """Mean difference arm - base over paired seeds, its confidence interval (Student's t)
    and the two-sided p-value of the paired t-test (scipy's ``ttest_rel``)."""
    a, b = np.asarray(arm, dtype=float), np.asarray(base, dtype=float)
    diff = a - b
    out = {"n": float(len(diff)), "diff": float(diff.mean()) if len(diff) else math.nan}
    if len(diff) < 2 or np.all(diff == diff[0]):
        return {
            **out,
            "ci_low": out["diff"] if len(diff) else math.nan,
            "ci_high": out["diff"] if len(diff) else math.nan,
            "p": math.nan,
        }
    test = stats.ttest_rel(a, b)
    interval = test.confidence_interval(confidence)
    return {**out, "ci_low": float(interval.low), "ci_high": float(interval.high), "p": float(test.pvalue)}


def report(arms: Sequence[Any], trials: Sequence[Mapping], metrics: Sequence[str]) -> list[dict]:
    """One row per arm (an ablation's arms, base first: each with ``name`` and ``refused``):
    mean and std of each metric, and for each the paired difference to the base arm;
    refused arms with their reason. ``trials`` rows carry arm (an index), seed, metrics."""
    by_arm: dict[int, dict[int, Mapping]] = {}
    for t in trials:
        by_arm.setdefault(t["arm"], {})[t["seed"]] = t
    base = by_arm.get(0, {})
    rows = []
    for i, arm in enumerate(arms):
        row: dict[str, Any] = {"arm": arm.name, "seeds": len(by_arm.get(i, {})), "refused": arm.refused}
        runs = by_arm.get(i, {})
        for m in metrics:
            values = [r[m] for r in runs.values()]
            row[f"{m}_mean"] = float(np.mean(values)) if values else math.nan
            row[f"{m}_std"] = float(np.std(values, ddof=1)) if len(values) > 1 else math.nan
            if i != 0:
                seeds = sorted(set(runs) & set(base))
                stats_ = paired([runs[s][m] for s in seeds], [base[s][m] for s in seeds])
                row.update(
                    {
                        f"{m}_diff": stats_["diff"],
                        f"{m}_ci_low": stats_["ci_low"],
                        f"{m}_ci_high": stats_["ci_high"],
                        f"{m}_p": stats_["p"],
                    }
                )
        rows.append(row)
    return rows


def markdown(rows: Sequence[Mapping], metrics: Sequence[str]) -> str:
    head = [
        "arm",
        "seeds",
        *[f"{m} (mean ± std)" for m in metrics],
        *[f"Δ{m} [95% CI], p" for m in metrics[:1]],
        "refused",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["arm"], str(r["seeds"])]
        cells += [plus_minus(r[f"{m}_mean"], r[f"{m}_std"]) for m in metrics]
        m = metrics[0]
        cells.append(
            "-"
            if f"{m}_diff" not in r
            else f"{r[f'{m}_diff']:+.4g} [{r[f'{m}_ci_low']:+.4g}, {r[f'{m}_ci_high']:+.4g}], {p_value(r[f'{m}_p'])}"
        )
        cells.append(r["refused"] or "-")
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def plus_minus(mean: float, std: float) -> str:
    if math.isnan(mean):
        return "-"
    return f"{mean:.4g}" if math.isnan(std) else f"{mean:.4g} ± {std:.2g}"


def p_value(p: float) -> str:
    return "p n/a" if math.isnan(p) else f"p={p:.3g}"


def plot(rows: Sequence[Mapping], accuracy: str, cost: str):
    """Accuracy against cost per arm, with standard-deviation error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for r in rows:
        if r["refused"] or math.isnan(r[f"{accuracy}_mean"]):
            continue
        yerr = 0 if math.isnan(r[f"{accuracy}_std"]) else r[f"{accuracy}_std"]
        xerr = 0 if math.isnan(r[f"{cost}_std"]) else r[f"{cost}_std"]
        ax.errorbar(r[f"{cost}_mean"], r[f"{accuracy}_mean"], xerr=xerr, yerr=yerr, fmt="o", capsize=3)
        ax.annotate(
            r["arm"], (r[f"{cost}_mean"], r[f"{accuracy}_mean"]), fontsize=7, xytext=(4, 4), textcoords="offset points"
        )
    ax.set_xlabel(cost)
    ax.set_ylabel(accuracy)
    ax.grid(alpha=0.3)
    ax.set_title("ablation arms (mean ± std over seeds)")
    fig.tight_layout()
    return fig

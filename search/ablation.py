"""Ablation studies: a fixed base model, factors with levels, arms, seeds, paired statistics.

An ``ablation:`` section replaces ``search:``::

    ablation:
      factors:
        model.stages[*].mixer: [attention, performer, fourier]   # the first level is the base
        model.embedding: [patch, {conv: {channels: [32, 64]}}]
      design: one-at-a-time        # or factorial
      seeds: 3

Each arm is the base with some factors set to other levels; each arm runs once per seed
as a trial of the sweep (so resume, failure handling and the MLflow layout are the
sweep's). The report compares every arm with the base, paired by seed.
"""

from __future__ import annotations

import copy
import itertools
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

from search.yamlio import join


@dataclass(frozen=True)
class Arm:
    name: str
    levels: Mapping[str, Any]  # factor path -> level (as written)
    model: Mapping[str, Any]  # the arm's model section, as written
    train: Mapping[str, Any]
    refused: str = ""  # why the builder refuses it ("" when it builds)


@dataclass(frozen=True)
class Ablation:
    factors: Mapping[str, tuple]  # path -> levels, the first being the base level
    design: str
    seeds: int
    arms: tuple[Arm, ...]

    @property
    def runnable(self) -> list[int]:
        return [i for i, arm in enumerate(self.arms) if not arm.refused]


def label(level: Any) -> str:
    if isinstance(level, Mapping) and len(level) == 1:
        ((name, options),) = level.items()
        return f"{name}{json.dumps(options, separators=(',', ':'))}" if options else str(name)
    return level if isinstance(level, str) else json.dumps(level, separators=(",", ":"))


_PART = re.compile(r"([^.\[\]]+)|\[(\*|\d+)\]")


def set_path(data: dict, path: str, value: Any) -> bool:
    """Set ``path`` (``stages[*].mixer`` sets every stage) in ``data``; False if absent."""
    parts = [m.group(1) or m.group(2) for m in _PART.finditer(path)]
    nodes = [data]
    for part in parts[:-1]:
        nxt = []
        for node in nodes:
            if part == "*" and isinstance(node, list):
                nxt += node
            elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                nxt.append(node[int(part)])
            elif isinstance(node, dict) and part in node:
                nxt.append(node[part])
            elif isinstance(node, dict) and part not in node and part != "*":
                node[part] = {}
                nxt.append(node[part])
        nodes = nxt
    last = parts[-1]
    for node in nodes:
        if isinstance(node, dict):
            node[last] = copy.deepcopy(value)
        elif isinstance(node, list) and last.isdigit() and int(last) < len(node):
            node[int(last)] = copy.deepcopy(value)
    return bool(nodes)


def path_parts(path: str) -> list[tuple[str, bool]]:
    """``stages[*].mixer`` -> [("stages", False), ("*", True), ("mixer", False)] (True: an index)."""
    return [(m.group(1) or m.group(2), m.group(2) is not None) for m in _PART.finditer(path)]


def absent(section: str, data: Any, path: str) -> str | None:
    """Why ``path`` (``stages[*].mixer``) names nothing that ``set_path`` could set in
    ``data``, the base's ``section``; None when it does. A last key the base leaves out is
    fine: it is a field at its default, and the section's own checks know its name."""
    steps = path_parts(path)
    nodes, at = [data], section
    for i, (part, indexed) in enumerate(steps):
        last, found = i == len(steps) - 1, []
        for node in nodes:
            if isinstance(node, list) and indexed:
                if part == "*" and node and not last:
                    found += node
                elif part.isdigit() and int(part) < len(node):
                    found.append(node[int(part)])
                elif part == "*":
                    return f"{at}[*]: a factor path ends in a key or an index" if node else f"the base's {at} is empty"
                else:
                    return f"the base's {at} has {len(node)} item(s), numbered from 0; there is no [{part}]"
            elif isinstance(node, Mapping) and not indexed:
                if part in node:
                    found.append(node[part])
                elif not last:
                    return f"the base sets no {at}.{part}"
            elif isinstance(node, list):
                return f"the base's {at} is a list: say which items, {at}[*] or {at}[0]"
            elif isinstance(node, Mapping):
                return f"the base's {at} is a mapping, not a list"
            else:
                return f"the base's {at} is {node!r}, which has no {part!r}; vary {at} as a whole"
        nodes, at = found, f"{at}[{part}]" if indexed else f"{at}.{part}"
    return None


def key_paths(data: Any, prefix: str) -> set[str]:
    """Every key path in ``data``, also with ``[*]`` for each index (for did-you-mean)."""
    out: set[str] = set()
    items = data.items() if isinstance(data, Mapping) else enumerate(data) if isinstance(data, list) else ()
    for key, value in items:
        path = f"{prefix}[{key}]" if isinstance(data, list) else f"{prefix}.{key}"
        out |= {path, re.sub(r"\[\d+\]", "[*]", path)} | key_paths(value, path)
    return out


def is_joint(path: str, levels: Any) -> bool:
    """A named factor whose levels each set several key paths at once::

    layout:
      B12: {model.stages[0].depth: 12, model.stages[1].depth: 0}
      B6-6: {model.stages[0].depth: 6, model.stages[1].depth: 6}
    """
    return isinstance(levels, Mapping) and path.split(".", 1)[0] not in ("model", "train")


def _settings(path: str, level: Any) -> dict[str, Any]:
    return dict(level) if isinstance(level, Mapping) and not path.startswith(("model.", "train.")) else {path: level}


def arms(factors: Mapping[str, Any], design: str, model: dict, train: dict) -> list[tuple[str, dict, dict, dict]]:
    """(name, levels, model, train) per arm; the base arm first. A joint factor's levels
    are named (``{label: {path: value, ...}}``); a plain factor's are values."""
    factors = {p: (list(v.items()) if is_joint(p, v) else [(None, x) for x in v]) for p, v in factors.items()}
    base_levels = {path: levels[0] for path, levels in factors.items()}
    if design == "factorial":
        combos = [dict(zip(factors, pick, strict=True)) for pick in itertools.product(*factors.values())]
    else:
        combos = [base_levels] + [
            {**base_levels, path: level} for path, levels in factors.items() for level in levels[1:]
        ]
    out = []
    for levels in combos:
        m, t = copy.deepcopy(model), copy.deepcopy(train)
        for path, (_, level) in levels.items():
            for target, value in _settings(path, level).items():
                section, _, rest = target.partition(".")
                set_path(m if section == "model" else t, rest, value)
        changed = {p: v for p, v in levels.items() if v != base_levels[p]}
        shown = levels if design == "factorial" else changed
        name = ", ".join(_arm_label(p, v) for p, v in shown.items()) or "base"
        out.append((name, {p: (v if n is None else n) for p, (n, v) in levels.items()}, m, t))
    return out


def _arm_label(path: str, level: tuple) -> str:
    name, value = level
    return f"{path}={name}" if name is not None else f"{path.split('.', 1)[1]}={label(value)}"


# -- statistics ----------------------------------------------------------------------------


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


def report(ablation: Ablation, trials: Sequence[Mapping], metrics: Sequence[str]) -> list[dict]:
    """One row per arm: mean and std of each metric, and for each the paired difference to
    the base arm; refused arms with their reason. ``trials`` rows carry arm, seed, metrics."""
    by_arm: dict[int, dict[int, Mapping]] = {}
    for t in trials:
        by_arm.setdefault(t["arm"], {})[t["seed"]] = t
    base = by_arm.get(0, {})
    rows = []
    for i, arm in enumerate(ablation.arms):
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
        cells += [_pm(r[f"{m}_mean"], r[f"{m}_std"]) for m in metrics]
        m = metrics[0]
        cells.append(
            "-"
            if f"{m}_diff" not in r
            else f"{r[f'{m}_diff']:+.4g} [{r[f'{m}_ci_low']:+.4g}, {r[f'{m}_ci_high']:+.4g}], {_p(r[f'{m}_p'])}"
        )
        cells.append(r["refused"] or "-")
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def _pm(mean: float, std: float) -> str:
    if math.isnan(mean):
        return "-"
    return f"{mean:.4g}" if math.isnan(std) else f"{mean:.4g} ± {std:.2g}"


def _p(p: float) -> str:
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


__all__ = ["Ablation", "Arm", "absent", "arms", "join", "key_paths", "markdown", "paired", "plot", "report", "set_path"]

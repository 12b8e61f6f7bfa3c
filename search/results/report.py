"""The sweep's HTML report: one self-contained page (the Pareto plot inline as SVG, no
scripts, no links out) that MLflow's artifact viewer shows as it is, and that can be
mailed or opened from disk: the front, every trial with its outcome, the spec."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape

import yaml

from search.results.stats import markdown

STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 24px; color: #1b1f24; }
h1 { font-size: 22px; margin-bottom: 4px; } h2 { font-size: 17px; margin-top: 28px; }
table { border-collapse: collapse; } th, td { padding: 3px 10px; border-bottom: 1px solid #d8dee4; }
th { text-align: left; background: #f3f5f7; } td.n { text-align: right; font-variant-numeric: tabular-nums; }
tr.front td { background: #eef7ee; } .muted { color: #59636e; } pre { background: #f6f8fa; padding: 12px; }
svg { max-width: 760px; height: auto; }
"""


def _cell(value: object) -> str:
    if isinstance(value, float):
        text = f"{value:,.0f}" if value.is_integer() and abs(value) >= 1 else f"{value:.4g}"
        return f'<td class="n">{text}</td>'
    return f"<td>{escape(str(value))}</td>"


def table(rows: Sequence[Mapping], columns: Sequence[str], front: set[int] = frozenset()) -> str:
    head = "".join(f"<th>{escape(c)}</th>" for c in columns)
    body = []
    for row in rows:
        mark = ' class="front"' if row.get("trial") in front else ""
        cells = "".join(_cell(row.get(c, "")) for c in columns)
        body.append(f"<tr{mark}>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _inline_svg(svg: str) -> str:
    """matplotlib's SVG document without its XML prologue, to sit inside HTML."""
    start = svg.find("<svg")
    return svg[start:] if start >= 0 else ""


def html(
    spec,
    front: Sequence[Mapping],
    trials: Sequence[Mapping],
    summary: Mapping[str, float],
    plot_svg: str = "",
    ablation_rows: Sequence[Mapping] | None = None,
) -> str:
    """The report of a finished sweep. ``front`` and ``trials`` are rows with ``trial``,
    ``arch`` and metrics (``trials`` also ``state`` and ``reason``)."""
    objectives = [o.metric for o in spec.objectives]
    costs = [m for m in ("params", "gmacs", "latency_ms", "peak_mem_mb") if m not in objectives]
    first = spec.objectives[0]
    ordered_front = sorted(front, key=lambda r: r[first.metric], reverse=first.direction == "max")
    counts = ", ".join(f"{v:g} {k.removeprefix('trials_').replace('_', ' ')}" for k, v in summary.items())
    goal = ", ".join(f"{o.direction} {o.metric}" for o in spec.objectives)
    parts = [
        f"<h1>{escape(spec.name)}</h1>",
        f"<p>{escape(spec.description)}</p>" if spec.description else "",
        f'<p class="muted">objectives: {escape(goal)} &middot; {escape(counts)}</p>',
        _inline_svg(plot_svg),
        f"<h2>Pareto front ({len(front)} trials)</h2>",
        table(ordered_front, ["trial", *objectives, *costs, "arch"]),
    ]
    if ablation_rows:
        shown = list(dict.fromkeys([*objectives, "params", "gmacs"]))
        parts += ["<h2>Ablation</h2>", f"<pre>{escape(markdown(ablation_rows, shown))}</pre>"]
    on_front = {r["trial"] for r in front}
    parts += [
        f"<h2>All trials ({len(trials)}; the front highlighted)</h2>",
        table(
            sorted(trials, key=lambda r: r["trial"]),
            ["trial", "state", *objectives, *costs, "arch", "reason"],
            on_front,
        ),
        "<h2>Spec</h2>",
        f"<pre>{escape(yaml.safe_dump(dict(spec.resolved), sort_keys=False))}</pre>",
    ]
    body = "\n".join(p for p in parts if p)
    return (
        f'<!doctype html>\n<html><head><meta charset="utf-8"><title>{escape(spec.name)}</title>'
        f"<style>{STYLE}</style></head><body>\n{body}\n</body></html>\n"
    )

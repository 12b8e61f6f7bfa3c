"""The sweep as one self-contained HTML page (report.html on the parent run): MLflow's
artifact viewer shows it in place, and it opens from a disk without a server."""

from __future__ import annotations

import base64
from html import escape

STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th { background: #f3f3f3; } td.text { text-align: left; font-family: monospace; }
tr.front td { background: #eef6ee; } pre { background: #f6f6f6; padding: 1em; overflow: auto; }
"""


def _cell(value) -> str:
    if isinstance(value, float):
        text = f"{value:,.0f}" if value.is_integer() and abs(value) >= 1 else f"{value:.4g}"
        return f"<td>{text}</td>"
    return f'<td class="text">{escape(str(value))}</td>'


def _table(rows: list[dict], columns: list[str], highlight: set[int] = frozenset()) -> str:
    head = "".join(f"<th>{escape(c)}</th>" for c in columns)
    body = []
    for row in rows:
        marker = ' class="front"' if row.get("trial") in highlight else ""
        body.append(f"<tr{marker}>" + "".join(_cell(row.get(c, "")) for c in columns) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def sweep_page(
    *,
    name: str,
    description: str,
    objectives: list[str],
    rows: list[dict],
    front: list[dict],
    others: list[dict],
    spec_yaml: str,
    plot_png: bytes | None,
) -> str:
    """``rows``: every feasible completed trial; ``front``: the Pareto-optimal ones;
    ``others``: trials that did not complete (trial, state, reason)."""
    metrics = [*objectives, *[m for m in ("params", "gmacs", "latency_ms", "train_time_s") if m not in objectives]]
    columns = ["trial", *metrics, "arch"]
    on_front = {r["trial"] for r in front}
    parts = [
        f"<h1>Sweep {escape(name)}</h1>",
        f"<p>{escape(description)}</p>" if description else "",
        f"<p>{len(rows)} feasible trials, {len(front)} on the Pareto front ({', '.join(map(escape, objectives))}),"
        f" {len(others)} infeasible, failed or pruned. Trials on the front are shaded.</p>",
    ]
    if plot_png:
        data = base64.b64encode(plot_png).decode()
        parts.append(f'<img alt="Pareto front" src="data:image/png;base64,{data}" style="max-width: 720px">')
    parts += ["<h2>Pareto front</h2>", _table(sorted(front, key=lambda r: r["trial"]), columns)]
    parts += ["<h2>All feasible trials</h2>", _table(sorted(rows, key=lambda r: r["trial"]), columns, on_front)]
    if others:
        parts += ["<h2>Other trials</h2>", _table(others, ["trial", "state", "reason"])]
    parts += ["<h2>The spec</h2>", f"<pre>{escape(spec_yaml)}</pre>"]
    body = "\n".join(p for p in parts if p)
    return (
        f'<!doctype html><html><head><meta charset="utf-8"><title>{escape(name)}</title>'
        f"<style>{STYLE}</style></head><body>\n{body}\n</body></html>\n"
    )

"""The terminal: a live view while a sweep runs (a line per trial when the output is not
a terminal), the final Pareto table and what became of every trial."""

from __future__ import annotations

import threading
from collections import Counter

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from search.results.progress import Progress
from search.results.stats import p_value, plus_minus


def front_table(front: list[dict], objectives, title: str = "Pareto front", run_ids: bool = False) -> Table:
    """The front, best first by the first objective; ``run_ids``: with each trial's MLflow
    run id (what ``main.py export`` takes) and whether it has a logged model."""
    extra = [m for m in ("params", "gmacs") if m not in {o.metric for o in objectives}]
    columns = [f"{o.metric} ({o.direction})" for o in objectives] + extra
    table = Table("trial", *columns, "architecture", title=title)
    if run_ids:
        table.add_column("run id", no_wrap=True, min_width=32)  # whole: it is copied into a command
        table.add_column("model")
    for row in sorted(front, key=lambda r: r[objectives[0].metric], reverse=objectives[0].direction == "max"):
        values = [row[o.metric] for o in objectives] + [row[m] for m in extra]
        ids = [row["run_id"], "yes" if row["model"] else "-"] if run_ids else []
        table.add_row(f"t{row['trial']:02d}", *map(_number, values), Text(row["arch"]), *ids)
    return table


def _number(v: float) -> str:
    return f"{v:,.0f}" if float(v).is_integer() and abs(v) >= 1 else f"{v:.4g}"


def trial_line(row: dict, objectives) -> str:
    """One ended trial: ``t03 complete: val_accuracy 0.912, gmacs 0.0011 | arch``, with its
    reason first when it has one (``t04 infeasible: breaks params <= 20000 | arch``)."""
    metrics = row.get("metrics", {})
    shown = ", ".join(f"{o.metric} {_number(metrics[o.metric])}" for o in objectives if o.metric in metrics)
    parts = [row.get("reason", ""), shown if row["state"] in ("complete", "duplicate") else ""]
    detail = "; ".join(p for p in parts if p)
    return f"t{row['trial']:02d} {row['state']}" + (f": {detail}" if detail else "") + f" | {row.get('arch', '')}"


def tally(rows: list[dict]) -> list[str]:
    """What became of the sweep's trials: counts per state, then the infeasible and failed
    ones grouped by reason, and which trials were repeats of which."""
    states = Counter(r["state"] for r in rows)
    order = ["complete", "duplicate", "infeasible", "pruned", "failed", "interrupted"]
    counts = ", ".join(f"{states[s]} {s}" for s in [*order, *sorted(set(states) - set(order))] if states[s])
    lines = [f"{len(rows)} trials: {counts or 'none'}"]
    for state in ("infeasible", "failed", "outside"):
        reasons = Counter(r["reason"] or "no reason recorded" for r in rows if r["state"] == state)
        if reasons:
            groups = ", ".join(f"{reason} ({n})" for reason, n in reasons.most_common())
            lines.append(f"{states[state]} {state}: {groups}")
    repeats = [f"t{r['trial']:02d} = t{int(r['duplicate_of']):02d}" for r in rows if r["state"] == "duplicate"]
    if repeats:
        answered = "the same draw again, answered without training, not counted in search.trials"
        lines.append(f"{len(repeats)} duplicate ({answered}): {', '.join(repeats)}")
    given = Counter(r["warm_from"].split(":")[0] for r in rows if r.get("warm_from"))
    for source, n in given.items():
        lines.append(f"{n} of the complete given by a warm start from sweep {source}, not trained here")
    if states["interrupted"]:
        lines.append(f"{states['interrupted']} interrupted (stopped by Ctrl-C or a lost process; run again)")
    return lines


def ablation_table(rows: list[dict], metrics: list[str], title: str) -> Table:
    """Per arm: mean ± std of each metric; the first metric's paired difference to base."""

    first = metrics[0]
    table = Table("arm", "seeds", *metrics, f"Δ{first} [95% CI]", "p", "refused", title=title)
    for r in rows:
        diff = "-"
        if f"{first}_diff" in r and r["seeds"]:
            diff = f"{r[f'{first}_diff']:+.4g} [{r[f'{first}_ci_low']:+.4g}, {r[f'{first}_ci_high']:+.4g}]"
        p = p_value(r[f"{first}_p"]) if f"{first}_p" in r else "-"
        cells = [plus_minus(r[f"{m}_mean"], r[f"{m}_std"]) for m in metrics]
        table.add_row(Text(r["arm"]), str(r["seeds"]), *cells, diff, p, Text(r["refused"] or "-"))
    return table


class LiveView:
    """A rich Live display fed by the sweep's progress callbacks."""

    def __init__(self, objectives, console: Console) -> None:
        self.objectives, self.console = objectives, console
        self.progress: Progress | None = None
        self.live = Live(self, console=console, refresh_per_second=4, transient=True)
        self.printed, self.lock = 0, threading.Lock()  # trials (of progress.ended) printed as lines

    def update(self, progress: Progress) -> None:
        """Without a terminal (nohup, CI, a pipe) Live shows nothing: a line per ended trial instead."""
        self.progress = progress
        if self.console.is_terminal:
            return
        with self.lock:
            for row in progress.ended[self.printed :]:
                self.console.print(Text(trial_line(row, self.objectives)), soft_wrap=True)
            self.printed = len(progress.ended)

    def __rich__(self):
        p = self.progress
        if p is None:
            return Text("starting...")
        head = Text(
            f"trials: {p.done} complete, {p.duplicate} duplicate, {p.infeasible} infeasible, {p.pruned} pruned, "
            f"{p.failed} failed (this session; {p.requested} requested, repeats not counted)"
        )
        for number, doing in sorted(p.running.items()):
            head.append(f"\nnow: t{number:02d} {doing}")
        if p.stopped:
            head.append(f"\nstopping: {p.stopped}")
        return Group(head, front_table(p.front, self.objectives, "best front so far")) if p.front else head

    def __enter__(self):
        self.live.__enter__()
        return self

    def __exit__(self, *exc):
        return self.live.__exit__(*exc)

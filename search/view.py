"""The terminal: a live view while a sweep runs, and the final Pareto table."""

from __future__ import annotations

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from search.sweep import Progress


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


def ablation_table(rows: list[dict], metrics: list[str], title: str) -> Table:
    """Per arm: mean ± std of each metric; the first metric's paired difference to base."""
    from search.ablation import _p, _pm

    first = metrics[0]
    table = Table("arm", "seeds", *metrics, f"Δ{first} [95% CI]", "p", "refused", title=title)
    for r in rows:
        diff = "-"
        if f"{first}_diff" in r and r["seeds"]:
            diff = f"{r[f'{first}_diff']:+.4g} [{r[f'{first}_ci_low']:+.4g}, {r[f'{first}_ci_high']:+.4g}]"
        p = _p(r[f"{first}_p"]) if f"{first}_p" in r else "-"
        cells = [_pm(r[f"{m}_mean"], r[f"{m}_std"]) for m in metrics]
        table.add_row(Text(r["arm"]), str(r["seeds"]), *cells, diff, p, Text(r["refused"] or "-"))
    return table


class LiveView:
    """A rich Live display fed by the sweep's progress callbacks."""

    def __init__(self, objectives, console: Console) -> None:
        self.objectives, self.console = objectives, console
        self.progress: Progress | None = None
        self.live = Live(self, console=console, refresh_per_second=4, transient=True)

    def update(self, progress: Progress) -> None:
        self.progress = progress

    def __rich__(self):
        p = self.progress
        if p is None:
            return Text("starting...")
        head = Text(
            f"trials: {p.done} complete, {p.infeasible} infeasible, {p.pruned} pruned, {p.failed} failed "
            f"(this session; {p.requested} requested)"
        )
        for number, doing in sorted(p.running.items()):
            head.append(f"\nnow: t{number:02d} {doing}")
        return Group(head, front_table(p.front, self.objectives, "best front so far")) if p.front else head

    def __enter__(self):
        self.live.__enter__()
        return self

    def __exit__(self, *exc):
        return self.live.__exit__(*exc)

"""Replay: a sweep whose trials read their results from a recorded table instead of
training. The same spec grammar, sampler, duplicate answers, constraints, outcomes and
study as a real sweep (``search.sweep.pipeline``), with per-epoch accuracy from the
table, the spec's pruner (MO-ASHA's rung judge, or Optuna's pruner fed one objective) and a
simulated clock (each trial costs its recorded training time, per epoch run). Nothing
is logged to MLflow: a 1,000-trial sweep runs in seconds, for tests and ``bench search``.
Its ``trials`` count as a sweep's budget does (``search.sweep.budget``): distinct
evaluations, trained or refused; a repeat is answered, recorded and not counted, and a
replay stops early when the space is exhausted or its sampler only redraws (``stopped``).
A draw of a pruned trial's architecture continues it (``pipeline.continued_of``): it
trains only the epochs after the pruned trial's (``Replayed.epochs`` counts those), is
judged at the later rungs only, and is not counted in the budget.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import partial

import optuna
from optuna.trial import TrialState

from blocks import check as check_arch
from runs.data import geometry
from runs.metrics import Objective
from runs.trial import Infeasible
from search.pruners.mo_asha import RungJudge
from search.spec import Spec
from search.spec.arch import to_arch
from search.sweep import pipeline, study
from search.sweep.budget import Budget
from search.sweep.pipeline import Outcome
from search.sweep.study import Stop
from search.tables.table import Row, Table, TableError


@dataclass(frozen=True)
class Halving:
    """MO-ASHA settings: rung decisions after ``min_epochs`` x ``reduction_factor``^k epochs
    (None: the schema's defaults for mo_asha)."""

    min_epochs: int | None = None
    reduction_factor: int | None = None


@dataclass
class Replayed:
    """One replayed trial: what it cost (epochs trained, simulated seconds) and how it ended."""

    number: int
    state: str  # complete, infeasible, duplicate, pruned
    epochs: int  # epochs trained by this trial (0: answered or refused without training)
    seconds: float
    metrics: dict[str, float] = field(default_factory=dict)
    reason: str = ""
    continues: int | None = None  # the pruned trial it trained on (its epochs are not counted again)


@dataclass
class Replay:
    spec: Spec | None  # None for a table's own space (replay_cells)
    table: Table
    study: optuna.Study
    trials: list[Replayed] = field(default_factory=list)  # every trial, repeats included
    stopped: str = ""  # why it stopped before its budget was used up (``budget.Budget.stop``)

    def completed(self) -> list[dict[str, float]]:
        """The metrics of every trial that trained to the end (the front's candidates)."""
        return [t.metrics for t in self.trials if t.state == "complete"]


def row_for(rows: Mapping[str, Row], drawn: pipeline.Draw) -> Row:
    """The table's row of a draw; a clear ``TableError`` when the table does not hold it."""
    key = pipeline.draw_key(drawn.model, drawn.train)
    if key not in rows:
        raise TableError(
            f"trial {drawn.number} drew an architecture the table does not hold ({drawn.arch or 'draw ' + key[:12]}): "
            "a replay needs the table's own space and training settings"
        )
    return rows[key]


def _trained(row: Row, stops: Callable[[int, dict], Stop | None], start: int = 0) -> tuple[int, Stop | None]:
    """Epochs trained in all (``start`` of them before: a continuation's) until ``stops``
    stops the trial after one (and why) or it completes."""
    for epochs in range(start + 1, len(row.curve) + 1):
        stop = stops(epochs, row.metrics(epochs))
        if stop is not None:
            return epochs, stop
    return len(row.curve), None


def replay(
    spec: Spec,
    table: Table,
    *,
    trials: int | None = None,
    sampler: optuna.samplers.BaseSampler | None = None,
    halving: Halving | None = None,
    seed: int = 0,
    on_trial: Callable[[Replayed], None] = lambda t: None,
    into: optuna.Study | None = None,
) -> Replay:
    """Replay ``trials`` (default: the spec's) distinct evaluations of ``spec`` on
    ``table`` (rows of ``seed``; repeats answered besides, uncounted), with the spec's
    sampler unless another is given, pruned by MO-ASHA with ``halving`` (default: the
    spec's own ``search.pruner``, as the local backend runs it). The study is in memory: a
    new one, or ``into`` (an amended or warm-started study, its sampler and pruner already
    set; its trials are known as tried, and ``trials`` more are evaluated)."""
    rows = table.by_key(seed)
    if halving is not None:
        search = replace(spec.search, pruner="mo_asha", min_epochs=halving.min_epochs)
        spec = replace(spec, search=replace(search, reduction_factor=halving.reduction_factor))
    pruner = study.pruner_of(spec).optuna()
    # An informed sampler reads the table's costs (counted when it was recorded) rather than counting them again.
    if into is None:
        sampler = sampler or study.sampler_for(spec, counted={k: r.costs for k, r in rows.items()})
    sweep = into or study.create(spec, optuna.storages.InMemoryStorage(), sampler=sampler, pruner=pruner)
    judge = study.rung_judge(spec)  # MO-ASHA's, or None
    result = Replay(spec, table, sweep)
    earlier = Budget.of(spec, sweep.get_trials(deepcopy=False))
    budget = Budget(trials or spec.search.trials, earlier.size, tried=earlier.tried)
    while budget.left() and not budget.stop():
        trial = sweep.ask()
        drawn = pipeline.draw(spec, sweep, trial)
        key = trial.user_attrs.get("draw")
        replayed = _one(spec, sweep, trial, drawn, rows, judge)
        result.trials.append(replayed)
        budget.note(replayed.state, key, drawn.continues is None)  # a continuation: counted when first drawn
        on_trial(replayed)
    result.stopped = budget.stop()
    return result


def _one(spec: Spec, sweep: optuna.Study, trial, drawn: pipeline.Draw, rows, judge: RungJudge | None) -> Replayed:
    if drawn.repeat is not None:  # answered from the earlier trial: no training
        pipeline.tell(sweep, trial, spec, drawn.repeat)
        return Replayed(trial.number, "duplicate", 0, 0.0, drawn.repeat.metrics, drawn.repeat.reason)
    arch = to_arch(drawn.model, *_geometry(spec))
    problems = check_arch(arch)
    if problems:  # refused by the builder, as a real sweep refuses it: nothing trained
        outcome = pipeline.refused(spec, Infeasible("refused by the builder: " + "; ".join(map(str, problems)), {}, []))
        pipeline.tell(sweep, trial, spec, outcome)
        return Replayed(trial.number, outcome.state, 0, 0.0, {}, outcome.reason)
    row = row_for(rows, drawn)
    trial.set_user_attr("arch", row.arch)
    costs = dict(row.costs)
    violations = [c.violation(costs[c.metric]) if c.metric in costs else 0.0 for c in spec.constraints]
    broken = [str(c) for c, v in zip(spec.constraints, violations, strict=True) if v > 0]
    if broken:  # a cost constraint refuses it before training, with its costs measured
        outcome = pipeline.refused(spec, Infeasible("breaks " + ", ".join(broken), costs, violations))
        pipeline.tell(sweep, trial, spec, outcome)
        return Replayed(trial.number, outcome.state, 0, 0.0, costs, outcome.reason)
    start = drawn.trained  # a continuation's: the epochs of the pruned trial it trains on
    epochs, stop = _trained(row, lambda done, metrics: study.after_epoch(trial, spec, judge, done, metrics), start)
    seconds = row.train_s * (epochs - start) / len(row.curve)
    if stop is not None:
        metrics = {**row.metrics(epochs), "epochs": float(epochs)}
        outcome = Outcome("pruned", stop.reason, metrics, None, (*([0.0] * len(spec.constraints)), 0.0))
        pipeline.tell(sweep, trial, spec, outcome)
        return Replayed(trial.number, "pruned", epochs - start, seconds, metrics, stop.reason, drawn.continues)
    metrics = {**row.metrics(), "epochs": float(epochs), "train_time_s": row.train_s}
    outcome = pipeline.completed(spec, metrics)
    if judge is not None:
        judge.ended(trial.number, outcome.state)
    pipeline.tell(sweep, trial, spec, outcome)
    return Replayed(trial.number, outcome.state, epochs - start, seconds, metrics, outcome.reason, drawn.continues)


def replay_cells(
    table: Table,
    dimensions: Mapping[str, Sequence[str]],
    key: Callable[[list[str]], str],
    objectives: Sequence[Objective],
    *,
    sampler: optuna.samplers.BaseSampler,
    trials: int,
    judge: RungJudge | None = None,
) -> Replay:
    """Replay on a table whose space is not an archsweep model (NAS-Bench-201's cells):
    each trial picks one option per dimension and ``key`` names the row. The same
    samplers and rung book as a sweep; a pick that completed before is answered with its
    metrics without training, and told PRUNED, as a sweep answers a repeat (``pipeline.told_as``);
    ``trials`` counts distinct evaluations, as a sweep's budget does."""
    rows = table.by_key()
    directions = ["maximize" if o.direction == "max" else "minimize" for o in objectives]
    sweep = optuna.create_study(directions=directions, sampler=sampler)
    result, done = Replay(None, table, sweep), {}
    budget = Budget(trials, math.prod(len(options) for options in dimensions.values()))
    while budget.left() and not budget.stop():
        trial = sweep.ask()
        picked = key([trial.suggest_categorical(name, list(options)) for name, options in dimensions.items()])
        if picked in done:
            _, metrics = done[picked]
            sweep.tell(trial, state=TrialState.PRUNED)
            result.trials.append(Replayed(trial.number, "duplicate", 0, 0.0, metrics))
        else:
            result.trials.append(_cell(sweep, trial, rows[picked], judge, objectives, done, picked))
        budget.note(result.trials[-1].state, picked)
    result.stopped = budget.stop()
    return result


def _cell(sweep: optuna.Study, trial, row: Row, judge, objectives, done: dict, picked: str) -> Replayed:
    """A cell not answered before: its epochs until MO-ASHA stops it, or all of them."""
    epochs, stop = _trained(row, partial(_rung_stop, judge, trial.number))
    seconds = row.train_s * epochs / len(row.curve)
    if stop is not None:
        sweep.tell(trial, state=TrialState.PRUNED)
        return Replayed(trial.number, "pruned", epochs, seconds, row.metrics(epochs), stop.reason)
    metrics = {**row.metrics(), "epochs": float(epochs)}
    done[picked] = ([metrics[o.metric] for o in objectives], metrics)
    sweep.tell(trial, done[picked][0])
    return Replayed(trial.number, "complete", epochs, seconds, metrics)


def _rung_stop(judge: RungJudge | None, number: int, epochs: int, metrics: dict) -> Stop | None:
    """MO-ASHA's decision on a table's own space (no spec: no Optuna pruner there)."""
    decision = judge.after_epoch(number, epochs, metrics) if judge is not None else None
    return Stop(decision.reason, epochs) if decision is not None and not decision.proceed else None


def _geometry(spec: Spec) -> tuple[tuple[int, int], int, int]:

    geo = geometry(spec.data)
    return geo.image_size, geo.num_classes, geo.channels

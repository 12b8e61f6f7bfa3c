"""The Optuna study a sweep owns: how it is created, its sampler and pruner (built from the
registries, ``search.samplers`` and ``search.pruners``), the per-epoch decision both the
local backend and a replay take, and what a trial's state in it means to archsweep.

A study holds every trial with the user attributes ``arch``, ``mlflow_run_id``,
``metrics`` and ``state`` (see ``state_of``); a sampled trial's ``draw``, and
``duplicate_of`` when that draw had been trained before. Trials refused before training
have no accuracy to report: they are told PRUNED with their constraint violations, so
Optuna's plots and ``best_trials`` leave them out while TPE still learns from them
(``search.sweep.pipeline.tell``); a repeat is told PRUNED too, so that Optuna's front
does not hold it beside its original (``state_of``: duplicate, ``counted``: no; see
``search.sweep.budget``).

The study lives in an Optuna journal in the store (``runs.journal``).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

from search.pruners import PRUNERS, Pruner
from search.pruners.mo_asha import RungJudge
from search.samplers import SAMPLERS
from search.spec import Spec
from search.spec.space import Choice, FloatRange, IntRange, dimensions, param
from search.sweep.knowledge import knowledge
from search.tables.table import load as load_table

optuna.logging.set_verbosity(optuna.logging.ERROR)  # failures are recorded and shown by the view


def directions(spec: Spec) -> list[str]:
    return ["maximize" if o.direction == "max" else "minimize" for o in spec.objectives]


def create(spec: Spec, storage, *, sampler=None, pruner=None, load: bool = True) -> optuna.Study:
    """The sweep's study in ``storage``, its objectives named (see ``name_metrics``)."""
    study = optuna.create_study(
        study_name=spec.name,
        storage=storage,
        directions=directions(spec),
        sampler=sampler,
        pruner=pruner,
        load_if_exists=load,
    )
    name_metrics(study, spec)
    return study


def name_metrics(study: optuna.Study, spec: Spec) -> None:
    """The objectives' names on the study, so that Optuna's own tools (optuna-dashboard,
    ``study.trials_dataframe()``) show ``val_accuracy`` and ``gmacs``, not "Objective 0"."""
    names = [o.metric for o in spec.objectives]
    if study.metric_names != names:
        with warnings.catch_warnings():  # experimental in Optuna 5, stable in use since 3.2
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(names)


# -- sampler and pruner: built from the registries, once per sweep ------------------------


def grid_space(spec: Spec) -> dict[str, list]:
    """Every value of every dimension of a finite space, by Optuna's parameter name (a
    float range by its step): the grid sampler's, and ``bench search``'s peers' encoding."""
    space = {}
    for path, dim in {**dimensions(spec.model, "model"), **dimensions(spec.train, "train")}.items():
        path = param(path)
        if isinstance(dim, Choice):
            space[path] = dim.labels()
        elif isinstance(dim, IntRange):
            space[path] = list(range(dim.low, dim.high + 1, dim.step))
        elif isinstance(dim, FloatRange):
            n = round((dim.high - dim.low) / dim.step)
            space[path] = [dim.low + i * dim.step for i in range(n + 1)]
    return space


def sampler_for(
    spec: Spec, drawn: int = 0, counted: Mapping[str, Mapping[str, float]] | None = None
) -> optuna.samplers.BaseSampler:
    """The spec's sampler (``search.samplers.SAMPLERS``) for a study that has ``drawn``
    trials already. A sampler seeded anew draws what it drew the first time: a resumed
    sweep would draw its first trials again (and answer them as duplicates), so the seed
    takes in how far the sweep got. ``counted``: costs already counted, by draw key (a
    replay's table), for an informed sampler (``search.sweep.knowledge``)."""
    s = spec.search
    seed = s.seed if not drawn else int(np.random.SeedSequence([s.seed, drawn]).generate_state(1)[0])
    kind = SAMPLERS[s.sampler]
    grid = grid_space(spec) if kind.finite else None
    if kind.informed and counted is None and s.replay:  # a replayed sweep's table holds every cost it counted
        counted = {k: r.costs for k, r in load_table(s.replay).by_key().items()}
    informed = knowledge(spec, counted) if kind.informed else None
    return kind(seed=seed, trials=s.trials, grid=grid, knowledge=informed).build()


def max_epochs(spec: Spec) -> int:
    """The most epochs a trial of ``spec`` trains (a range's top)."""
    epochs = spec.train.get("epochs", 10)
    return int(max(epochs.values()) if hasattr(epochs, "values") else epochs)


def pruner_of(spec: Spec) -> Pruner:
    """The spec's pruner (``search.pruners.PRUNERS``)."""
    s = spec.search
    return PRUNERS[s.pruner](
        directions=[o.direction for o in spec.objectives],
        epochs=max_epochs(spec),
        min_epochs=s.min_epochs,
        reduction_factor=s.reduction_factor,
    )


def rung_judge(spec: Spec, earlier: list[FrozenTrial] = ()) -> RungJudge | None:
    """The sweep's judge of its trials' epochs on every objective when its pruner has one
    (MO-ASHA), with the rungs ``earlier`` trials (a resumed sweep's) reached; else None."""
    judge = pruner_of(spec).judge([o.metric for o in spec.objectives])
    return judge.restore(earlier) if judge is not None else None


@dataclass(frozen=True)
class Stop:
    """Why a trial stops before its last epoch: MO-ASHA's reason and rung (its epochs), or
    Optuna's pruner (no reason, no rung)."""

    reason: str = ""
    rung: int | None = None


def after_epoch(trial, spec: Spec, judge: RungJudge | None, epochs: int, metrics: dict) -> Stop | None:
    """Whether ``trial`` stops after ``epochs`` epochs with ``metrics`` (None: it goes on),
    as the local backend and a replay decide (on Ray, Tune's scheduler asks the same
    judge): MO-ASHA's judge on every objective, its rungs kept on the trial; else the
    study's pruner, fed the one objective (with several, only MO-ASHA stops a trial)."""
    if judge is not None:  # a continued trial's epochs count its pruned trial's (search.sweep.pipeline)
        decision = judge.after_epoch(trial.number, epochs, metrics, trial.user_attrs.get("continues"))
        if decision is None:
            return None
        judge.keep(trial)
        return None if decision.proceed else Stop(decision.reason, epochs)
    if len(spec.objectives) > 1:
        return None
    trial.report(metrics.get(spec.objectives[0].metric, math.nan), epochs - 1)
    return Stop() if trial.should_prune() else None


# -- what a trial's state means ----------------------------------------------------------


OUTSIDE_ATTR = "outside"  # why an earlier trial is outside an amended space (search.sweep.amend)


def state_of(trial: FrozenTrial) -> str:
    """complete, duplicate, infeasible, pruned, failed; interrupted (a failure without a
    reason: it runs again); outside (an earlier trial an amended space cannot draw);
    running or waiting."""
    if trial.state in (TrialState.COMPLETE, TrialState.PRUNED):
        return trial.user_attrs.get("state", trial.state.name.lower())
    if trial.state == TrialState.FAIL:
        if OUTSIDE_ATTR in trial.user_attrs:
            return "outside"
        return "failed" if "fail_reason" in trial.user_attrs else "interrupted"
    return trial.state.name.lower()


def counted(trial: FrozenTrial) -> bool:
    """Trials that use up the budget (``search.trials``): architectures trained or refused
    (finished ones, failures with a reason); not repeats (answered from the trial they
    repeat, at no cost), nor continuations (a pruned trial's architecture trained on:
    ``pipeline.continued_of``; it was counted once, when it was first drawn; its epochs
    are what it costs), nor trials interrupted by Ctrl-C or a killed process (those are
    run again)."""
    if "warm_from" in trial.user_attrs:  # an earlier sweep's result, given without training
        return False
    if "continues" in trial.user_attrs:  # pipeline.CONTINUES_ATTR (pipeline imports this module)
        return False
    if trial.state in (TrialState.COMPLETE, TrialState.PRUNED):
        return trial.user_attrs.get("state") != "duplicate"
    if OUTSIDE_ATTR in trial.user_attrs:  # outside an amended space: as it counted where it ran
        return trial.user_attrs.get("was") != "duplicate"
    return trial.state == TrialState.FAIL and "fail_reason" in trial.user_attrs


def feasible(study: optuna.Study) -> list[FrozenTrial]:
    """The trials that trained and keep every constraint: the ones a front is made of."""
    return feasible_of(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL)))


def feasible_of(trials: list[FrozenTrial]) -> list[FrozenTrial]:
    """``feasible`` of a list of trials: complete ones, and earlier trials outside an
    amended space that completed (FAIL to the samplers, which must not breed from them;
    the objectives and constraints they met are unchanged)."""
    return [
        t
        for t in trials
        if state_of(t) == "complete" or (state_of(t) == "outside" and t.user_attrs.get("was") == "complete")
    ]

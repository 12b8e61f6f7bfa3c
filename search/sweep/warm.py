"""A warm start (``search.warm_start: {from: SWEEP or SPEC.yaml, take: front | all | N}``):
a new sweep begins with what an earlier one learned.

The earlier sweep's feasible trials that fall inside the new space (``amend.relocate``)
are taken, its front, all of them, or the N best by non-dominated rank. When the training
settings match (the same data, objectives, constraints and fixed training settings; see
``amend.refusals``), each is given to the sampler as a completed trial, with its results
and its own run in MLflow, and nothing retrains (``warm_from`` on the trial; the budget
``search.trials`` counts only trials this sweep runs). When they do not, the architectures
are queued to be trained first.
"""

from __future__ import annotations

from pathlib import Path

import optuna
import yaml
from optuna.trial import FrozenTrial, TrialState

from runs.journal import journal_path, read_study
from runs.store import StoreError
from runs.tracking import embedded_store, sweep_text
from search.results import pareto
from search.spec import Spec, load
from search.spec.space import sample
from search.sweep import amend
from search.sweep.preflight import spec_changes
from search.sweep.study import feasible_of

WARM_ATTR = "warm_from"  # "<sweep>:t<number>": the earlier trial a given (untrained) one is
QUEUED_ATTR = "warm_queued"  # the same, on a queued trial that trains


def _source(spec: Spec) -> tuple[str, Path, Spec]:
    """The earlier sweep's name and store, and the spec to reach its tracking with."""
    given = str(spec.search.warm_start["from"])
    if given.endswith((".yaml", ".yml")):
        other = load(given, check_data=False, check_store=False, trial_params=completed_params)
        return other.name, Path(other.store), other
    return given, Path(spec.store), spec


def _earlier(spec: Spec) -> tuple[str, dict, list[FrozenTrial]]:
    """The earlier sweep's name, the spec it last ran with, and its trials."""
    name, store, reach = _source(spec)
    try:
        trials = read_study(store, name).get_trials(deepcopy=False)
    except (KeyError, FileNotFoundError, ValueError):
        raise StoreError(f"search.warm_start: no sweep {name!r} in {store} to start from") from None
    uri = reach.tracking_uri or embedded_store(store)
    started = sweep_text(uri, name, "spec.yaml", (reach.tracking_user, reach.tracking_password))
    if started is None:
        raise StoreError(f"search.warm_start: sweep {name!r} in {store} has no spec.yaml on its parent run")
    return name, yaml.safe_load(started), trials


def completed_params(other: Spec, number: int) -> dict | str:
    """The sampled parameters of completed trial ``number`` of ``other``'s sweep, or why
    not (one line): an ablation's ``base: {spec, trial}``, read for ``search.spec.load``."""
    if not journal_path(other.store, other.name).exists():
        return f"no sweep of {other.name} in {other.store}/; run it first"
    try:
        trials = read_study(other.store, other.name).get_trials(deepcopy=False)
    except StoreError as err:  # a damaged journal: located, with what to do
        return str(err)
    done = {t.number: t for t in trials if t.state == TrialState.COMPLETE}
    if number not in done:
        return f"{other.name} has no completed trial {number}; completed: {sorted(done)}"
    return dict(done[number].params)


def _taken(trials: list[FrozenTrial], spec: Spec, take) -> list[FrozenTrial]:
    """The earlier feasible trials to take, best (lowest non-dominated rank) first."""
    done = [t for t in feasible_of(trials) if t.state == TrialState.COMPLETE]  # not outside an amended space
    rows = [{"trial": t.number, **t.user_attrs.get("metrics", {})} for t in done]
    rows = [r for r in rows if all(o.metric in r for o in spec.objectives)]
    ranked, left = [], list(range(len(rows)))
    while left:
        front = [left[i] for i in pareto.nondominated([rows[i] for i in left], spec.objectives)]
        ranked.append(front)
        left = [i for i in left if i not in front]
    order = [rows[i]["trial"] for rank in ranked for i in sorted(rank, key=lambda i: rows[i]["trial"])]
    if take == "front":
        order = [rows[i]["trial"] for i in sorted(ranked[0], key=lambda i: rows[i]["trial"])] if ranked else []
    elif take != "all":
        order = order[: int(take)]
    by_number = {t.number: t for t in done}
    return [by_number[n] for n in order]


def start(study: optuna.Study, spec: Spec) -> tuple[int, int, int]:
    """Give ``study`` (a new sweep's, empty) the earlier sweep's results, or queue its
    architectures. Returns (given as completed, queued, outside the new space)."""
    name, earlier, trials = _earlier(spec)
    return give(study, spec, name, earlier, trials, spec.search.warm_start.get("take", "front"))


def give(study: optuna.Study, spec: Spec, name: str, earlier: dict, trials: list[FrozenTrial], take) -> tuple:
    """``start`` with the earlier sweep in hand: its ``name``, the resolved spec it ran
    and its ``trials`` (a replay's, in memory)."""
    matching = not amend.refusals(earlier, spec, spec_changes(earlier, spec.resolved))
    old_model, old_train = amend._spaces(earlier)
    present = {t.user_attrs.get(WARM_ATTR) or t.user_attrs.get(QUEUED_ATTR) for t in study.get_trials(deepcopy=False)}
    given = queued = outside = 0
    for t in _taken(trials, spec, take):
        source = f"{name}:t{t.number:02d}"
        if source in present:  # taken before a crash ended the first run
            continue
        fixed = optuna.trial.FixedTrial(t.params)
        try:
            params, distributions, key = amend.relocate(
                spec, sample(old_model, fixed, "model"), sample(old_train, fixed, "train"), same_training=matching
            )
        except (amend.Outside, ValueError):  # ValueError: its params are not all of its own space
            outside += 1
            continue
        if not matching:
            study.enqueue_trial(params, user_attrs={QUEUED_ATTR: source})
            queued += 1
            continue
        metrics = t.user_attrs["metrics"]
        study.add_trial(
            optuna.trial.create_trial(
                state=TrialState.COMPLETE,
                params=params,
                distributions=distributions,
                values=[metrics[o.metric] for o in spec.objectives],
                user_attrs={**t.user_attrs, "draw": key, WARM_ATTR: source},
                # its constraints, not the earlier sampler's bookkeeping (NSGA-II's generations)
                system_attrs={k: v for k, v in t.system_attrs.items() if k == "constraints"},
            )
        )
        given += 1
    return given, queued, outside

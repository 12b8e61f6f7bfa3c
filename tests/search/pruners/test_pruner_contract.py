"""Every registered pruner (``search.pruners.PRUNERS``) keeps the contract a sweep relies on,
replayed on a made-up table over the digits table's space (seconds, no training) as the
local backend runs it; on Ray, each gives a Tune scheduler or MO-ASHA's judge."""

from dataclasses import replace

import optuna
import pytest
from optuna.trial import TrialState

from runs.metrics import Objective
from search.pruners import PRUNERS, Pruner
from search.pruners.mo_asha import RUNGS_ATTR, RungJudge
from search.spec import SpecError, load
from search.sweep import study
from search.sweep.replay import replay
from tests.made_up import DIGITS_SPEC, EPOCHS, digits_table

TRIALS = 40
ONE = (Objective("val_accuracy", "max"),)


@pytest.fixture(scope="module")
def digits():
    return digits_table()


def _with(spec, name: str, objectives=None):
    search = replace(spec.search, pruner=name, sampler="random", trials=TRIALS)
    return replace(spec, search=search, objectives=objectives or spec.objectives)


def _objective_counts(name: str):
    return (1, 2) if PRUNERS[name].several_objectives else (1,)


@pytest.mark.parametrize("name", PRUNERS)
def test_a_registered_pruner_is_a_spec_value_with_its_refusals(name):
    kind = PRUNERS[name]
    assert issubclass(kind, Pruner) and kind.name == name
    assert load(DIGITS_SPEC, [f"search.pruner={name}", "objectives=[{val_accuracy: max}]"]).search.pruner == name
    if kind.several_objectives:
        assert load(DIGITS_SPEC, [f"search.pruner={name}"]).search.pruner == name
    else:
        with pytest.raises(SpecError, match=r"search\.pruner: Optuna's pruners take a single objective"):
            load(DIGITS_SPEC, [f"search.pruner={name}"])
    on_ray = [f"search.pruner={name}", "backend.kind=ray", "objectives=[{val_accuracy: max}]"]
    if kind.on_ray:
        assert load(DIGITS_SPEC, on_ray).backend.kind == "ray"
    else:
        with pytest.raises(SpecError, match=r"search\.pruner: .*no Ray Tune scheduler"):
            load(DIGITS_SPEC, on_ray)


@pytest.mark.parametrize("name", PRUNERS)
def test_replayed_it_stops_trials_early_only_when_it_prunes(name, digits):
    spec, table = digits
    for count in _objective_counts(name):
        replayed = _with(spec, name, spec.objectives[:count] if count == 2 else ONE)
        result = replay(replayed, table)
        told = {t.number: t for t in result.study.get_trials(deepcopy=False)}
        pruned = [t for t in result.trials if t.state == "pruned"]
        assert (pruned != []) == (name != "none"), f"{name} with {count} objective(s)"
        for t in pruned:  # stopped before its last epoch, told PRUNED, off Optuna's front
            assert t.epochs < EPOCHS and told[t.number].state == TrialState.PRUNED
            assert told[t.number].user_attrs["state"] == "pruned"
        assert all(t.epochs == EPOCHS for t in result.trials if t.state == "complete")
        best = {t.number for t in result.study.best_trials}
        assert not best & {t.number for t in pruned}


@pytest.mark.parametrize("name", PRUNERS)
def test_each_backend_gets_what_it_runs(name, digits):
    spec, _ = digits
    pruner = study.pruner_of(_with(spec, name))
    assert pruner.epochs == EPOCHS and pruner.min_epochs >= 1 and pruner.reduction_factor >= 2
    assert isinstance(pruner.optuna(), optuna.pruners.BasePruner)
    judge = pruner.judge(["val_accuracy", "gmacs"])
    assert judge is None or isinstance(judge, RungJudge)
    if pruner.on_ray and judge is None and name != "none":  # a Tune scheduler of its own
        from search.sweep.ray.driver import tune  # Ray (its environment set first): only here

        assert isinstance(pruner.tune_scheduler("val_accuracy", "max"), tune.schedulers.TrialScheduler)


def test_mo_asha_keeps_every_rung_a_trial_reached_on_it(digits):
    """What a resumed sweep's judge restores from (search.sweep.study.rung_judge)."""
    spec, table = digits
    result = replay(_with(spec, "mo_asha"), table)
    trials = result.study.get_trials(deepcopy=False)
    kept = [t.user_attrs[RUNGS_ATTR] for t in trials if RUNGS_ATTR in t.user_attrs]
    assert kept and all(
        epochs in study.rung_judge(_with(spec, "mo_asha")).book.epochs for k in kept for epochs, *_ in k
    )
    restored = study.rung_judge(_with(spec, "mo_asha"), trials)
    assert sum(len(r) for r in restored.book.records) == sum(len(k) for k in kept)


class _PrunesOddOnes(optuna.pruners.BasePruner):
    """Stops every odd-numbered trial once it has reported two epochs."""

    def prune(self, study, trial) -> bool:
        return trial.number % 2 == 1 and (trial.last_step or 0) >= 2


class _OddOnes(Pruner):
    """A pruner of a user's own: one class, registered, nothing else touched."""

    name = "odd-ones"
    several_objectives = False
    on_ray = False

    def optuna(self) -> optuna.pruners.BasePruner:
        return _PrunesOddOnes()


def test_a_pruner_registered_from_outside_is_a_spec_value_and_runs(digits, monkeypatch):
    _, table = digits
    named = ["search.pruner=odd-ones", "objectives=[{val_accuracy: max}]", "search.sampler=random"]
    with pytest.raises(SpecError, match=r"search\.pruner: expected one of"):
        load(DIGITS_SPEC, named)
    monkeypatch.setitem(PRUNERS, _OddOnes.name, _OddOnes)
    with pytest.raises(SpecError, match=r"search\.pruner: odd-ones has no Ray Tune scheduler"):
        load(DIGITS_SPEC, [*named, "backend.kind=ray"])  # its own refusals are read too
    result = replay(load(DIGITS_SPEC, [*named, f"search.trials={TRIALS}"]), table)
    told = {t.number: t for t in result.study.get_trials(deepcopy=False)}
    pruned = [t for t in result.trials if t.state == "pruned"]
    assert pruned and all(t.number % 2 == 1 and t.epochs < EPOCHS for t in pruned)
    assert all(told[t.number].state == TrialState.PRUNED for t in pruned)
    assert all(t.number % 2 == 0 for t in result.trials if t.state == "complete")  # (one may go on from a pruned one)

"""Every registered sampler (``search.samplers.SAMPLERS``) keeps the contract a sweep relies
on, replayed on a made-up table over the digits table's space (seconds, no training)."""

from dataclasses import replace

import optuna
import pytest

from runs.metrics import Constraint
from search.samplers import SAMPLERS, Sampler
from search.spec import SpecError, load
from search.sweep import budget, study
from search.sweep.replay import replay
from tests.made_up import DIGITS_SPEC, digits_table

STATES = {"complete", "duplicate", "infeasible"}
TRIALS = 12  # GP fits a model per ask past its 6 random ones: seconds each on 2 cores
GUARD = "the sampler kept drawing architectures already tried"


@pytest.fixture(scope="module")
def digits():
    return digits_table()


@pytest.fixture(autouse=True)
def _few_repeats(monkeypatch):
    """A sweep stops after 1,000 repeats in a row; here after 5. GP redraws its best point
    once its fits settle (a repeat is PRUNED, which it does not read), each draw a fit."""
    monkeypatch.setattr(budget, "REPEATS", 5)


def _evaluated(result) -> list:
    """The trials that used the budget: every one but the repeats."""
    return [t for t in result.trials if t.state != "duplicate"]


def _with(spec, name: str, seed: int = 0, trials: int = TRIALS):
    return replace(spec, search=replace(spec.search, sampler=name, seed=seed, trials=trials))


@pytest.mark.parametrize("name", SAMPLERS)
def test_a_registered_sampler_is_a_spec_value_and_builds_an_optuna_sampler(name):
    kind = SAMPLERS[name]
    assert issubclass(kind, Sampler) and kind.name == name
    spec = load(DIGITS_SPEC, [f"search.sampler={name}"])
    assert spec.search.sampler == name
    assert isinstance(study.sampler_for(spec), optuna.samplers.BaseSampler)


@pytest.mark.parametrize("name", SAMPLERS)
def test_a_replayed_sweep_with_it_draws_the_space_and_answers_repeats(name, digits):
    spec, table = digits
    result = replay(_with(spec, name), table)
    rows, trials = table.by_key(), result.study.get_trials(deepcopy=False)
    assert len(_evaluated(result)) == TRIALS or result.stopped.startswith(GUARD)
    assert {t.state for t in result.trials} <= STATES
    assert len({trials[t.number].user_attrs["draw"] for t in _evaluated(result)}) == len(_evaluated(result))
    assert any(t.state == "complete" for t in result.trials)
    for frozen, replayed in zip(trials, result.trials, strict=True):
        assert frozen.user_attrs["draw"] in rows  # a point of the spec's space, which the table holds
        if replayed.state == "duplicate":  # answered from the earlier trial of the same draw
            original = trials[frozen.user_attrs["duplicate_of"]]
            assert original.number < frozen.number and original.user_attrs["draw"] == frozen.user_attrs["draw"]


@pytest.mark.parametrize("name", SAMPLERS)
def test_the_same_seed_draws_the_same_sweep_and_a_resumed_one_is_seeded_anew(name, digits):
    spec, table = digits
    draws = [[t.user_attrs["draw"] for t in replay(_with(spec, name, seed), table).study.trials] for seed in (3, 3)]
    assert draws[0] == draws[1]
    first, resumed = (study.sampler_for(_with(spec, name), drawn) for drawn in (0, 10))
    assert first is not resumed and type(first) is type(resumed)


@pytest.mark.parametrize("name", SAMPLERS)
def test_a_cost_constraint_reaches_it(name, digits):
    spec, table = digits
    limit = sorted(r.costs["gmacs"] for r in table.rows)[len(table.rows) // 2]
    constrained = replace(_with(spec, name), constraints=(Constraint("gmacs", "<=", limit),))
    result = replay(constrained, table)
    refused = [t for t in result.trials if t.state == "infeasible"]
    assert all(t.metrics["gmacs"] > limit for t in refused)
    assert all(t.metrics["gmacs"] <= limit for t in result.trials if t.state == "complete")


@pytest.mark.parametrize("name", SAMPLERS)
def test_a_sampler_that_needs_a_finite_space_refuses_a_free_float_at_validate(name):
    problem = SAMPLERS[name].problem(finite=False)
    assert (problem is not None) == SAMPLERS[name].finite
    if SAMPLERS[name].finite:
        with pytest.raises(SpecError, match=f"search.sampler: {name} needs finite dimensions"):
            load(DIGITS_SPEC, [f"search.sampler={name}", "train.lr={float: [0.001, 0.01]}"])


class _EveryOther(Sampler):
    """A sampler of a user's own: one class, registered, nothing else touched."""

    name = "every-other"

    def build(self) -> optuna.samplers.BaseSampler:
        return optuna.samplers.RandomSampler(seed=self.seed + 1)


def test_a_sampler_registered_from_outside_is_a_spec_value_and_runs(digits, monkeypatch):
    spec, table = digits
    with pytest.raises(SpecError, match=r"search\.sampler: expected one of"):
        load(DIGITS_SPEC, ["search.sampler=every-other"])
    monkeypatch.setitem(SAMPLERS, _EveryOther.name, _EveryOther)
    loaded = load(DIGITS_SPEC, ["search.sampler=every-other", f"search.trials={TRIALS}"])
    result = replay(loaded, table)
    assert len(_evaluated(result)) == TRIALS
    expected = replay(_with(spec, "random", seed=1), table)  # what it builds: Optuna's random, seeded + 1
    assert [t.params for t in result.study.trials] == [t.params for t in expected.study.trials]

"""Replay on a table: the spec's sampler, outcomes and front, without training.

The table here is made in the test from the digits table's own space (every distinct
draw, with accuracy curves that depend on the draw's costs), so that the search logic is
checked in a second; the recorded table (spaces/tables) is the subject of bench search."""

import math
from dataclasses import replace
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from search.results import pareto
from search.samplers import SAMPLERS
from search.spec import load
from search.sweep import pipeline, study
from search.sweep.budget import REPEATS, space_size
from search.sweep.replay import Halving, replay, replay_cells
from search.tables.table import Table, TableError, exact_front
from tests.made_up import EPOCHS, digits_table

ROOT = Path(__file__).resolve().parents[3]


def with_sampler(spec, sampler: str):
    return replace(spec, search=replace(spec.search, sampler=sampler))


@pytest.fixture(scope="module")
def digits():
    return digits_table()


def test_a_replayed_sweep_reports_what_the_table_holds(digits):
    spec, table = digits
    nsga2 = replace(spec.search, sampler="nsga2")  # it redraws: the repeats are what this is about
    result = replay(replace(spec, constraints=(), search=nsga2), table, trials=60)
    rows = table.by_key()
    # 60 distinct evaluations (the budget); the repeats answered besides, recorded, uncounted
    assert sum(t.state != "duplicate" for t in result.trials) == 60 and not result.stopped
    assert len(result.trials) == len(result.study.trials) > 60
    for frozen, replayed in zip(result.study.trials, result.trials, strict=True):
        assert frozen.number == replayed.number
        if replayed.state == "complete":
            row = rows[frozen.user_attrs["draw"]]
            assert frozen.values == [row.curve[-1], row.costs["gmacs"]]
            assert replayed.epochs == EPOCHS and replayed.seconds == pytest.approx(row.train_s)
        elif replayed.state == "duplicate":  # answered from the earlier trial, no training; off Optuna's front
            original = result.study.trials[frozen.user_attrs["duplicate_of"]]
            assert replayed.epochs == 0 and frozen.user_attrs["metrics"] == original.user_attrs["metrics"]
            assert frozen.state == TrialState.PRUNED and frozen.values is None


def test_the_replayed_front_is_the_front_of_the_table_rows_it_visited(digits):
    spec, table = digits
    spec = with_sampler(spec, "nsga2")  # any sampler: the front is the table's, whoever drew it
    result = replay(spec, table, trials=200)
    rows = table.by_key()
    visited = {t.user_attrs["draw"] for t in result.study.trials if t.user_attrs.get("state") == "complete"}
    expected = exact_front(Table("visited", tuple(rows[k] for k in visited)), spec.objectives)
    front = [result.completed()[i] for i in pareto.nondominated(result.completed(), spec.objectives)]
    assert sorted((m["val_accuracy"], m["gmacs"]) for m in front) == sorted(
        (r.curve[-1], r.costs["gmacs"]) for r in expected
    )
    best = result.study.best_trials  # Optuna's own front agrees, each draw on it once (no repeat)
    assert sorted(tuple(t.values) for t in best) == sorted((m["val_accuracy"], m["gmacs"]) for m in front)
    assert len({t.user_attrs["draw"] for t in best}) == len(best)


def test_a_cost_constraint_refuses_before_training(digits):
    spec, table = digits
    limit = sorted(r.costs["params"] for r in table.rows)[len(table.rows) // 2]
    constrained = load(ROOT / "spaces" / "tables" / "digits.yaml", [f'constraints=["params <= {limit}"]'])
    constrained = with_sampler(constrained, "random")  # the constraint acts before any sampler's draw trains
    result = replay(constrained, table, trials=40)
    refused = [t for t in result.trials if t.state == "infeasible"]
    assert refused and all(t.epochs == 0 and t.metrics["params"] > limit for t in refused)
    assert all(t.metrics["params"] <= limit for t in result.trials if t.state == "complete")


def test_mo_asha_trains_less_and_says_at_which_rung_it_pruned(digits):
    spec, table = digits
    spec = with_sampler(spec, "random")  # bench search measures it with each sampler; here the rungs
    full = replay(spec, table, trials=120)
    halved = replay(spec, table, trials=120, halving=Halving(min_epochs=1, reduction_factor=3))
    trained = sum(t.epochs for t in full.trials)
    assert sum(t.epochs for t in halved.trials) < 0.6 * trained
    pruned = [t for t, f in zip(halved.study.trials, halved.trials, strict=True) if f.state == "pruned"]
    assert pruned and all(t.state == TrialState.PRUNED and t.user_attrs["rungs"] for t in pruned)
    for t in halved.trials:
        if t.state == "pruned":  # at a rung, in all (a continued trial trained the epochs after its pruned one's)
            assert t.metrics["epochs"] in (1, 3, 9) and t.reason.startswith("pruned at rung")
            assert t.epochs == t.metrics["epochs"] or t.continues is not None


def test_a_draw_outside_the_table_is_a_clear_error(digits):
    spec, table = digits
    wider = load(ROOT / "spaces" / "tables" / "digits.yaml", ["train.lr=0.001"])
    with pytest.raises(TableError, match="drew an architecture the table does not hold"):
        replay(wider, table, trials=3)


def test_the_same_seed_replays_the_same_sweep(digits):
    spec, table = digits
    spec = with_sampler(spec, "nsga2")  # each sampler's own determinism: test_sampler_contract
    first, second = (replay(spec, table, trials=50) for _ in range(2))
    assert [t.params for t in first.study.trials] == [t.params for t in second.study.trials]


def test_a_table_of_cells_replays_through_the_same_samplers():
    from runs.metrics import Objective
    from search.tables.nb201 import EDGES, OPS, cell_key, load_nb201

    table = load_nb201()
    objectives = (Objective("val_accuracy", "max"), Objective("cost", "min"))
    result = replay_cells(
        table,
        {e: OPS for e in EDGES},
        cell_key,
        objectives,
        sampler=SAMPLERS["nsga2"](seed=0, trials=300).build(),
        trials=300,
    )
    rows, first = table.by_key(), {}
    for frozen, replayed in zip(result.study.trials, result.trials, strict=True):
        key = cell_key([frozen.params[e] for e in EDGES])
        if replayed.state == "duplicate":  # answered from the first trial of that cell, off Optuna's front
            assert replayed.epochs == 0 and key in first and frozen.state == TrialState.PRUNED
            assert replayed.metrics == result.trials[first[key]].metrics
        else:
            assert frozen.values == [rows[key].curve[-1], rows[key].costs["cost"]]
            assert replayed.state == "complete" and replayed.epochs == 1 and key not in first
            first[key] = frozen.number
    # 300 distinct cells evaluated (the budget); NSGA-II's offspring repeat cells, answered free
    assert len(first) == 300 < len(result.trials) and not result.stopped


def _eight(**search):
    """The digits table's space cut to eight architectures (one stage: two widths, four
    mixers), sampled at random: it redraws what it tried."""
    overrides = ["model.embedding=patch", "model.patch_size=2", "model.positional=none"]
    overrides += ["model.stages[0].depth=1", "model.stages[1].depth=0", "search.sampler=random"]
    return load(ROOT / "spaces" / "tables" / "digits.yaml", overrides + [f"search.{k}={v}" for k, v in search.items()])


def test_the_budget_counts_distinct_evaluations_and_a_repeat_is_answered_free(digits):
    _, table = digits
    spec = _eight(trials=7)
    grid = study.grid_space(spec)  # a second stage of depth 0: its pool and mixer make no difference
    assert space_size(spec) == 8 and math.prod(len(values) for values in grid.values()) == 32
    result = replay(spec, table)
    evaluated = [t for t in result.trials if t.state != "duplicate"]
    repeats = [t for t in result.trials if t.state == "duplicate"]
    assert len(evaluated) == 7 and repeats and not result.stopped
    draws = [result.study.trials[t.number].user_attrs["draw"] for t in evaluated]
    assert len(set(draws)) == 7  # seven architectures
    for t in repeats:  # recorded, answered from the trial it repeats, nothing trained
        frozen = result.study.trials[t.number]
        assert t.epochs == 0 and frozen.user_attrs["draw"] in draws and not study.counted(frozen)
    assert sum(study.counted(t) for t in result.study.trials) == 7


def test_a_space_smaller_than_the_budget_stops_when_exhausted_and_says_so(digits):
    _, table = digits
    result = replay(_eight(trials=20), table)
    assert sum(t.state != "duplicate" for t in result.trials) == 8
    assert result.stopped == (
        "the space is exhausted: all 8 architectures were tried; 12 of the requested 20 trials had nothing left to try"
    )
    assert result.trials[-1].state != "duplicate"  # it stopped at the eighth, not after more draws


class _Same(optuna.samplers.RandomSampler):
    """A sampler that draws the same architecture every time (the first option of each)."""

    def sample_independent(self, study, trial, name, distribution):
        return distribution.choices[0] if hasattr(distribution, "choices") else distribution.low


def test_a_sampler_that_only_redraws_stops_after_a_thousand_repeats_in_a_row(digits):
    spec, table = digits
    result = replay(spec, table, trials=5, sampler=_Same(seed=0))
    assert [t.state for t in result.trials] == ["complete"] + ["duplicate"] * REPEATS and REPEATS == 1000
    assert result.stopped == (
        "the sampler kept drawing architectures already tried (1,000 repeats in a row); "
        "4 of the requested 5 trials were not run"
    )


def test_a_table_of_cells_counts_distinct_cells_and_stops_when_they_are_all_tried():
    from runs.metrics import Objective
    from search.tables.table import Row

    rows = tuple(
        Row(f"{a}{b}", f"{a}{b}", {"cost": float(i)}, (0.5 + 0.1 * i,), 1.0)
        for i, (a, b) in enumerate(["xx", "xy", "yx", "yy"])
    )
    objectives = (Objective("val_accuracy", "max"), Objective("cost", "min"))
    sampler = optuna.samplers.RandomSampler(seed=0)
    result = replay_cells(Table("four", rows), {"a": "xy", "b": "xy"}, "".join, objectives, sampler=sampler, trials=6)
    assert sorted(t.metrics["cost"] for t in result.trials if t.state == "complete") == [0.0, 1.0, 2.0, 3.0]
    assert result.stopped.startswith("the space is exhausted: all 4 architectures were tried; 2 of the requested 6")


class _Again(optuna.samplers.RandomSampler):
    """Draws at random, and every odd trial the architecture of the trial before it."""

    def sample_independent(self, study, trial, name, distribution):
        if trial.number % 2:
            before = study.get_trials(deepcopy=False)[trial.number - 1].params
            if name in before:
                return before[name]
        return super().sample_independent(study, trial, name, distribution)


def test_a_repeat_of_a_pruned_trial_continues_it_and_trains_only_what_is_left(digits):
    """Half the draws repeat the draw before: a pruned one is continued (its epochs not
    trained again, its final values the table's, judged at the later rungs only, not
    counted in the budget); a completed one is answered. Every architecture completes
    once at most, so a front holds it once."""
    spec, table = digits
    result = replay(spec, table, trials=40, sampler=_Again(seed=0), halving=Halving(2, 2))
    rows, told = table.by_key(), result.study.get_trials(deepcopy=False)
    continued = [t for t in result.trials if t.continues is not None]
    assert len(continued) >= 3 and any(t.state == "complete" for t in continued)
    for t in continued:
        before, frozen = told[t.continues], told[t.number]
        assert before.state == TrialState.PRUNED and frozen.user_attrs["continues"] == t.continues
        start = pipeline.trained_epochs(before)
        row = rows[frozen.user_attrs["draw"]]
        if t.state == "complete":
            assert t.epochs == EPOCHS - start > 0
            assert frozen.values == [row.curve[-1], row.costs["gmacs"]]
        else:  # pruned again, at a later rung
            assert t.state == "pruned" and t.epochs > 0 and t.metrics["epochs"] == start + t.epochs
        assert all(epochs > start for epochs, *_ in frozen.user_attrs.get("rungs", []))
        assert not study.counted(frozen)
    assert sum(study.counted(t) for t in told) == 40
    complete = [t.user_attrs["draw"] for t in told if t.user_attrs.get("state") == "complete"]
    assert len(complete) == len(set(complete))
    # what the architectures cost: each epoch of each trained once
    trained = {}
    for t, frozen in zip(result.trials, told, strict=True):
        trained[frozen.user_attrs["draw"]] = trained.get(frozen.user_attrs["draw"], 0) + t.epochs
    assert all(epochs <= EPOCHS for epochs in trained.values())

"""The amendment of a study, on replayed trials (no training): MO-ASHA's pruned trials and
their rung records carried into the amended study, a rebuild run twice (as after a crash)
giving the same study, and the earlier trials a narrowed range or a removed choice
puts outside the space."""

import copy
from pathlib import Path

import optuna
import yaml
from optuna.trial import TrialState

from bench.amend import _specs
from search.spec import load
from search.sweep import amend, study
from search.sweep.preflight import spec_changes
from search.sweep.replay import Halving, replay
from tests.made_up import digits_table


def _amended():
    earlier, spec = _specs()
    _, table = digits_table()
    first = replay(earlier, table, trials=30, halving=Halving(2, 2))
    before = first.study.get_trials(deepcopy=False)
    plan = amend.plan(earlier.resolved, spec, spec_changes(earlier.resolved, spec.resolved), before)
    return first, before, plan, spec


def test_pruned_trials_and_their_rungs_survive_an_amendment():
    first, before, plan, spec = _amended()
    assert any(t.state == TrialState.PRUNED and t.user_attrs.get("state") == "pruned" for t in before)
    assert set(plan.kept) == {t.number for t in before if t.state in (TrialState.COMPLETE, TrialState.PRUNED)}
    storage = first.study._storage
    amend.rebuild(storage, spec, plan, study.directions(spec))
    amend.rebuild(storage, spec, plan, study.directions(spec))  # again, as a rerun after a crash does
    after = optuna.load_study(study_name=spec.name, storage=storage).get_trials(deepcopy=False)
    assert [(t.number, t.state, t.values) for t in after] == [(t.number, t.state, t.values) for t in before]
    archived = optuna.load_study(study_name=plan.archive, storage=storage)
    rebuilt = optuna.load_study(study_name=spec.name, storage=storage)
    assert study.rung_records(rebuilt) == study.rung_records(archived) != []  # MO-ASHA judges as before
    # every kept trial is drawable in the amended space: its params are inside the distributions
    for t in after:
        for name, value in t.params.items():
            assert t.distributions[name]._contains(t.distributions[name].to_internal_repr(value))


def test_each_kind_of_narrowing_puts_the_trials_it_excludes_outside(tmp_path):
    earlier, spec = _specs()
    _, table = digits_table()
    before = replay(earlier, table, trials=30).study.get_trials(deepcopy=False)
    raw = yaml.safe_load(Path(spec.file).read_text())
    narrow = copy.deepcopy(raw)
    narrow["model"]["stages"][0]["depth"] = {"int": [2, 2]}  # was 1-2
    narrow["model"]["embedding"] = "patch"  # a removed choice (the conv stem)
    path = tmp_path / "digits.yaml"
    path.write_text(yaml.safe_dump(narrow, sort_keys=False))
    narrowed = load(path, check_data=False, check_store=False)
    plan = amend.plan(earlier.resolved, narrowed, spec_changes(earlier.resolved, narrowed.resolved), before)
    drawn = {t.number: t.params for t in before if t.state == TrialState.COMPLETE}
    expected = {n for n, p in drawn.items() if p["model.stages.0.depth"] != 2 or p["model.embedding"] != "patch"}
    assert expected and set(plan.outside) == expected
    assert set(plan.kept) == set(drawn) - expected

    # Amended back (through a journal, as a sweep's study is stored): every trial put
    # outside returns exactly as it was, its state, results, parameters and attributes.
    storage = study.journal_storage(tmp_path / "digits.journal")
    study.create(earlier, storage).add_trials(before)
    amend.rebuild(storage, narrowed, plan, study.directions(narrowed))
    amend.settle(storage, plan.archive)
    outside = optuna.load_study(study_name=earlier.name, storage=storage).get_trials(deepcopy=False)
    assert {t.number for t in outside if study.state_of(t) == "outside"} == expected
    archive, _ = amend.archive_for(storage, earlier.name, narrowed.resolved)
    back = amend.plan(narrowed.resolved, earlier, spec_changes(narrowed.resolved, earlier.resolved), outside, archive)
    assert back.returning == expected and not back.outside
    amend.rebuild(storage, earlier, back, study.directions(earlier))
    after = optuna.load_study(study_name=earlier.name, storage=storage).get_trials(deepcopy=False)
    as_was = [(t.number, t.state, t.values, t.params, t.user_attrs) for t in before if t.number in drawn]
    assert [(t.number, t.state, t.values, t.params, t.user_attrs) for t in after if t.number in drawn] == as_was


def test_each_amendment_keeps_its_own_archive_and_a_crash_finds_it_again():
    """A rerun after a crash finds the pending archive (and rebuilds from it); once the
    amendment is recorded, a later one (a spec amended back to one it ran before) keeps
    its trials under a new name instead of reusing the older archive, which lacks them."""
    first, before, plan, spec = _amended()
    earlier, _ = _specs()
    storage = first.study._storage
    archive, pending = amend.archive_for(storage, spec.name, earlier.resolved)
    assert (archive, pending) == (amend.archive_name(spec.name, earlier.resolved), False) == (plan.archive, False)
    amend.rebuild(storage, spec, plan, study.directions(spec))
    assert amend.archive_for(storage, spec.name, earlier.resolved) == (archive, True)
    amend.settle(storage, archive)
    assert amend.archive_for(storage, spec.name, earlier.resolved) == (f"{archive}-2", False)
    assert len(optuna.load_study(study_name=archive, storage=storage).trials) == len(before)

"""The amendment of a study, on replayed trials (no training): MO-ASHA's pruned trials and
their rung records carried into the amended study, a rebuild run twice (as after a crash)
giving the same study, and the earlier trials a narrowed range or a removed choice
puts outside the space."""

import optuna
import yaml
from optuna.trial import TrialState

from bench.amend import TABLE_SPEC, _specs
from runs.journal import journal_storage
from search.pruners.mo_asha import RUNGS_ATTR
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
    answered = {t.number for t in before if t.state in (TrialState.COMPLETE, TrialState.PRUNED)}
    assert set(plan.kept) == answered | {t.number for t in before if study.state_of(t) == "duplicate"}
    storage = first.study._storage
    amend.rebuild(storage, spec, plan, study.directions(spec))
    amend.rebuild(storage, spec, plan, study.directions(spec))  # again, as a rerun after a crash does
    after = optuna.load_study(study_name=spec.name, storage=storage).get_trials(deepcopy=False)
    assert [(t.number, t.state, t.values) for t in after] == [(t.number, t.state, t.values) for t in before]
    archived = optuna.load_study(study_name=plan.archive, storage=storage)
    rebuilt = optuna.load_study(study_name=spec.name, storage=storage)
    kept = [t.user_attrs.get(RUNGS_ATTR) for t in rebuilt.get_trials(deepcopy=False)]
    assert kept == [t.user_attrs.get(RUNGS_ATTR) for t in archived.get_trials(deepcopy=False)]
    assert any(kept)  # MO-ASHA judges as before: its records are kept
    # every kept trial is drawable in the amended space: its params are inside the distributions
    for t in after:
        for name, value in t.params.items():
            assert t.distributions[name]._contains(t.distributions[name].to_internal_repr(value))


def test_each_kind_of_narrowing_puts_the_trials_it_excludes_outside(tmp_path):
    earlier, spec = _specs()
    _, table = digits_table()
    before = replay(earlier, table, trials=30).study.get_trials(deepcopy=False)
    narrow = yaml.safe_load(TABLE_SPEC.read_text())
    narrow["model"]["stages"][0]["depth"] = {"int": [2, 2]}  # was 1-2
    narrow["model"]["embedding"] = "patch"  # a removed choice (the conv stem)
    path = tmp_path / "digits.yaml"
    path.write_text(yaml.safe_dump(narrow, sort_keys=False))
    narrowed = load(path, check_data=False, check_store=False)
    plan = amend.plan(earlier.resolved, narrowed, spec_changes(earlier.resolved, narrowed.resolved), before)
    # the trials that trained and the repeats answered from them (FAIL to Optuna): each is drawable or outside
    drawn = {t.number: t.params for t in before if study.state_of(t) in ("complete", "duplicate")}
    expected = {n for n, p in drawn.items() if p["model.stages.0.depth"] != 2 or p["model.embedding"] != "patch"}
    assert expected and set(plan.outside) == expected
    assert set(plan.kept) == set(drawn) - expected

    # Amended back (through a journal, as a sweep's study is stored): every trial put
    # outside returns exactly as it was, its state, results, parameters and attributes.
    storage = journal_storage(tmp_path / "digits.journal")
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


def test_a_single_objective_pruner_judges_the_amended_study_as_it_judged_the_earlier(tmp_path):
    """Optuna's own pruners (median, asha, hyperband) read the trials' intermediate values,
    not MO-ASHA's rung records: an amendment carries them, so a new trial is pruned by the
    amended study exactly when the earlier study would have pruned it."""
    earlier, spec = _specs(_single_objective)
    _, table = digits_table()
    replayed = replay(earlier, table, trials=30).study.get_trials(deepcopy=False)
    curves = [_with_curve(t, pruned=i % 3 == 2) for i, t in enumerate(replayed) if t.state == TrialState.COMPLETE]
    storage = journal_storage(tmp_path / "digits.journal")
    first = study.create(earlier, storage)
    first.add_trials(curves)
    before = first.get_trials(deepcopy=False)
    plan = amend.plan(earlier.resolved, spec, spec_changes(earlier.resolved, spec.resolved), before)
    amend.rebuild(storage, spec, plan, study.directions(spec))
    rebuilt = optuna.load_study(study_name=spec.name, storage=storage)
    assert [t.intermediate_values for t in rebuilt.trials] == [t.intermediate_values for t in before]
    pruner = optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=0)
    probes = [(step, value) for step in (1, 3, 5) for value in (0.2, 0.5, 0.8, 0.95)]
    archived = optuna.load_study(study_name=plan.archive, storage=storage)
    decisions = [[_prunes(pruner, s, step, value) for step, value in probes] for s in (archived, rebuilt)]
    assert decisions[0] == decisions[1] and len(set(decisions[0])) == 2  # some pruned, some not


def _single_objective(raw: dict) -> None:
    raw["objectives"] = [{"val_accuracy": "max"}]
    raw["search"] |= {"pruner": "median"}


def _with_curve(t, pruned: bool):
    """Trial ``t`` with one objective and a learning curve rising to its accuracy (a
    pruned one stopped at epoch 2)."""
    final = t.values[0]
    curve = {epoch: final * epoch / 6 for epoch in range(1, 3 if pruned else 7)}
    return optuna.trial.create_trial(
        state=TrialState.PRUNED if pruned else TrialState.COMPLETE,
        value=None if pruned else final,
        params=t.params,
        distributions=t.distributions,
        intermediate_values=curve,
        user_attrs=t.user_attrs,
    )


def _prunes(pruner, s: optuna.Study, step: int, value: float) -> bool:
    trial = s.ask()
    trial.report(value, step)
    decision = pruner.prune(s, s._storage.get_trial(trial._trial_id))
    s.tell(trial, state=TrialState.FAIL)  # the probe leaves no evidence for the next one
    return decision

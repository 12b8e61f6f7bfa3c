"""Tune's saved state of a Ray sweep, read without a Ray runtime: the searcher's state,
which Tune copies to storage non-atomically, repaired from the searcher's own copy."""

from __future__ import annotations

import optuna
from optuna.trial import TrialState

from search.spec import load
from search.sweep.ray.driver import SEARCHER_COPY, RaySweep
from search.sweep.ray.searcher import ArchSearch
from tests.e2e.conftest import write_spec


def test_a_searcher_state_emptied_by_a_killed_copy_is_restored_from_its_own_copy(tmp_path):
    spec = load(write_spec(tmp_path, backend={"kind": "ray"}, tracking={"dir": str(tmp_path / "store")}))
    done = optuna.trial.create_trial(state=TrialState.FAIL, user_attrs={"fail_reason": "x"})
    searcher = ArchSearch(spec, [done])
    sweep = RaySweep(spec)
    searcher.mirror = str(sweep.experiment_path / SEARCHER_COPY)
    sweep.experiment_path.mkdir(parents=True)
    searcher.save_to_dir(str(sweep.experiment_path), session_str="s1")
    saved = sweep.experiment_path / "searcher-state-s1.pkl"
    assert [t.user_attrs for t in sweep._saved_study().trials] == [{"fail_reason": "x"}]
    saved.write_bytes(b"")  # as a driver killed while Tune copied it leaves it
    assert [t.user_attrs for t in sweep._saved_study().trials] == [{"fail_reason": "x"}]
    assert saved.read_bytes() == (sweep.experiment_path / SEARCHER_COPY).read_bytes()

"""Tune's saved state of a Ray sweep, read without a Ray runtime: the searcher's state,
which Tune copies to storage non-atomically, repaired from the searcher's own copy."""

from __future__ import annotations

import optuna
from optuna.trial import TrialState

from search.spec import load
from search.sweep import study
from search.sweep.ray.driver import SEARCHER_COPY, RaySweep, _Bookkeeper, _reattach, _RungScheduler, tune
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


def test_tunes_saved_state_leaves_the_sweep_out_and_a_restored_driver_hands_in_its_own(tmp_path):
    """The Tune scheduler and callbacks hold this driver's rung judge and sweep (no module
    global); tuner.pkl keeps neither, and a restored Tuner runs with the new driver's."""
    spec = load(write_spec(tmp_path, backend={"kind": "ray"}, search={"pruner": "mo_asha"}))
    sweep = RaySweep(spec)
    sweep.judge = study.rung_judge(spec)
    folder = tmp_path / "ray"
    tune.Tuner(  # writes tuner.pkl, as the driver's does; no Ray runtime needed
        _trainable,
        tune_config=tune.TuneConfig(scheduler=_RungScheduler(sweep.judge)),
        run_config=tune.RunConfig(name="x", storage_path=str(folder), callbacks=[_Bookkeeper(sweep)]),
    )
    restored = tune.Tuner.restore(str(folder / "x"), trainable=_trainable)
    internal = restored._local_tuner  # what _reattach reaches into
    saved_scheduler, (saved_callback,) = internal._tune_config.scheduler, internal._run_config.callbacks
    assert isinstance(saved_scheduler, _RungScheduler) and not hasattr(saved_scheduler, "judge")
    assert isinstance(saved_callback, _Bookkeeper) and not hasattr(saved_callback, "sweep")
    again = RaySweep(spec)
    again.judge = study.rung_judge(spec)
    _reattach(restored, _RungScheduler(again.judge), [_Bookkeeper(again)])
    assert internal._tune_config.scheduler.judge is again.judge
    assert [c.sweep for c in internal._run_config.callbacks] == [again]


def _trainable(config):
    """A Tune trainable by name (never run here)."""


def test_a_restored_tuner_s_searcher_takes_the_restoring_driver_s_spec_and_its_budget(tmp_path):
    """tuner.pkl holds the searcher as the first driver built it, spec and all; the driver
    that restores it hands in its own spec (a changed search.trials is honoured), which the
    searcher's saved state, restored by Tune as the sweep resumes, leaves in place."""
    from ray.tune.search import ConcurrencyLimiter

    first = load(write_spec(tmp_path, backend={"kind": "ray"}, search={"trials": 3, "seed": 0}))
    refused = [  # three architectures tried: the first driver's budget is spent
        optuna.trial.create_trial(state=TrialState.PRUNED, user_attrs={"state": "infeasible", "draw": key})
        for key in "abc"
    ]
    searcher = ArchSearch(first, refused)
    assert searcher._spent()
    folder = tmp_path / "ray"
    tune.Tuner(
        _trainable,
        tune_config=tune.TuneConfig(search_alg=ConcurrencyLimiter(searcher, 1), num_samples=-1),
        run_config=tune.RunConfig(name="x", storage_path=str(folder)),
    )
    searcher.save_to_dir(str(folder / "x"), session_str="s1")  # as Tune saves it while the sweep runs
    more = load(write_spec(tmp_path, backend={"kind": "ray"}, search={"trials": 5, "seed": 0}))
    restored = tune.Tuner.restore(str(folder / "x"), trainable=_trainable)
    saved = restored._local_tuner._tune_config.search_alg.searcher
    assert saved.spec.search.trials == 3  # the first driver's
    again = RaySweep(more)
    _reattach(restored, None, [_Bookkeeper(again)], more)
    saved.restore_from_dir(str(folder / "x"))
    assert saved.spec.search.trials == 5 and not saved._spent()

"""In the driver: the searcher. Ray's ``OptunaSearch`` over the same define-by-run space
and trial pipeline as the local backend; Tune's saved state of it opens without archsweep
(``_Portable``)."""

from __future__ import annotations

import json
import os
import pickle
import shutil
from contextlib import contextmanager

import optuna
from optuna.trial import TrialState
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from search.pruners.mo_asha import RUNGS_ATTR
from search.spec import Spec
from search.sweep import pipeline, study
from search.sweep.budget import Budget
from search.sweep.pipeline import Outcome


def _loader():
    def load(blob: bytes):
        """The object where archsweep imports; None elsewhere."""
        import pickle

        try:
            cls, state = pickle.loads(blob)
        except ImportError:
            return None
        obj = cls.__new__(cls)
        obj.__dict__.update(state)
        return obj

    return load


class _Portable:
    """Tune saves the searcher and the callbacks in tuner.pkl with cloudpickle, which pickles
    a class by reference: ``Tuner.restore(path, trainable=...)`` would need archsweep
    importable just to read a finished sweep's results. Pickled instead as bytes (the
    usual pickle) and a loader that cloudpickle stores by value (a nested function is not
    importable by name): it gives the object back where archsweep imports, None elsewhere.
    ``_unsaved``: attributes left out (handles on this driver's sweep: a restored driver
    hands its own to the restored objects, ``driver._reattach``)."""

    _unsaved: tuple[str, ...] = ()

    def __reduce__(self):
        state = {k: v for k, v in self.__dict__.items() if k not in self._unsaved}
        return _loader(), (pickle.dumps((type(self), state)),)


class _Space:
    """The define-by-run space (a class, not a closure: the searcher is pickled). Its
    config is the trial's ``pipeline.Draw`` as plain data: Tune saves configs, and its
    state must open without archsweep."""

    def __init__(self, spec: Spec) -> None:
        self.spec = spec

    def __call__(self, trial: optuna.Trial) -> dict:
        return pipeline.draw(self.spec, trial.study, trial).as_dict()


class ArchSearch(_Portable, OptunaSearch):
    """Ray's OptunaSearch, telling the study what the local backend tells it (through
    ``pipeline.tell``): constraint violations (so samplers rank infeasible trials last),
    the trial's record as user attributes, FAIL for failures, PRUNED for repeats (off
    Optuna's front: ``pipeline.told_as``) and for trials a scheduler stopped early. Ray's own
    ``on_trial_complete`` would tell an early-stopped trial COMPLETE with its last epoch's
    values and leave a trial whose result lacks an objective RUNNING.

    It also ends the sweep (Tune runs as many trials as it is given, ``num_samples=-1``):
    ``suggest`` answers ``Searcher.FINISHED`` once the budget of distinct architectures
    (``search.sweep.budget``) is met by the trials finished and the new draws running,
    or the space is exhausted, or the sampler only redraws (``stopped`` says which).
    Repeats are Tune trials too, answered by the worker without training, and uncounted."""

    def __init__(self, spec: Spec, earlier: list | None = None) -> None:
        """``earlier``: trials the study starts with (a sweep continued in a new Tune
        experiment; see the driver), in order, so that trial numbers go on from them."""
        self.spec, earlier = spec, earlier or []
        arms = []
        if spec.ablation is not None:
            done = {(t.params.get("arm"), t.params.get("seed")) for t in earlier if study.counted(t)}
            arms = [
                {"arm": a, "seed": s}
                for a in spec.ablation.runnable
                for s in range(spec.ablation.seeds)
                if (a, s) not in done
            ]
        super().__init__(
            space=_Space(spec),
            metric=[o.metric for o in spec.objectives],
            mode=[o.direction for o in spec.objectives],
            sampler=None,  # the driver sets the spec's, once its trials are known (study.sampler_for)
        )
        self.study.add_trials(earlier)  # before the arms are queued: numbers go on from these
        self.stopped, self._repeats = "", set()  # see _spent; Tune trials answered as repeats
        for arm in arms:
            self.study.enqueue_trial(arm)

    # OptunaSearch has no public handle on its study or its trials: these two are the only
    # places that reach into it.
    @property
    def study(self) -> optuna.Study:
        return self._ot_study

    def _trial(self, trial_id: str) -> optuna.Trial | None:
        """The running Optuna trial of a Tune trial; None once told (or never asked)."""
        if trial_id in self._completed_trials:
            return None
        return self._ot_trials.get(trial_id)

    def _told(self, trial_id: str) -> None:
        self._completed_trials.add(trial_id)

    def suggest(self, trial_id: str):
        if trial_id not in self._ot_trials and self._spent():
            return Searcher.FINISHED
        config = super().suggest(trial_id)
        if (trial := self._trial(trial_id)) is not None:
            trial.set_user_attr("tune_trial_id", trial_id)  # = the MLflow run's attempt key
        if config.get("repeat") is not None:  # answered by the worker, uses none of the budget
            self._repeats = {*getattr(self, "_repeats", ()), trial_id}
        return config

    def _spent(self) -> bool:
        """Whether the sweep asks for no more trials: its budget met by the trials finished
        and the new draws running, or a reason to stop short of it (kept in ``stopped``)."""
        trials = self.study.get_trials(deepcopy=False)
        if self.spec.ablation is not None:  # its (arm, seed) trials are queued; nothing else is drawn
            return not any(t.state == TrialState.WAITING for t in trials)
        budget = Budget.of(self.spec, trials)
        repeats = getattr(self, "_repeats", set())  # (a state saved before they were kept: none)
        running = [
            t.user_attrs.get("draw")
            for t in trials
            if t.state == TrialState.RUNNING and t.user_attrs.get("tune_trial_id") not in repeats
        ]
        if budget.left() <= len(running):
            return True
        self.stopped = budget.stop((key for key in running if key is not None), len(running))
        return bool(self.stopped)

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        """Early stopping is the scheduler's job (ASHA), for one objective or several."""

    @contextmanager
    def _plain_sampler(self):
        """The study's sampler is Optuna's random one while Tune pickles the searcher: the
        spec's (the frontier sampler holds the spec's space and cost counter) would not open
        without archsweep. A restored searcher is given the spec's anew (``restore``)."""
        sampler, self.study.sampler = self.study.sampler, optuna.samplers.RandomSampler()
        try:
            yield
        finally:
            self.study.sampler = sampler

    def __reduce__(self):
        with self._plain_sampler():
            return super().__reduce__()

    def save(self, checkpoint_path: str) -> None:
        """Tune's searcher state (OptunaSearch saves its ``__dict__``) without the spec: Optuna
        objects only, which open without archsweep. Restoring keeps the constructor's spec."""
        state = {k: v for k, v in self.__dict__.items() if k not in ("spec", "_space", "mirror")}
        with self._plain_sampler(), open(checkpoint_path, "wb") as f:
            pickle.dump(state, f)
        if getattr(self, "mirror", None):  # see RaySweep._repair_searcher_state
            os.makedirs(os.path.dirname(self.mirror), exist_ok=True)
            shutil.copyfile(checkpoint_path, f"{self.mirror}.tmp")
            os.replace(f"{self.mirror}.tmp", self.mirror)

    def restore(self, checkpoint_path: str) -> None:
        """Tune's saved state, and the spec's sampler seeded by how far the study got (as
        the local backend seeds a resumed sweep's: ``study.sampler_for``)."""
        super().restore(checkpoint_path)
        self.study.sampler = study.sampler_for(self.spec, len(self.study.get_trials(deepcopy=False)))

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        trial, result = self._trial(trial_id), result or {}
        if trial is None:
            return
        if RUNGS_ATTR in result:  # MO-ASHA's records of it (the driver's _Bookkeeper)
            trial.set_user_attr(RUNGS_ATTR, json.loads(result[RUNGS_ATTR]))
        if "run_id" in result:
            trial.set_user_attr("mlflow_run_id", result["run_id"])
            trial.set_user_attr("arch", result["arch"])
        if "outcome" in result:  # it ran to its end (complete, infeasible or a duplicate)
            pipeline.tell(self.study, trial, self.spec, Outcome.from_text(result["outcome"]))
        elif result.get("state") == "failed" or error:
            if result.get("reason"):
                trial.set_user_attr("fail_reason", result["reason"])
            self.study.tell(trial, state=TrialState.FAIL)
        else:  # stopped by the scheduler
            trial.set_user_attr("state", "pruned")
            if result.get("pruned_reason"):
                trial.set_user_attr("reason", result["pruned_reason"])
            self.study.tell(trial, state=TrialState.PRUNED)
        self._told(trial_id)

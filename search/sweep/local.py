"""The local backend: one Optuna study per sweep; each trial runs in a process of its own
(runs.worker), ``workers`` of them at a time.

The study lives in a journal file next to the MLflow store (safe for several writers),
so running the same command again resumes it: finished trials are kept and the sweep
goes on to the requested count. This process does all the bookkeeping (Optuna, MLflow);
trials' processes only compute, and a trial that crashes, hangs past its timeout or runs
out of memory takes only itself down.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import signal
import threading
import time

import optuna
import torch
from optuna.trial import TrialState

from runs import data as datasets
from runs import faults, worker
from runs.executor import RETRYABLE, Done, Failed, Final, Job, Pruned, Refused
from runs.journal import journal_path, journal_storage
from runs.store import StoreError
from runs.tags import ATTEMPTS_TAG, PARETO_TAG, RETRY_REASON_TAG, RUNG_TAG, STATE_TAG, WARM_TAG
from runs.tracking import failure_line, tracking_failed
from search.spec import Spec
from search.sweep import amend, pipeline, replay, study, warm
from search.sweep.base import Sweep, SweepBusy, TrackingFailed
from search.sweep.budget import Budget
from search.sweep.pipeline import Outcome
from search.sweep.preflight import own, remove_own
from search.sweep.study import counted
from search.tables.table import load as load_table


class Interrupted(Exception):
    """A trial stopped by Ctrl-C: FAIL without a fail_reason, so it is not counted."""


class TrialError(Exception):
    """A trial that failed; the message is the reason recorded in Optuna and MLflow."""


def _comparable(spec: Spec) -> str:
    """A hash of the spec without what may change between runs of one sweep (the trial
    count, timeout, backend, tracking, description: preflight.MAY_CHANGE): two runs with
    the same hash can share the sweep, as its workers."""
    kept = {k: v for k, v in spec.resolved.items() if k not in ("description", "backend", "tracking")}
    if isinstance(kept.get("search"), dict):
        kept["search"] = {k: v for k, v in kept["search"].items() if k not in ("trials", "timeout")}
    return hashlib.sha256(json.dumps(kept, sort_keys=True, default=str).encode()).hexdigest()[:12]


class LocalSweep(Sweep):
    def __init__(self, spec: Spec, **kw) -> None:
        super().__init__(spec, **kw)
        self.workers = spec.backend.max_concurrent or 1

    def resumable(self) -> bool:
        return journal_path(self.store, self.spec.name).exists()

    # -- set-up ------------------------------------------------------------------------

    def open(self) -> None:
        spec = self.spec
        self.preflight()  # its refusals come before anything is written
        # On the CPU, shared with the trials' processes (each moves it to the device). Before
        # anything is written: data that cannot be read (changed since validate) is a refusal.
        self.data = datasets.load(spec.data, seed=spec.search.seed)
        (self.store / "optuna").mkdir(parents=True, exist_ok=True)
        self._lock()
        worker.start_server()  # it warms up while the study and the tracking open
        storage = journal_storage(journal_path(self.store, spec.name), owned=True)
        if self.amendment is not None:  # the spec changed since the sweep began
            amend.rebuild(storage, spec, self.amendment, study.directions(spec))
        self.study = study.create(spec, storage, pruner=study.pruner_of(spec).optuna())
        # Optuna leaves a killed process's trials RUNNING forever (its heartbeat needs an RDB
        # storage and optimize()); the lock says no other process runs this sweep, so they
        # are dead: FAIL without a reason, not counted, run again.
        stale = self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        for trial in stale:
            self.study.tell(trial.number, state=TrialState.FAIL)
        if spec.ablation is not None:
            self._enqueue_arms()
        self.replay = load_table(spec.search.replay).by_key() if spec.search.replay else None
        self.open_tracking()
        self._end_stale_runs(stale)
        # A first run (or one a crash ended before any trial): the earlier sweep's results,
        # or its draws queued; after the parent run exists, so a crash here resumes.
        if spec.search.warm_start and not any(counted(t) for t in self.study.get_trials(deepcopy=False)):
            given, queued, outside = warm.start(self.study, spec)
            line = f"{given} given as completed, {queued} queued to train, {outside} outside this space"
            self.tracker.set_tags(self.parent, {WARM_TAG: f"{spec.search.warm_start['from']}: {line}"})
        # MO-ASHA's, with the records of a resumed sweep's trials and of those a warm start gave
        self.judge = study.rung_judge(spec, self.study.get_trials(deepcopy=False))
        self.checkpoints = own(self.store, "checkpoints", spec.name)
        remove_own(self.store, "checkpoints", spec.name)  # of trials whose sweep was killed
        self.checkpoints.mkdir(parents=True, exist_ok=True)
        self.weights = own(self.store, "weights", spec.name)  # kept until finish() logs the models
        self.weights.mkdir(parents=True, exist_ok=True)
        # Pruned trials' training states, kept across runs of the sweep: a later draw of the
        # same architecture continues from one instead of training from scratch.
        self.paused = own(self.store, "paused", spec.name)
        self.stop, self.faults = threading.Event(), faults.plan()
        # Built once, last: seeded by how far the sweep got (its own, a warm start's trials)
        self.study.sampler = study.sampler_for(spec, len(self.study.get_trials(deepcopy=False)))

    def _end_stale_runs(self, stale: list) -> None:
        """The runs of trials a dead process left RUNNING in the journal, ended interrupted.
        ``close_orphans`` ends those still RUNNING in MLflow; a run can also have ended
        (complete) while its trial's last record never reached the journal (a crash, a
        torn record set aside): MLflow must not keep it on a front the study does not have."""
        for trial in stale:
            run = trial.user_attrs.get("mlflow_run_id")
            if run and self.tracker.tags(run).get(STATE_TAG) != "interrupted":
                reason = "its result did not reach the study's journal before the sweep stopped; it runs again"
                self.tracker.end_trial(run, "interrupted", reason)
                self.tracker.delete_tag(run, PARETO_TAG)

    def _lock(self) -> None:
        """One process per sweep (trials in parallel: --workers): a second one would take
        the first one's running trials for dead ones. flock ends with the process, even by
        SIGKILL, so a killed sweep leaves no stale lock."""
        path = self.store / "optuna" / f"{self.spec.name}.lock"
        self.lock_file = open(path, "a+")  # noqa: SIM115 (held until close)
        try:
            fcntl.flock(self.lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.lock_file.seek(0)
            owner, _, sha = self.lock_file.read().strip().partition(" ")
            self.lock_file.close()
            raise SweepBusy(self._busy(owner or "?", sha)) from None
        self.lock_file.truncate(0)
        self.lock_file.write(f"{os.getpid()} {_comparable(self.spec)}")  # who holds it, and with which spec
        self.lock_file.flush()

    def _busy(self, owner: str, sha: str) -> str:
        """Why the sweep is refused while process ``owner`` runs it (with spec hash ``sha``):
        more workers help only a second run of the same spec."""
        busy = f"sweep {self.spec.name} is running in process {owner} (store {self.store})"
        if sha == _comparable(self.spec):
            return f"{busy}; wait for it, or run trials in parallel with --workers N"
        return (
            f"{busy} with a different spec; wait for it to end, or give this spec a new name"
            " (name: in the spec, or -o name=NEW) to run it beside"
        )

    def close(self) -> None:
        if getattr(self, "lock_file", None) is not None and not self.lock_file.closed:
            self.lock_file.close()  # releases the lock

    def _enqueue_arms(self) -> None:
        """Queue every (arm, seed) of the ablation that has neither run nor been queued."""
        trials = self.study.get_trials(deepcopy=False)
        have = {(t.params.get("arm"), t.params.get("seed")) for t in trials if counted(t)}
        have |= {(t.params.get("arm"), t.params.get("seed")) for t in trials if t.state == TrialState.WAITING}
        for arm in self.spec.ablation.runnable:
            for seed in range(self.spec.ablation.seeds):
                if (arm, seed) not in have:
                    self.study.enqueue_trial({"arm": arm, "seed": seed})

    # -- one trial ---------------------------------------------------------------------

    def objective(self, trial: optuna.Trial) -> tuple[float, ...]:
        try:
            return self._objective(trial)
        except (optuna.TrialPruned, Interrupted, TrialError):
            raise
        except Exception as err:
            if tracking_failed(err):  # the store broke, not the trial: uncounted, and the sweep stops
                self.tracking_failure = f"trial {trial.number}: {failure_line(err)}"
                self.stop.set()
                raise Interrupted(self.tracking_failure) from err
            # archsweep's own bookkeeping broke: still a trial with a reason
            reason = f"{type(err).__name__}: {err}"
            trial.set_user_attr("fail_reason", reason)
            if "mlflow_run_id" in trial.user_attrs:
                self.tracker.end_trial(trial.user_attrs["mlflow_run_id"], "failed", reason)
            self.progress.failed += 1
            raise

    def _objective(self, trial: optuna.Trial) -> tuple[float, ...]:
        if self.stop.is_set():  # Ctrl-C came between two trials
            raise Interrupted("stopped by Ctrl-C")
        spec, b = self.spec, self.spec.backend
        drawn = pipeline.draw(spec, self.study, trial)
        arch, cfg, line = pipeline.materialise(spec, drawn, self.data)
        run = pipeline.open_run(self.tracker, self.parent, spec, drawn, line)
        trial.set_user_attr("mlflow_run_id", run)
        trial.set_user_attr("arch", line)
        if drawn.repeat is not None:  # the same training again: answered from the earlier result
            return self._record(trial, run, drawn.repeat)
        row = replay.row_for(self.replay, drawn).as_dict() if self.replay is not None else None
        # A pruned trial's state is kept under its draw's key (trial numbers change when an
        # amendment rebuilds the study), for a later draw of it to continue.
        paused = self.paused / f"{trial.user_attrs['draw']}.pt" if "draw" in trial.user_attrs else None
        pausable = paused is not None and spec.search.pruner != "none"
        checkpoint = self.checkpoints / f"t{trial.number}.pt" if pausable or (b.max_failures and row is None) else None
        start = paused if drawn.continues is not None and paused is not None and paused.is_file() else None
        job = Job(
            trial.number,
            arch,
            cfg,
            drawn.seed,
            tuple(spec.constraints),
            str(self.device),
            max(1, torch.get_num_threads() // self.workers),
            b.memory_per_trial,
            self.faults,
            row,
            tuple(spec.search.proxies),
        )
        files = worker.Files(
            str(checkpoint) if checkpoint else None,
            str(self.weights / f"t{trial.number}.pt"),
            str(start) if start is not None else None,  # none kept (a sweep before pausing): from scratch
        )
        self._show(trial.number, line)
        final = None
        try:
            final = self._attempts(trial, run, job, files, line)
        finally:
            self.progress.running.pop(trial.number, None)
            if checkpoint:
                self._pause_or_drop(checkpoint, paused if pausable else None, final)
        return self._outcome(trial, run, final)

    def _pause_or_drop(self, checkpoint, paused, final: Final | None) -> None:
        """A pruned trial's last state is kept (``paused``, replacing the state it continued
        from) for a later draw to continue; once its draw completes, none is needed."""
        if paused is not None and isinstance(final, Pruned) and checkpoint.is_file():
            paused.parent.mkdir(parents=True, exist_ok=True)
            os.replace(checkpoint, paused)
            return
        checkpoint.unlink(missing_ok=True)
        if paused is not None and isinstance(final, Done):
            paused.unlink(missing_ok=True)

    def _attempts(self, trial: optuna.Trial, run: str, job: Job, files: worker.Files, line: str) -> Final:
        """Run the trial's process; again from its last checkpoint after a crash or an
        unexpected exception, up to backend.max_failures more times."""
        log = pipeline.TrialLog(self.tracker, run)
        cost: dict = {}  # measured before training; a retry that resumes does not send it again

        def on_epoch(epoch: int, metrics: dict, measured: dict) -> bool:
            log.epoch(epoch, metrics)
            cost.update(measured)
            accuracy = metrics["val_accuracy"]
            self._show(trial.number, f"{line} epoch {epoch + 1}/{job.cfg.epochs}, val_accuracy {accuracy:.3f}")
            stop = study.after_epoch(trial, self.spec, self.judge, epoch + 1, {**cost, **metrics})
            if stop is not None and stop.rung is not None:  # MO-ASHA's: why, and the rung, on the run
                trial.set_user_attr("reason", stop.reason)
                self.tracker.set_tags(run, {RUNG_TAG: str(stop.rung)})
            return stop is None

        def on_resumed(epoch: int, metrics: dict, continued: bool) -> None:
            if continued:  # a pruned trial's epochs, judged on that trial: logged, not judged again
                log.epoch(epoch, metrics)
                return
            if epoch > log.logged:  # checkpointed, but the crash came before it was logged
                on_epoch(epoch, metrics, {})
            log.resumed(epoch, metrics)

        retries = self.spec.backend.max_failures
        for attempt in range(retries + 1):
            final = worker.run(
                job, files, self.data, on_epoch, on_resumed, timeout=self.spec.backend.trial_timeout, stop=self.stop
            )
            if not isinstance(final, Failed) or final.kind not in RETRYABLE or attempt == retries:
                break
            self.tracker.set_tags(run, {RETRY_REASON_TAG: final.reason})
        trial.set_user_attr("attempts", attempt + 1)
        self.tracker.set_tags(run, {ATTEMPTS_TAG: str(attempt + 1)})
        return final

    def _outcome(self, trial: optuna.Trial, run: str, final: Final) -> tuple[float, ...]:
        if isinstance(final, Done):
            outcome = pipeline.completed(self.spec, final.metrics)
            if self.judge is not None:
                self.judge.ended(trial.number, outcome.state)
            return self._record(trial, run, outcome)
        if isinstance(final, Refused):
            return self._record(trial, run, pipeline.refused(self.spec, final.error()))
        arch = trial.user_attrs.get("arch", "")
        if isinstance(final, Pruned):
            reason = trial.user_attrs.get("reason", "")
            self.tracker.end_trial(run, "pruned", reason)
            self.ended(trial.number, "pruned", arch, reason=reason)
            raise optuna.TrialPruned(reason or "pruned by the pruner")
        if final.kind == "interrupted":  # not counted: the next run of the sweep runs it again
            self.tracker.end_trial(run, "interrupted", final.reason)
            raise Interrupted(final.reason)
        trial.set_user_attr("fail_reason", final.reason)
        self.tracker.end_trial(run, "failed", final.reason)
        self.ended(trial.number, "failed", arch, reason=final.reason)
        raise TrialError(final.reason)

    def _show(self, number: int, doing: str) -> None:
        self.progress.running[number] = doing
        self.on_change(self.progress)

    def _record(self, trial: optuna.Trial, run: str, outcome: Outcome) -> tuple[float, ...]:
        """The outcome on its run and on the trial; Optuna's optimize() then tells the values,
        PRUNED for a trial without any and for a repeat (see ``pipeline.told_as``)."""
        # The run first: a trial whose run the store failed to end must not look answered
        # (it stays RUNNING in the journal, then interrupted: it runs again).
        pipeline.close_run(self.tracker, run, outcome)
        pipeline.record(trial, self.spec, outcome)
        if outcome.state == "complete":
            self.progress.front = self.front_rows()[1]
        arch = trial.user_attrs.get("arch", "")
        self.ended(trial.number, outcome.state, arch, outcome.metrics, outcome.reason, outcome.duplicate_of)
        if pipeline.told_as(outcome) == TrialState.PRUNED:
            raise optuna.TrialPruned(outcome.reason)
        return outcome.values

    # -- the sweep ---------------------------------------------------------------------

    def trained(self, number: int) -> dict | None:
        path = self.weights / f"t{number}.pt"
        return torch.load(path, map_location="cpu", weights_only=True) if path.exists() else None

    def finish(self, status: str = "FINISHED") -> list[dict]:
        front = super().finish(status)
        # The models worth keeping are logged now; a trial on any later front is on this
        # one too (adding trials only removes trials from a front), so none is needed again.
        for kind in ("weights", "checkpoints"):  # a finished sweep leaves no empty folder behind
            remove_own(self.store, kind, self.spec.name)
        for folder in (self.paused, self.paused.parent):  # paused states stay, for an extended sweep
            with contextlib.suppress(OSError):
                folder.rmdir()  # only when empty
            with contextlib.suppress(OSError, StoreError):  # the folder of all sweeps', when empty
                own(self.store, kind).rmdir()
        return front

    def budget(self) -> Budget:
        """The budget after the study's trials so far (``search.sweep.budget``)."""
        return Budget.of(self.spec, self.study.get_trials(deepcopy=False))

    def remaining(self) -> int:
        budget = self.budget()
        return 0 if budget.stop() else budget.left()

    def run(self) -> None:
        """Run trials, ``workers`` at a time, until the requested count of distinct
        architectures has finished: in passes of the trials still to run (a pass ends
        early by as many repeats as it drew, which are answered free), within
        ``search.timeout`` in all, until the space is exhausted or the sampler only
        redraws (``stopped_early``). No pass asks more trials than are left, so the
        budget is never overshot, whatever the workers.

        Ctrl-C stops the running trials' processes and raises KeyboardInterrupt once every
        trial is recorded (interrupted trials are not counted and run again next time)."""
        main = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGINT, self._interrupt) if main else None
        timeout = self.spec.search.timeout
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while not self.stop.is_set():
                budget, before = self.budget(), len(self.study.get_trials(deepcopy=False))
                if why := budget.stop():
                    self.stopped_early(why)
                    break
                rest = None if deadline is None else deadline - time.monotonic()
                if not budget.left() or (rest is not None and rest <= 0):
                    break
                self.study.optimize(
                    self.objective,
                    n_trials=budget.left(),
                    timeout=rest,
                    n_jobs=self.workers,
                    catch=(Exception,),
                    callbacks=[self._after_trial],
                    gc_after_trial=False,
                )
                if len(self.study.get_trials(deepcopy=False)) == before:  # nothing ran: no pass would
                    break
        finally:
            if previous is not None:
                signal.signal(signal.SIGINT, previous)
        if self.tracking_failure:
            raise TrackingFailed(self.tracking_failure)
        if self.stop.is_set():
            raise KeyboardInterrupt

    def _after_trial(self, study: optuna.Study, trial) -> None:
        """After each trial: the pass stops at Ctrl-C, and when the budget says the sweep
        stops (no trial more would be new)."""
        if self.stop.is_set() or self.budget().stop():
            study.stop()

    def _interrupt(self, signum, frame) -> None:
        if self.stop.is_set():  # a second Ctrl-C: stop now
            raise KeyboardInterrupt
        self.stop.set()

"""In a Ray worker: one trial (``trainable``), through the same pipeline as the local
backend. It logs its own MLflow child run (keyed by Tune's trial id, so a retry continues
it), reports every epoch with a checkpoint (a retry resumes from it) and ends with one
result holding its ``pipeline.Outcome``, which the driver's searcher tells the study."""

from __future__ import annotations

import ctypes
import os
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path

import ray
import torch
from ray import tune

from runs import data as datasets
from runs import faults, worker
from runs.tracking import NODE_TAG, RESUMED_TAG, TIMEOUT_TAG, Tracker
from runs.trial import Infeasible, replay_trial, run_trial
from search.spec import Spec
from search.sweep import pipeline, replay
from search.sweep.pipeline import Draw
from search.tables.table import load as load_table

TRAINED = "trained.pt"  # in a trial's last checkpoint: its runs.trial.trained_record

_DATA: dict = {}  # per worker process: the dataset last loaded (trials of a sweep share it)


def _dataset(spec: Spec, device: torch.device) -> datasets.Dataset:
    key = (repr(spec.data), spec.search.seed, str(device))
    if key not in _DATA:
        _DATA.clear()
        _DATA[key] = datasets.load(spec.data, seed=spec.search.seed).to(device)
    return _DATA[key]


def _table(path: str) -> dict:
    """A replayed sweep's table rows by key, read once per worker process."""
    if path not in _TABLES:
        _TABLES.clear()
        _TABLES[path] = load_table(path).by_key()
    return _TABLES[path]


_TABLES: dict = {}


def trainable(config: dict, *, spec: Spec, parent: str, uri: str, credentials: tuple = (None, None)) -> None:
    """One trial in a Ray worker; resumes from Tune's checkpoint when it is a retry."""
    drawn = Draw.from_dict(config)
    tracker = Tracker(uri, spec.experiment, credentials=credentials)
    key = tune.get_context().get_trial_id()
    if drawn.repeat is not None:  # the driver found its draw trained before (searcher's space)
        return _answer_repeat(drawn, spec, tracker, parent, key)
    b = spec.backend
    device = torch.device("cuda" if b.gpus_per_trial and torch.cuda.is_available() else "cpu")
    torch.set_num_threads(max(1, int(b.cpus_per_trial)))
    data = _dataset(spec, device)
    arch, cfg, line = pipeline.materialise(spec, drawn, data)
    run = pipeline.open_run(tracker, parent, spec, drawn, line, key=key)
    tracker.set_tags(run, {NODE_TAG: ray.util.get_node_ip_address()})
    base = {"number": drawn.number, "run_id": run, "arch": line}

    def fail(reason: str) -> None:  # deterministic: recorded, not retried
        tracker.end_trial(run, "failed", reason)
        tune.report({**base, "state": "failed", "reason": reason})

    if TIMEOUT_TAG in tracker.tags(run):  # the watchdog ended the last attempt's worker
        return fail(worker.timeout_reason(b.trial_timeout))
    resume = _resume(tracker, run, device)
    epochs = _Reporter(tracker, run, base, drawn.number, resume)
    trained: dict = {}
    try:
        with _watchdog(b.trial_timeout, tracker, run), worker.memory_cap(b.memory_per_trial):
            if spec.search.replay:  # read from a recorded table, nothing trains
                row = replay.row_for(_table(spec.search.replay), drawn).as_dict()
                report = epochs.report
                metrics = replay_trial(
                    arch, row, constraints=spec.constraints, report=report, on_cost=epochs.cost.update
                )
            else:
                metrics = run_trial(
                    arch,
                    cfg,
                    data,
                    seed=drawn.seed,
                    constraints=spec.constraints,
                    report=epochs.report,
                    resume=resume,
                    on_cost=epochs.cost.update,
                    on_trained=trained.update,
                )
        outcome = pipeline.completed(spec, metrics)
    except Infeasible as err:
        outcome = pipeline.refused(spec, err)
    except TrialTimeout:
        return fail(worker.timeout_reason(b.trial_timeout))
    except Exception as err:
        if worker.failure_kind(err) in ("oom", "failed"):  # it would happen again: not retried
            if device.type == "cuda":
                torch.cuda.empty_cache()  # the next trial of this worker gets the memory back
            return fail(worker.failure_reason(err))
        tracker.end_trial(run, "failed", worker.failure_reason(err))  # Tune retries it; a retry reopens this run
        raise
    pipeline.close_run(tracker, run, outcome)
    _report_outcome(base, outcome, trained, epochs.last)


def _resume(tracker: Tracker, run: str, device: torch.device) -> dict | None:
    """The training state of Tune's last checkpoint, when this attempt is a retry."""
    checkpoint = tune.get_checkpoint()
    if checkpoint is None:
        return None
    with checkpoint.as_directory() as folder:
        resume = torch.load(Path(folder) / "state.pt", map_location=device, weights_only=True)
    tracker.set_tags(run, {RESUMED_TAG: str(resume["epoch"] + 1)})
    return resume


class _Reporter:
    """Each epoch to MLflow, then to Tune with a checkpoint of the training state."""

    def __init__(self, tracker: Tracker, run: str, base: dict, number: int, resume: dict | None) -> None:
        self.tracker, self.run, self.base, self.number = tracker, run, base, number
        self.first = resume["epoch"] + 1 if resume else 0
        self.cost: dict = {}  # measured before training, reported with every epoch
        self.last = None  # the last epoch's snapshot function

    def report(self, epoch: int, metrics: dict, snapshot) -> None:
        self.last = snapshot
        # Before Tune: a crash may repeat a step, never skip one.
        self.tracker.log_metrics(self.run, metrics, step=epoch)
        with tempfile.TemporaryDirectory() as folder:
            torch.save(snapshot(), Path(folder) / "state.pt")
            result = {**self.base, **self.cost, **metrics, "epoch": epoch + 1, "state": "running"}
            tune.report(result, checkpoint=tune.Checkpoint.from_directory(folder))
        faults.fire(os.environ.get(faults.ENV), self.number, epoch, self.first)


def _report_outcome(base: dict, outcome: pipeline.Outcome, trained: dict, snapshot) -> None:
    """The trial's last result. Its checkpoint holds the trained model (RaySweep.trained)
    and the training state still: a retry after a lost driver resumes from it."""
    final = {**base, **outcome.metrics, "state": outcome.state, "reason": outcome.reason, "outcome": outcome.as_text()}
    with tempfile.TemporaryDirectory() as folder:
        if trained and snapshot:
            torch.save(trained, Path(folder) / TRAINED)
            torch.save(snapshot(), Path(folder) / "state.pt")
        tune.report(final, checkpoint=tune.Checkpoint.from_directory(folder) if trained and snapshot else None)


def _answer_repeat(drawn: Draw, spec: Spec, tracker: Tracker, parent: str, key: str) -> None:
    """A duplicate: its MLflow run and its result are the earlier trial's; nothing trains."""
    answer = drawn.repeat
    run = pipeline.open_run(tracker, parent, spec, drawn, drawn.arch, key=key)
    pipeline.close_run(tracker, run, answer)
    base = {"number": drawn.number, "run_id": run, "arch": drawn.arch}
    tune.report({**base, **answer.metrics, "state": answer.state, "reason": answer.reason, "outcome": answer.as_text()})


class TrialTimeout(Exception):
    """Raised in a trial's thread by its watchdog."""


@contextmanager
def _watchdog(seconds: float | None, tracker: Tracker, run: str):
    """After ``seconds``, raise TrialTimeout in the trial's thread (Tune runs trials in a
    thread, which cannot be killed). A thread stuck in native code never sees it; then the
    worker process ends itself after a grace period, and the retry Tune starts finds the
    run's timeout tag and records the timeout instead of training again."""
    if not seconds:
        yield
        return
    target, done = threading.get_ident(), threading.Event()

    def expire() -> None:
        tracker.set_tags(run, {TIMEOUT_TAG: f"{seconds:g}"})
        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(target), ctypes.py_object(TrialTimeout))
        if not done.wait(30):
            os._exit(1)

    timer = threading.Timer(seconds, expire)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        done.set()
        timer.cancel()

"""In a Ray worker: one trial (``trainable``), through the same pipeline and the same
executor (``runs.executor.execute``) as the local backend. It logs its own MLflow child
run (keyed by Tune's trial id, so a retry continues it) through ``pipeline.TrialLog``,
reports every epoch with a checkpoint (a retry resumes from it) and ends with one result
holding its ``pipeline.Outcome``, which the driver's searcher tells the study."""

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
from runs import executor, faults
from runs.tags import NODE_TAG, TIMEOUT_TAG
from runs.tracking import Tracker
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


def trainable(
    config: dict, *, spec: Spec, parent: str, uri: str, credentials: tuple = (None, None), paused: str | None = None
) -> None:
    """One trial in a Ray worker; resumes from Tune's checkpoint when it is a retry, or from
    the paused state of the pruned trial it continues (``paused``: the sweep's folder of
    them; a trial that may be pruned keeps its state there after every epoch, since Tune's
    scheduler ends it without a word, and removes it when it completes)."""
    drawn = Draw.from_dict(config)
    tracker = Tracker(uri, spec.experiment, credentials=credentials)
    key = tune.get_context().get_trial_id()
    if drawn.repeat is not None:  # the driver found its draw trained before (searcher's space)
        return _answer_repeat(drawn, spec, tracker, parent, key)
    b = spec.backend
    device = torch.device("cuda" if b.gpus_per_trial and torch.cuda.is_available() else "cpu")
    data = _dataset(spec, device)
    arch, cfg, line = pipeline.materialise(spec, drawn, data)
    run = pipeline.open_run(tracker, parent, spec, drawn, line, key=key)
    tracker.set_tags(run, {NODE_TAG: ray.util.get_node_ip_address()})
    base = {"number": drawn.number, "run_id": run, "arch": line}
    if drawn.continues is not None:  # the judge pairs the pruned trial's rung values with this one's final
        base["continues"] = drawn.continues

    def fail(reason: str) -> None:  # deterministic: recorded, not retried
        tracker.end_trial(run, "failed", reason)
        tune.report({**base, "state": "failed", "reason": reason})

    if TIMEOUT_TAG in tracker.tags(run):  # the watchdog ended the last attempt's worker
        return fail(executor.timeout_reason(b.trial_timeout))
    state = _paused_state(spec, drawn, paused)
    resume = _resume(device)
    # A retry's checkpointed epochs were logged before Tune had them (_Reporter.report)
    log = pipeline.TrialLog(tracker, run, logged=resume["epoch"] if resume else -1)
    if resume:
        log.resumed(resume["epoch"], resume["metrics"])
    elif drawn.continues is not None and state is not None and state.is_file():
        resume = torch.load(state, map_location=device, weights_only=True)
        log.epoch(resume["epoch"], resume["metrics"])  # judged on the trial it continues: not again
    row = replay.row_for(_table(spec.search.replay), drawn).as_dict() if spec.search.replay else None
    threads = max(1, int(b.cpus_per_trial))
    job = executor.Job(
        drawn.number, arch, cfg, drawn.seed, tuple(spec.constraints), str(device), threads,
        b.memory_per_trial, os.environ.get(faults.ENV), row, tuple(spec.search.proxies),
    )  # fmt: skip
    epochs, trained = _Reporter(log, base, state), {}
    try:
        with _watchdog(b.trial_timeout, tracker, run):
            final = executor.execute(job, data, resume=resume, on_epoch=epochs.report, on_trained=trained.update)
    except executor.TrialTimeout:  # it came between the trial's end and the watchdog's
        final = executor.Failed("timeout", "")
    if isinstance(final, executor.Failed):
        if final.kind == "timeout":
            return fail(executor.timeout_reason(b.trial_timeout))
        if final.kind in ("oom", "failed"):  # it would happen again: not retried
            if device.type == "cuda":
                torch.cuda.empty_cache()  # the next trial of this worker gets the memory back
            return fail(final.reason)
        tracker.end_trial(run, "failed", final.reason)  # Tune retries it; a retry reopens this run
        raise final.error
    if isinstance(final, executor.Refused):
        outcome = pipeline.refused(spec, final.error())
    else:
        outcome = pipeline.completed(spec, final.metrics)
    pipeline.close_run(tracker, run, outcome)
    if state is not None:  # it ran to its end: nothing to continue
        state.unlink(missing_ok=True)
    _report_outcome(base, outcome, trained, epochs.last)


def _paused_state(spec: Spec, drawn: Draw, paused: str | None) -> Path | None:
    """Where a sampled trial keeps its training state for a later draw to continue, when the
    spec's pruner may stop it (by its draw's key: an amendment renumbers trials)."""
    if paused is None or spec.search.pruner == "none" or spec.ablation is not None:
        return None
    return Path(paused) / f"{pipeline.draw_key(drawn.model, drawn.train)}.pt"


def _resume(device: torch.device) -> dict | None:
    """The training state of Tune's last checkpoint, when this attempt is a retry."""
    checkpoint = tune.get_checkpoint()
    if checkpoint is None:
        return None
    with checkpoint.as_directory() as folder:
        return torch.load(Path(folder) / "state.pt", map_location=device, weights_only=True)


class _Reporter:
    """Each epoch to MLflow (``pipeline.TrialLog``, as the local backend logs it), then to
    Tune with a checkpoint of the training state."""

    def __init__(self, log: pipeline.TrialLog, base: dict, paused: Path | None = None) -> None:
        self.log, self.base, self.paused = log, base, paused
        self.last = None  # the last epoch's snapshot function

    def report(self, epoch: int, metrics: dict, cost: dict, snapshot) -> bool:
        self.last = snapshot
        self.log.epoch(epoch, metrics)  # before Tune: a crash may repeat a step, never skip one
        if self.paused is not None:  # before Tune, whose scheduler may end the trial on this result
            self.paused.parent.mkdir(parents=True, exist_ok=True)
            torch.save(snapshot(), f"{self.paused}.tmp")
            os.replace(f"{self.paused}.tmp", self.paused)
        with tempfile.TemporaryDirectory() as folder:
            torch.save(snapshot(), Path(folder) / "state.pt")
            result = {**self.base, **cost, **metrics, "epoch": epoch + 1, "state": "running"}
            tune.report(result, checkpoint=tune.Checkpoint.from_directory(folder))
        return True  # Tune's scheduler stops a trial itself


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


@contextmanager
def _watchdog(seconds: float | None, tracker: Tracker, run: str):
    """After ``seconds``, raise ``executor.TrialTimeout`` in the trial's thread (Tune runs trials in a
    thread, which cannot be killed). A thread stuck in native code never sees it; then the
    worker process ends itself after a grace period, and the retry Tune starts finds the
    run's timeout tag and records the timeout instead of training again."""
    if not seconds:
        yield
        return
    target, done = threading.get_ident(), threading.Event()

    def expire() -> None:
        tracker.set_tags(run, {TIMEOUT_TAG: f"{seconds:g}"})
        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(target), ctypes.py_object(executor.TrialTimeout))
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

"""A trial in a process of its own, and what a trial's failure is called.

Why a process and not a call: a hung trial can be ended (a thread cannot be killed), a
memory cap (RLIMIT_AS) applies to the trial alone, and a crash (a segfault, ``os._exit``,
the kernel's OOM killer) takes only the trial down. Processes come from a fork server
that has already imported torch and the blocks, so starting one costs about 20 ms, not
the seconds of a fresh interpreter.

The trial's process talks to the sweep over one pipe, in the messages below: ``Resumed``
when it continues from a checkpoint, ``Epoch`` after each epoch (answered with True, go
on, or False, the pruner stops it), then one final message: ``Done``, ``Refused``,
``Pruned`` or ``Failed``.

Like every multiprocessing user, a script that runs a sweep keeps its top level under
``if __name__ == "__main__":`` (the fork server imports the main module).
"""

from __future__ import annotations

import math
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch

from blocks import ArchSpec
from runs import faults
from runs.data import Dataset
from runs.train import TrainConfig, TrialFailed
from runs.trial import Infeasible, replay_trial, run_trial

# Failures worth another attempt: an exception nobody expected, a process that died. Not a
# timeout, an out-of-memory or a non-finite loss: the same trial would do it again.
RETRYABLE = ("error", "crashed")


def failure_kind(err: BaseException) -> str:
    """oom (host or GPU memory), failed (a deterministic TrialFailed) or error."""
    text = str(err)
    if isinstance(err, MemoryError | torch.OutOfMemoryError):
        return "oom"
    if isinstance(err, RuntimeError) and ("can't allocate memory" in text or "out of memory" in text.lower()):
        return "oom"  # torch's CPU allocator raises a plain RuntimeError
    return "failed" if isinstance(err, TrialFailed) else "error"


def failure_reason(err: BaseException) -> str:
    """One line: ``Class: first line of the message`` (``oom: ...`` for memory)."""
    first = (str(err).strip().splitlines() or [""])[0][:300]
    reason = f"{type(err).__name__}: {first}"
    return f"oom: {reason}" if failure_kind(err) == "oom" else reason


def _address_space() -> int:
    return int(Path("/proc/self/statm").read_text().split()[0]) * os.sysconf("SC_PAGE_SIZE")


@contextmanager
def memory_cap(gib: float | None) -> Iterator[None]:
    """Let this process map at most ``gib`` GiB more than it has now (RLIMIT_AS), so an
    allocation beyond it fails as an exception the trial reports as ``oom``, instead of
    the kernel's OOM killer ending whatever process it picks. Linux only; else no cap."""
    if not gib or not sys.platform.startswith("linux"):
        yield
        return
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = _address_space() + int(gib * 2**30)
    resource.setrlimit(resource.RLIMIT_AS, (limit if hard == resource.RLIM_INFINITY else min(limit, hard), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


# -- the messages a trial's process sends -------------------------------------------------


@dataclass(frozen=True)
class Resumed:
    """Continuing from the checkpoint of ``epoch`` (0-based), whose metrics these were."""

    epoch: int
    metrics: dict


@dataclass(frozen=True)
class Epoch:
    """``epoch`` (0-based) has ended with ``metrics``; the sweep answers go on or stop.
    ``cost``: the costs measured before training (a multi-objective pruner ranks on them)."""

    epoch: int
    metrics: dict
    cost: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Done:
    metrics: dict  # every per-trial metric (cost and training)


@dataclass(frozen=True)
class Refused:
    """Refused before training (``runs.trial.Infeasible``)."""

    reason: str
    cost: dict
    violations: list

    def error(self) -> Infeasible:
        return Infeasible(self.reason, self.cost, self.violations)


@dataclass(frozen=True)
class Pruned:
    """Stopped by the pruner after an ``Epoch``."""


@dataclass(frozen=True)
class Failed:
    """``kind``: error, crashed (worth a retry), oom, failed (deterministic), timeout,
    interrupted (Ctrl-C: not counted)."""

    kind: str
    reason: str


Final = Done | Refused | Pruned | Failed


def timeout_reason(seconds: float | None) -> str:
    return f"timeout: no result after {seconds:g} s (backend.trial_timeout)"


@dataclass(frozen=True)
class Job:
    """Everything a trial's process needs, as plain picklable values."""

    trial: int
    arch: ArchSpec
    cfg: TrainConfig
    seed: int
    constraints: tuple
    device: str
    threads: int
    checkpoint: str | None  # written after every epoch when retries are on
    weights: str  # runs.trial.trained_record of the trained model, for logging it as an MLflow model
    memory_gib: float | None
    faults: str | None
    replay: dict | None = None  # a recorded table's row: its results are read, nothing trains


class _Pruned(Exception):
    pass


def _child(conn, job: Job, data: Dataset) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the sweep decides what Ctrl-C ends
    if sys.platform == "linux":  # die with the fork server, which dies with the sweep
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    try:
        torch.set_num_threads(job.threads)
        with memory_cap(job.memory_gib):
            conn.send(_train(conn, job, data.to(torch.device(job.device))))
    except Infeasible as err:
        conn.send(Refused(err.reason, err.cost, err.violations))
    except _Pruned:
        conn.send(Pruned())
    except BaseException as err:  # everything a trial raises is its outcome
        conn.send(Failed(failure_kind(err), failure_reason(err)))
    finally:
        conn.close()


def _train(conn, job: Job, data: Dataset) -> Done:
    resume, first, cost = None, 0, {}
    if job.checkpoint and os.path.exists(job.checkpoint):
        resume = torch.load(job.checkpoint, map_location=job.device, weights_only=True)
        first = resume["epoch"] + 1
        conn.send(Resumed(resume["epoch"], resume["metrics"]))

    def report(epoch: int, metrics: dict, snapshot) -> None:
        if job.checkpoint:
            torch.save(snapshot(), f"{job.checkpoint}.tmp")
            os.replace(f"{job.checkpoint}.tmp", job.checkpoint)  # a crash mid-write keeps the last one
        conn.send(Epoch(epoch, metrics, cost))
        if not conn.recv():
            raise _Pruned
        faults.fire(job.faults, job.trial, epoch, first)

    def keep(record: dict) -> None:
        torch.save(record, f"{job.weights}.tmp")
        os.replace(f"{job.weights}.tmp", job.weights)

    if job.replay is not None:
        return Done(replay_trial(job.arch, job.replay, constraints=job.constraints, report=report, on_cost=cost.update))
    metrics = run_trial(
        job.arch,
        job.cfg,
        data,
        seed=job.seed,
        constraints=job.constraints,
        report=report,
        resume=resume,
        on_cost=cost.update,
        on_trained=keep,
    )
    return Done(metrics)


_CONTEXT = None
_LOCK = threading.Lock()


def _context():
    """The fork server's context; the server starts with the first trial (or start_server)."""
    global _CONTEXT
    with _LOCK:
        if _CONTEXT is None:
            _CONTEXT = multiprocessing.get_context("forkserver")
            # __main__ too: every child imports it anyway (main.py: rich, argparse), once here.
            _CONTEXT.set_forkserver_preload(["__main__", "runs.preload"])
            _start(_CONTEXT)
        return _CONTEXT


def start_server() -> None:
    """Start the fork server now, e.g. while the sweep sets up its tracking."""
    _context()


def _start(ctx) -> None:
    """Python 3.11's fork server ignores the sweep's sys.path and any preload that fails to
    import, so the project goes on its PYTHONPATH (else every trial would import torch's
    FLOP counter again)."""
    from multiprocessing import forkserver

    root, before = str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (root, before) if p)
    try:
        forkserver.ensure_running()
    finally:
        if before is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = before


def _exit_reason(code: int | None) -> str:
    if code is not None and code < 0:
        name = signal.Signals(-code).name
        hint = " (out of memory?)" if name == "SIGKILL" else ""
        return f"the trial's process was killed by {name}{hint}"
    return f"the trial's process died with exit code {code}"


def run(
    job: Job,
    data: Dataset,
    on_epoch: Callable[[int, dict, dict], bool],
    on_resumed: Callable[[int, dict], None],
    *,
    timeout: float | None,
    stop: threading.Event,
) -> Final:
    """Run ``job`` in a new process and return its final message, or ``Failed(kind,
    reason)`` for a process that died (crashed), ran past ``timeout`` seconds (timeout)
    or was stopped by ``stop`` (interrupted). The process never outlives this call."""
    ctx = _context()
    ours, theirs = ctx.Pipe()
    proc = ctx.Process(target=_child, args=(theirs, job, data), daemon=True, name=f"archsweep-t{job.trial}")
    deadline = time.monotonic() + timeout if timeout else math.inf
    proc.start()
    theirs.close()
    try:
        while True:
            if stop.is_set():
                return Failed("interrupted", "stopped by Ctrl-C")
            if time.monotonic() > deadline:
                return Failed("timeout", timeout_reason(timeout))
            if not ours.poll(0.1):
                if not proc.is_alive() and not ours.poll(0):
                    proc.join()
                    return Failed("crashed", _exit_reason(proc.exitcode))
                continue
            try:
                message = ours.recv()
            except EOFError:
                proc.join()
                return Failed("crashed", _exit_reason(proc.exitcode))
            if isinstance(message, Epoch):
                ours.send(on_epoch(message.epoch, message.metrics, message.cost))
            elif isinstance(message, Resumed):
                on_resumed(message.epoch, message.metrics)
            else:
                return message
    finally:
        if proc.is_alive():
            proc.kill()
        proc.join()
        ours.close()

"""One trial, replayed or trained, on whichever backend runs it: ``execute`` is what the
local backend's trial process (``runs.worker``) and a Ray worker (``search.sweep.ray.worker``)
both call, and its final message (``Done``, ``Refused``, ``Pruned`` or ``Failed``) is
what each hands back. A backend gives it the trial (``Job``), the data on the trial's
device, the training state to resume from, and two hooks: ``on_epoch`` (keep a
checkpoint, pass the epoch on, answer whether the trial goes on) and ``on_trained``."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch

from blocks import ArchSpec
from runs import faults
from runs.data import Dataset
from runs.proxies import DEFAULT as DEFAULT_PROXIES
from runs.train import TrainConfig, TrialFailed
from runs.trial import Infeasible, replay_trial, run_trial

# Failures worth another attempt: an exception nobody expected, a process that died. Not a
# timeout, an out-of-memory or a non-finite loss: the same trial would do it again.
RETRYABLE = ("error", "crashed")


class TrialTimeout(Exception):
    """Raised in a trial's thread when it runs past its time (the Ray worker's watchdog)."""


def failure_kind(err: BaseException) -> str:
    """oom (host or GPU memory), failed (a deterministic TrialFailed), timeout or error."""
    text = str(err)
    if isinstance(err, MemoryError | torch.OutOfMemoryError):
        return "oom"
    if isinstance(err, RuntimeError) and ("can't allocate memory" in text or "out of memory" in text.lower()):
        return "oom"  # torch's CPU allocator raises a plain RuntimeError
    if isinstance(err, TrialTimeout):
        return "timeout"
    return "failed" if isinstance(err, TrialFailed) else "error"


def failure_reason(err: BaseException) -> str:
    """One line: ``Class: first line of the message`` (``oom: ...`` for memory)."""
    first = (str(err).strip().splitlines() or [""])[0][:300]
    reason = f"{type(err).__name__}: {first}"
    return f"oom: {reason}" if failure_kind(err) == "oom" else reason


def timeout_reason(seconds: float | None) -> str:
    return f"timeout: no result after {seconds:g} s (backend.trial_timeout)"


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
    import resource  # POSIX only: imported where the cap applies

    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = _address_space() + int(gib * 2**30)
    resource.setrlimit(resource.RLIMIT_AS, (limit if hard == resource.RLIM_INFINITY else min(limit, hard), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


# -- what a trial is, and how it ends ------------------------------------------------------


@dataclass(frozen=True)
class Job:
    """Everything a trial needs to run, as plain picklable values."""

    trial: int
    arch: ArchSpec
    cfg: TrainConfig
    seed: int
    constraints: tuple
    device: str
    threads: int
    memory_gib: float | None
    faults: str | None  # the hardening suite's fault plan (runs.faults)
    replay: dict | None = None  # a recorded table's row: its results are read, nothing trains
    proxies: tuple[str, ...] = DEFAULT_PROXIES  # the zero-cost proxies scored before training


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
    """Stopped by the pruner after an epoch."""


@dataclass(frozen=True)
class Failed:
    """``kind``: error, crashed (worth a retry), oom, failed (deterministic), timeout,
    interrupted (Ctrl-C: not counted). ``error``: the exception, in the process that
    raised it (it does not travel: a backend that retries by raising re-raises it)."""

    kind: str
    reason: str
    error: BaseException | None = field(default=None, compare=False, repr=False)


Final = Done | Refused | Pruned | Failed


class _Stopped(Exception):
    """The backend's answer to an epoch: stop here (pruned)."""


def execute(
    job: Job,
    data: Dataset,
    *,
    resume: dict | None,
    on_epoch: Callable[[int, dict, dict, Callable[[], dict]], bool],
    on_trained: Callable[[dict], None] = lambda record: None,
) -> Final:
    """Run ``job`` on ``data`` (on its device), from the training state ``resume`` when
    given: replayed from its table row, or trained. After each epoch ``on_epoch(epoch,
    metrics, cost, snapshot)`` answers whether it goes on (``cost``: measured before
    training; ``snapshot()``: the training state to checkpoint). Everything the trial
    raises is its outcome: the final message says how it ended."""
    first, cost = (resume["epoch"] + 1 if resume else 0), {}

    def report(epoch: int, metrics: dict, snapshot) -> None:
        if not on_epoch(epoch, metrics, dict(cost), snapshot):
            raise _Stopped
        faults.fire(job.faults, job.trial, epoch, first)

    torch.set_num_threads(job.threads)
    try:
        with memory_cap(job.memory_gib):
            if job.replay is not None:
                metrics = replay_trial(
                    job.arch, job.replay, constraints=job.constraints, report=report, on_cost=cost.update, resume=resume
                )
            else:
                metrics = run_trial(
                    job.arch,
                    job.cfg,
                    data,
                    seed=job.seed,
                    constraints=job.constraints,
                    report=report,
                    resume=resume,
                    on_cost=cost.update,
                    on_trained=on_trained,
                    proxies=job.proxies,
                )
        return Done(metrics)
    except Infeasible as err:
        return Refused(err.reason, err.cost, err.violations)
    except _Stopped:
        return Pruned()
    except Exception as err:
        return Failed(failure_kind(err), failure_reason(err), err)

"""A trial in a process of its own: how the local backend runs ``runs.executor.execute``.

Why a process and not a call: a hung trial can be ended (a thread cannot be killed), a
memory cap (RLIMIT_AS) applies to the trial alone, and a crash (a segfault, ``os._exit``,
the kernel's OOM killer) takes only the trial down. Processes come from a fork server
that has already imported torch and the blocks, so starting one costs about 20 ms, not
the seconds of a fresh interpreter.

The trial's process talks to the sweep over one pipe, in the messages below: ``Resumed``
when it continues from a checkpoint, ``Epoch`` after each epoch (answered with True, go
on, or False, the pruner stops it), then one final message: the executor's ``Done``,
``Refused``, ``Pruned`` or ``Failed``.

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
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from runs.data import Dataset
from runs.executor import Failed, Final, Job, execute, failure_kind, failure_reason, timeout_reason

# -- the messages a trial's process sends, besides its final one -------------------------


@dataclass(frozen=True)
class Resumed:
    """Continuing from the checkpoint of ``epoch`` (0-based), whose metrics these were:
    the trial's own (a retry), or, ``continued``, the paused checkpoint of a pruned trial
    of the same draw that this trial continues (``Files.start``)."""

    epoch: int
    metrics: dict
    continued: bool = False


@dataclass(frozen=True)
class Epoch:
    """``epoch`` (0-based) has ended with ``metrics``; the sweep answers go on or stop.
    ``cost``: the costs measured before training (a multi-objective pruner ranks on them)."""

    epoch: int
    metrics: dict
    cost: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Files:
    """Where a trial's process keeps what outlives it: its checkpoint (after every epoch,
    when retries are on or a pruned trial may be continued) and its trained model's record
    (for logging it as an MLflow model); and ``start``: the checkpoint it continues from
    when it has none of its own yet (a pruned trial's, paused)."""

    checkpoint: str | None
    weights: str
    start: str | None = None


def _child(conn, job: Job, files: Files, data: Dataset) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the sweep decides what Ctrl-C ends
    if sys.platform == "linux":  # die with the fork server, which dies with the sweep
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    try:
        resume, continued = None, False
        if files.checkpoint and os.path.exists(files.checkpoint):
            resume = torch.load(files.checkpoint, map_location=job.device, weights_only=True)
        elif files.start:  # a pruned trial's training, continued (the sweep checked it exists)
            resume, continued = torch.load(files.start, map_location=job.device, weights_only=True), True
        if resume is not None:
            conn.send(Resumed(resume["epoch"], resume["metrics"], continued))

        def on_epoch(epoch: int, metrics: dict, cost: dict, snapshot) -> bool:
            if files.checkpoint:
                _replace(files.checkpoint, snapshot())  # a crash mid-write keeps the last one
            conn.send(Epoch(epoch, metrics, cost))
            return conn.recv()

        final = execute(
            job,
            data.to(torch.device(job.device)),
            resume=resume,
            on_epoch=on_epoch,
            on_trained=lambda record: _replace(files.weights, record),
        )
        conn.send(replace(final, error=None) if isinstance(final, Failed) else final)  # an exception may not pickle
    except BaseException as err:  # everything a trial raises is its outcome
        conn.send(Failed(failure_kind(err), failure_reason(err)))
    finally:
        conn.close()


def _replace(path: str, obj) -> None:
    torch.save(obj, f"{path}.tmp")
    os.replace(f"{path}.tmp", path)


_CONTEXT = None
_LOCK = threading.Lock()


def _context():
    """The fork server's context; the server starts with the first trial (or start_server)."""
    global _CONTEXT
    with _LOCK:
        if _CONTEXT is None:
            _CONTEXT = multiprocessing.get_context("forkserver")
            # __main__ too: every child imports it anyway (main.py: rich, argparse), once here.
            _CONTEXT.set_forkserver_preload(["__main__", f"{__package__}.preload"])
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

    # The folder the top-level package is in: the checkout, or the one archsweep is installed in.
    root, before = str(Path(__file__).resolve().parents[__name__.count(".")]), os.environ.get("PYTHONPATH")
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
    files: Files,
    data: Dataset,
    on_epoch: Callable[[int, dict, dict], bool],
    on_resumed: Callable[[int, dict, bool], None],
    *,
    timeout: float | None,
    stop: threading.Event,
) -> Final:
    """Run ``job`` in a new process and return its final message, or ``Failed(kind,
    reason)`` for a process that died (crashed), ran past ``timeout`` seconds (timeout)
    or was stopped by ``stop`` (interrupted). The process never outlives this call."""
    ctx = _context()
    ours, theirs = ctx.Pipe()
    proc = ctx.Process(target=_child, args=(theirs, job, files, data), daemon=True, name=f"archsweep-t{job.trial}")
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
                on_resumed(message.epoch, message.metrics, message.continued)
            else:
                return message
    finally:
        if proc.is_alive():
            proc.kill()
        proc.join()
        ours.close()

"""Deliberate faults, for the hardening suite (tests/e2e/test_faults.py) and for anyone
who wants to see what a sweep does when a trial breaks.

``ARCHSWEEP_FAULTS`` names a JSON file holding a list of faults::

    [{"trial": 3, "epoch": 1, "kind": "raise", "times": 1}, {"trial": 5, "epoch": 0, "kind": "hang"}]

A fault fires at the end of epoch ``epoch`` (0-based) of trial ``trial``, after that
epoch is reported and checkpointed (without ``epoch``: at the end of the first epoch that
each attempt runs, so a retry resumed from a checkpoint meets it too), at most ``times``
times over all attempts of the trial (default: every attempt). Firings are counted in files next to the plan, so the
count survives the trial's process. Kinds: ``raise`` (a RuntimeError), ``exit`` (the
process ends at once with code 1, like a segfault), ``hang`` (never reports or returns
again), ``sleep`` (a straggler: ``seconds`` of waiting, then the trial goes on).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

ENV = "ARCHSWEEP_FAULTS"


class InjectedFault(RuntimeError):
    pass


def plan() -> str | None:
    """The plan's path, read in the sweep's process (trial processes get it passed)."""
    return os.environ.get(ENV) or None


def fire(path: str | None, trial: int, epoch: int, first: int) -> None:
    """Called after epoch ``epoch`` of an attempt that started at epoch ``first``."""
    if not path:
        return
    for i, fault in enumerate(json.loads(Path(path).read_text())):
        if fault["trial"] != trial or fault.get("epoch", first) != epoch:
            continue
        counter = Path(f"{path}.fired.{i}")
        fired = int(counter.read_text()) if counter.exists() else 0
        if fired >= fault.get("times", float("inf")):
            continue
        counter.write_text(str(fired + 1))
        if fault["kind"] == "exit":
            os._exit(1)
        if fault["kind"] == "hang":
            while True:
                time.sleep(1)
        if fault["kind"] == "sleep":
            time.sleep(fault["seconds"])
            continue
        raise InjectedFault(f"injected fault in trial {trial}, epoch {epoch + 1}")

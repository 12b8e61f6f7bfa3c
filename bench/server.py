"""A Ray sweep's private MLflow tracking server, side by side, alternating: ``mlflow server``
(its command line, which starts the web app in a second process: how archsweep started it
until 2026-12-07) and ``runs.server.private_server`` (the same app under uvicorn in one
process). Each over a new store of its own, then given a small sweep's logging: 16 runs of
12 epochs' metrics, as the Ray workers send them. Reported: seconds until it answers, and
the CPU seconds of its processes, start-up and logging together.

    PYTHONPATH=. .venv/bin/python -m bench.server              # 3 of each
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import psutil

from runs import server, tracking

RUNS, EPOCHS = 16, 12


@contextmanager
def _mlflow_server(store: Path):
    """The command archsweep ran before (``mlflow server ... --workers 1``)."""
    store.mkdir(parents=True, exist_ok=True)
    port = server.free_port()
    cmd = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    cmd += ["--backend-store-uri", tracking.embedded_store(store)]
    cmd += ["--default-artifact-root", (store / "artifacts").resolve().as_uri()]
    tracking.mlflow_environment()
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    with open(store / "server.log", "ab") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        try:
            yield proc, f"http://127.0.0.1:{port}"
        finally:
            server._end(proc)


@contextmanager
def _private_server(store: Path):
    with server.private_server(store) as started:
        yield started.proc, started.uri


def _cpu(proc: subprocess.Popen) -> float:
    """CPU seconds of ``proc`` and every process under it, while they run."""
    root = psutil.Process(proc.pid)
    total = 0.0
    for p in [root, *root.children(recursive=True)]:
        try:
            times = p.cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
    return total


def _measure(start, store: Path) -> tuple[float, float]:
    started = time.perf_counter()
    with start(store) as (proc, uri):
        while True:
            try:
                urllib.request.urlopen(f"{uri}/health", timeout=2).close()
                break
            except OSError:
                if proc.poll() is not None:
                    raise RuntimeError(f"the server did not start; see {store}") from None
                time.sleep(0.1)
        ready = time.perf_counter() - started
        _log_a_sweep(uri)
        return ready, _cpu(proc)


def _log_a_sweep(uri: str) -> None:
    tracker = tracking.Tracker(uri, "bench-server")
    for _ in range(RUNS):
        run = tracker.client.create_run(tracker.experiment_id).info.run_id
        tracker.set_tags(run, {"archsweep.trial": "0"})
        for epoch in range(EPOCHS):
            tracker.log_metrics(run, {"val_accuracy": 0.5, "train_loss": 1.0}, step=epoch)
        tracker.client.set_terminated(run)


def run(rounds: int, say=print) -> dict:
    tracking._mlflow()  # the client's import, once, left out of both
    kinds = {"mlflow_server": _mlflow_server, "private_server": _private_server}
    ready = {k: [] for k in kinds}
    cpu = {k: [] for k in kinds}
    with tempfile.TemporaryDirectory(prefix="archsweep-bench-server-") as tmp:
        for i in range(rounds):
            for kind, start in kinds.items():
                r, c = _measure(start, Path(tmp) / f"{kind}-{i}")
                ready[kind].append(r)
                cpu[kind].append(c)
    row = {"rounds": rounds}
    for kind in kinds:
        row[f"{kind}_ready_s"] = statistics.median(ready[kind])
        row[f"{kind}_cpu_s"] = statistics.median(cpu[kind])
        say(
            f"{kind}: answers after {row[f'{kind}_ready_s']:.2f} s ({_s(ready[kind])}), "
            f"{row[f'{kind}_cpu_s']:.2f} CPU s with {RUNS} runs logged ({_s(cpu[kind])})"
        )
    return row


def _s(values: list[float]) -> str:
    return ", ".join(f"{v:.2f}" for v in values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    run(parser.parse_args().rounds)


if __name__ == "__main__":
    main()

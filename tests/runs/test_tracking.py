"""The embedded MLflow store survives its creator being killed."""

import signal
import subprocess
import sys
import time
from pathlib import Path

from runs.tracking import Tracker, embedded_store

ROOT = Path(__file__).resolve().parents[2]
BUILD = "import sys, pathlib, runs.tracking; runs.tracking.embedded_store(pathlib.Path(sys.argv[1]))"


def test_a_store_whose_creator_was_killed_mid_schema_opens_and_takes_runs(tmp_path):
    store = tmp_path / "store"
    proc = subprocess.Popen([sys.executable, "-c", BUILD, str(store)], cwd=ROOT)
    deadline = time.time() + 60
    while not (store.exists() and any(store.iterdir())):  # the schema is being built (~4 s of migrations)
        assert proc.poll() is None and time.time() < deadline
        time.sleep(0.05)
    time.sleep(1.0)
    proc.send_signal(signal.SIGKILL)
    proc.wait()

    tracker = Tracker(embedded_store(store), "after-a-kill", artifacts=store / "artifacts")
    run_id = tracker.client.create_run(tracker.experiment_id).info.run_id
    assert tracker.client.get_run(run_id).info.status == "RUNNING"
    assert sorted(p.name for p in store.iterdir()) == ["mlflow.db"]  # the killed build's side file is gone

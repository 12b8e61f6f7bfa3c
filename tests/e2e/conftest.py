"""Small real sweeps: real Optuna journal storage, real MLflow SQLite store, in a tmp dir."""

import json
import os
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient

TINY = {
    "name": "tiny",
    "data": {"dataset": "synthetic", "image_size": 8, "num_classes": 4, "samples": 240, "channels": 1},
    "model": {
        "patch_size": 2,
        "stages": [
            {
                "depth": 1,
                "width": {"choice": [8, 16]},
                "mlp_ratio": 2,
                "mixer": {"choice": ["fourier", {"attention": {"heads": 2}}, "global_filter"]},
            }
        ],
    },
    "train": {"epochs": 2, "batch_size": 64, "lr": {"float": [1e-3, 1e-2], "log": True}},
    "objectives": [{"val_accuracy": "max"}, {"gmacs": "min"}],
    "search": {"sampler": "random", "trials": 5, "seed": 0},
    # Front models (the default, "pareto") are logged by the quickstart's, the tracking
    # server's and the backends' tests; here they would cost ~2 s a sweep.
    "tracking": {"dir": "store", "models": "none"},
}


def write_spec(folder: Path, **changes) -> Path:
    """TINY with ``changes`` (a section set to None is left out)."""
    spec = {k: v for k, v in {**TINY, **changes}.items() if v is not None}
    path = folder / f"{spec['name']}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def runs_of(folder: Path, experiment: str = "tiny", store: str = "store"):
    """(client, parent runs, child runs) of the sweep's MLflow experiment."""
    client = MlflowClient(f"sqlite:///{folder / store / 'mlflow.db'}")
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    parents = [r for r in runs if r.data.tags.get("archsweep.trial") == "parent"]
    children = [r for r in runs if r.data.tags.get("archsweep.trial") != "parent"]
    return client, parents, children


def inject(monkeypatch, folder: Path, faults: list[dict]) -> Path:
    """Arm runs.faults for sweeps started by this test (see runs/faults.py)."""
    plan = folder / "faults.json"
    plan.write_text(json.dumps(faults))
    monkeypatch.setenv("ARCHSWEEP_FAULTS", str(plan))
    return plan


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def wait_for_health(url: str, proc, what: str, timeout: float = 120) -> None:
    """Until ``url``/health answers; fails if ``proc`` exits or the time runs out."""
    deadline = time.time() + timeout
    while True:
        try:
            urllib.request.urlopen(f"{url}/health", timeout=2).close()
            return
        except OSError:
            assert time.time() < deadline and proc.poll() is None, f"{what} did not start"
            time.sleep(0.5)


ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config, items):
    """Every test under tests/e2e is ``e2e`` (pytest hands this hook every test collected)."""
    for item in items:
        if Path(item.path).resolve().is_relative_to(HERE):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def quickstart(tmp_path_factory) -> Path:
    """The main job as the README runs it (16 trials, 12 epochs on digits), once for the
    tests that read its results; its folder (the store is out/)."""
    import main

    folder = tmp_path_factory.mktemp("quickstart")
    before = os.getcwd()
    os.chdir(folder)
    try:
        assert main.main(["run", str(ROOT / "spaces" / "quickstart.yaml")]) == 0
    finally:
        os.chdir(before)
    return folder


@pytest.fixture(scope="session")
def quickstart_ui(quickstart):
    """`main.py ui` serving the quickstart's store on 127.0.0.1: its URL."""
    import signal
    import subprocess
    import sys

    from runs.server import free_port

    port = free_port()
    server = subprocess.Popen(
        [sys.executable, str(ROOT / "main.py"), "ui", "--port", str(port)],
        cwd=quickstart,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_health(url, server, "the UI")
        yield url
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)

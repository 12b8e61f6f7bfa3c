"""What a sweep exposes: the sockets its processes open (checked from the system's own
connection table), and where a password in the tracking URI could end up."""

from __future__ import annotations

import ast
import ipaddress
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import psutil
import pytest
from mlflow import MlflowClient

import main
import search.sweep.ray.driver  # noqa: F401  sets Ray's environment before ray is imported
from runs.server import free_port
from tests.e2e.conftest import wait_for_health, write_spec

ROOT = Path(__file__).resolve().parents[2]
SECRET = "Zq7-not-in-any-log-9xK"


def _loopback(ip: str) -> bool:
    address = ipaddress.ip_address(ip.split("%")[0])
    return (getattr(address, "ipv4_mapped", None) or address).is_loopback


# What MLflow takes for a CI run or a test, where it sends no telemetry; a user's shell has none.
CI_MARKERS = {"PYTEST_CURRENT_TEST", "CI", "GITHUB_ACTIONS", "GITLAB_CI", "JENKINS_URL", "BUILDKITE", "TF_BUILD"}


def _outside_loopback(audit_log: Path) -> list[str]:
    """The name lookups and connections in an audited.py log that leave the machine."""
    leaving = []
    for line in audit_log.read_text().splitlines():
        event, target = line.split("\t")
        target = ast.literal_eval(target)
        if event == "socket.connect" and isinstance(target, tuple):
            target = target[0]
        elif event == "socket.connect":  # a Unix socket
            continue
        try:
            loopback = target in ("localhost", None) or _loopback(str(target))
        except ValueError:  # a name, not an address
            loopback = False
        if not loopback:
            leaving.append(line)
    return leaving


def test_a_local_sweep_listens_nowhere_and_talks_to_loopback_only(workdir):
    """Default settings, two workers, run as from a user's shell: the sweep's processes
    (driver, fork server, trials) are sampled while trials train; no socket listens beyond
    127.0.0.1, every connection goes to a loopback address, and no process so much as
    looks up a name beyond it (as MLflow's telemetry would)."""
    spec = write_spec(workdir, train={"epochs": 40, "batch_size": 32}, search={"sampler": "random", "trials": 2})
    audit = workdir / "network.log"
    audit.touch()
    audited = [sys.executable, str(ROOT / "tests/e2e/audited.py"), str(audit)]
    driver = subprocess.Popen(
        [*audited, str(ROOT / "main.py"), "run", str(spec), "--workers", "2"],
        cwd=workdir,
        env={k: v for k, v in os.environ.items() if k not in CI_MARKERS},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    listening, remote, seen = [], [], set()
    try:
        deadline = time.time() + 120
        while time.time() < deadline and driver.poll() is None and len(seen) < 4:
            for proc in [psutil.Process(driver.pid), *psutil.Process(driver.pid).children(recursive=True)]:
                try:
                    connections = proc.net_connections(kind="inet")
                    seen.add(proc.pid)
                except psutil.Error:
                    continue
                listening += [c.laddr.ip for c in connections if c.status == psutil.CONN_LISTEN]
                remote += [c.raddr.ip for c in connections if c.raddr]
            time.sleep(0.2)
    finally:
        driver.kill()
        driver.wait()
    assert len(seen) >= 4, seen  # the driver, the fork server and two trials were looked at
    assert all(ip == "127.0.0.1" for ip in listening), listening
    assert all(_loopback(ip) for ip in remote), remote
    assert "socket.connect" in audit.read_text()  # the audit saw the workers' connections
    assert not _outside_loopback(audit)


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory):
    """A real MLflow server with basic authentication (admin / SECRET) on 127.0.0.1, for
    both backends' sweeps (each in its own experiment)."""
    pytest.importorskip("flask_wtf", reason="the basic-auth server needs mlflow[auth] (requirements-dev.txt)")
    folder = tmp_path_factory.mktemp("server")
    config = folder / "auth.ini"
    config.write_text(
        # MLflow's credential cache (off by default): a password hash checked once, not on
        # each of a sweep's requests (a quarter of a second each)
        "[mlflow]\ndefault_permission = READ\nauth_cache_ttl_seconds = 600\n"
        f"database_uri = sqlite:///{folder / 'auth.db'}\nadmin_username = admin\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
    )
    port = free_port()
    env = {
        **os.environ,
        "MLFLOW_AUTH_CONFIG_PATH": str(config),
        "MLFLOW_AUTH_ADMIN_PASSWORD": SECRET,
        "MLFLOW_FLASK_SERVER_SECRET_KEY": "test-only",
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    }
    cmd = [sys.executable, "-m", "mlflow", "server", "--app-name", "basic-auth", "--host", "127.0.0.1"]
    cmd += ["--port", str(port), "--workers", "1", "--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}"]
    cmd += ["--artifacts-destination", str(folder / "artifacts")]
    server = subprocess.Popen(
        cmd, cwd=folder, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    uri = f"http://127.0.0.1:{port}"
    try:
        wait_for_health(uri, server, "the auth server")
        yield uri, folder
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def _files_holding(folder: Path, text: str) -> list[str]:
    return [str(p) for p in folder.rglob("*") if p.is_file() and text.encode() in p.read_bytes()]


@pytest.mark.parametrize("kind", ["local", pytest.param("ray", marks=pytest.mark.ray)])
def test_a_password_in_the_tracking_uri_is_used_and_never_written(kind, auth_server, workdir, capfd, monkeypatch):
    uri, server_folder = auth_server
    with pytest.raises(urllib.error.HTTPError) as refused:  # the server does check
        urllib.request.urlopen(f"{uri}/api/2.0/mlflow/experiments/search?max_results=1", timeout=10)
    assert refused.value.code == 401
    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD", raising=False)
    spec = write_spec(
        workdir,
        search={"sampler": "random", "trials": 2, "seed": 0},
        backend={"kind": kind},
        tracking={"dir": "store", "models": "none", "experiment": f"secret-{kind}"},
    )
    login = uri.replace("http://", f"http://admin:{SECRET}@")
    assert main.main(["run", str(spec), "-o", f"tracking.uri={login}"]) == 0
    out, err = capfd.readouterr()
    assert SECRET not in out + err

    client = MlflowClient(uri)  # the sweep set the credentials in this process's environment
    runs = client.search_runs([client.get_experiment_by_name(f"secret-{kind}").experiment_id])
    assert len(runs) == 3  # parent and two trials: the credentials worked
    for run in runs:
        assert SECRET not in repr(run.data.params) + repr(run.data.tags) + repr(run.info)
        for artifact in client.list_artifacts(run.info.run_id):
            if not artifact.is_dir:
                local = client.download_artifacts(run.info.run_id, artifact.path, str(workdir / "downloaded"))
                assert SECRET.encode() not in Path(local).read_bytes(), artifact.path
    # Every file the sweep wrote (store, Tune's experiment state, downloaded artifacts), the
    # server's files (its store, its log-free folder), and every process's command line.
    assert not _files_holding(workdir, SECRET) + _files_holding(server_folder, SECRET)
    command_lines = [" ".join(p.info["cmdline"] or []) for p in psutil.process_iter(["cmdline"])]
    assert not [line for line in command_lines if SECRET in line]
    if kind == "ray":
        logs = Path("/tmp/ray/session_latest/logs")
        assert not [str(p) for p in logs.rglob("*") if p.is_file() and SECRET.encode() in p.read_bytes()]


def test_a_password_in_the_storage_path_is_refused_without_echoing_it(workdir, capsys):
    spec = write_spec(workdir, backend={"kind": "ray", "storage_path": f"s3://key:{SECRET}@bucket/sweeps"})
    assert main.main(["run", str(spec)]) == 2
    out, err = capsys.readouterr()
    assert "backend.storage_path: holds a password" in err and SECRET not in out + err
    assert not (workdir / "store").exists()

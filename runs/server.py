"""The MLflow servers archsweep starts and talks to, from the outside: a private
MLflow tracking server over a sweep's embedded store (``private_server``), ``mlflow ui`` for
``main.py ui`` (``serve_ui``), free and taken ports on 127.0.0.1, and whether a tracking
server answers (``check_server``).

No mlflow import here: a server is a process of its own, started with the environment of
runs.tracking.mlflow_environment (telemetry off), and is reached over HTTP. With
runs.tracking (the client, the only module that imports mlflow) this is the MLflow adapter.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from runs.tracking import TrackingUnreachable, embedded_store, mlflow_environment

SERVER_WAIT_S = 15.0  # how long a sweep waits for its tracking server to answer at start


def check_server(uri: str, timeout: float | None = None) -> None:
    """Raise ``TrackingUnreachable`` when nothing answers at the tracking server
    ``uri`` within ``timeout`` seconds: MLflow's client would retry for minutes in silence.
    Any HTTP answer counts (a server with authentication answers 401)."""
    import urllib.error

    timeout = SERVER_WAIT_S if timeout is None else timeout
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=min(5.0, timeout)).close()
            return
        except urllib.error.HTTPError:
            return
        except (OSError, ValueError) as err:
            if time.monotonic() > deadline:
                reason = getattr(err, "reason", None) or err
                raise TrackingUnreachable(
                    f"no MLflow tracking server answers at {uri} ({reason}; waited {timeout:.0f} s): "
                    "start it, or fix tracking.uri"
                ) from None
            time.sleep(0.5)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:
    """In the server's process: SIGTERM when the sweep's process dies, even by SIGKILL
    (``mlflow ui`` passes it on to its web server), so no server outlives its sweep."""
    if sys.platform == "linux":
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class PrivateServer:
    """A started tracking server (``private_server``): ``ready`` waits until it answers
    and gives its URI; ``stop_soon`` asks it to stop without waiting (its context waits),
    so that its second of shutdown passes while the caller stops something else."""

    def __init__(self, proc: subprocess.Popen, uri: str, log: Path, deadline: float) -> None:
        self.proc, self.uri, self.log, self.deadline = proc, uri, log, deadline

    def ready(self) -> str:
        while True:
            try:
                urllib.request.urlopen(f"{self.uri}/health", timeout=2).close()
                return self.uri
            except OSError:
                if self.proc.poll() is not None or time.time() > self.deadline:
                    raise RuntimeError(f"the MLflow server did not start; see {self.log}") from None
                time.sleep(0.3)

    def stop_soon(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)


# A private server is MLflow's own web app (the one ``mlflow server`` starts) under uvicorn,
# in one process. ``mlflow server`` is two: its command line imports all of mlflow only to
# start the same app in a second process (5 s of CPU a sweep). The app reads its stores
# from the variables named in mlflow.server.constants, as ``mlflow server`` passes them.
_SERVE = """
import os, sys
from pathlib import Path
from mlflow.server import constants
store, artifacts, port = sys.argv[1:4]
os.environ[constants.BACKEND_STORE_URI_ENV_VAR] = os.environ[constants.REGISTRY_STORE_URI_ENV_VAR] = store
os.environ[constants.ARTIFACT_ROOT_ENV_VAR] = artifacts
import mlflow.server, uvicorn
log_config = str(Path(mlflow.server.__file__).with_name("uvicorn_log_config.yaml"))
uvicorn.run("mlflow.server.fastapi_app:app", host="127.0.0.1", port=int(port), workers=1, log_config=log_config)
"""


@contextmanager
def private_server(store: Path, timeout: float = 120.0) -> Iterator[PrivateServer]:
    """MLflow's tracking server on 127.0.0.1 over the embedded store, for worker processes
    that log runs themselves: one process owns the SQLite file, so concurrent trials do
    not meet SQLite's "database is locked". Stopped on exit.

    It takes seconds to start, time the caller can spend starting something else before
    asking ``ready()`` for its URI."""
    store.mkdir(parents=True, exist_ok=True)
    port = free_port()
    artifacts = (store / "artifacts").resolve().as_uri()
    cmd = [sys.executable, "-c", _SERVE, embedded_store(store), artifacts, str(port)]
    log = open(store / "mlflow-server.log", "ab")  # noqa: SIM115 (closed below)
    mlflow_environment()  # telemetry off, in the server too
    # No job runner (GenAI evaluation jobs: a dozen processes this store never uses).
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    proc = subprocess.Popen(
        cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True, preexec_fn=_die_with_parent
    )
    try:
        yield PrivateServer(proc, f"http://127.0.0.1:{port}", store / "mlflow-server.log", time.time() + timeout)
    finally:
        _end(proc)
        log.close()


def _end(proc: subprocess.Popen) -> None:
    """Stop a server started in a session of its own, with everything it started."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def port_taken(port: int) -> bool:
    """Whether something listens on 127.0.0.1:``port`` (as a server binds: SO_REUSEADDR)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def serve_ui(db: Path, port: int, on_ready: Callable[[str], None]) -> int:
    """``mlflow ui`` on 127.0.0.1:``port`` over the database ``db`` until it ends, or until
    this process gets SIGINT or SIGTERM: passed on to the server's process group, and 0.
    ``on_ready(url)`` once it answers. Killed, this process takes the server along
    (PDEATHSIG). Returns the server's exit code when it ends by itself."""
    cmd = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", f"sqlite:///{db.resolve()}"]
    # MLflow's default 4 workers, and a job runner with 7 consumers: ~2.5 GB idle for one reader.
    cmd += ["--host", "127.0.0.1", "--port", str(port), "--workers", "2"]
    mlflow_environment()  # telemetry off, in the server too
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    proc = subprocess.Popen(cmd, env=env, start_new_session=True, preexec_fn=_die_with_parent)
    asked: list[int] = []

    def stop(signum, frame) -> None:
        asked.append(signum)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)

    previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    url = f"http://127.0.0.1:{port}"
    try:
        while proc.poll() is None and not asked:
            try:
                urllib.request.urlopen(f"{url}/health", timeout=2).close()
                on_ready(url)
                break
            except OSError:
                time.sleep(0.3)
        code = proc.wait()
    finally:
        _end(proc)
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return 0 if asked else code

"""A Ray cluster on this machine (``main.py cluster up|down|status``), for trying the
Ray backend out and for the tests: head and workers on loopback node addresses, token
authentication on, dashboard off."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from contextlib import suppress
from pathlib import Path

from runs.server import free_port

HEAD_NODE, WORKER_NODES = "127.0.0.2", "127.0.0.{}"  # loopback: Ray keeps these, not 127.0.0.1


def ensure_token() -> None:
    """Token authentication needs a token on every node; Ray generates one in
    ~/.ray/auth_token (shared by the nodes of this machine), readable by its owner only."""
    if os.environ.get("RAY_AUTH_MODE") != "token" or os.environ.get("RAY_AUTH_TOKEN"):
        return
    path = Path(os.environ.get("RAY_AUTH_TOKEN_PATH", Path.home() / ".ray" / "auth_token"))
    if not path.exists():
        subprocess.run([_ray_cli(), "get-auth-token", "--generate"], capture_output=True, check=True)
    path.chmod(0o600)


def _ray_cli() -> str:
    return str(Path(sys.executable).parent / "ray")


def cluster_up(workers: int = 1, cpus: int = 1, port: int = 6390) -> str:
    """A head (127.0.0.2) and ``workers`` worker nodes (127.0.0.3, ...) on this machine,
    token authentication on, dashboard off. Returns the head's address."""

    ensure_token()
    address = f"{HEAD_NODE}:{port}"
    common = ["--num-cpus", str(cpus), "--object-store-memory", str(200 * 2**20), "--disable-usage-stats"]
    env = {**os.environ, "RAY_AUTH_MODE": os.environ.get("RAY_AUTH_MODE", "token")}
    # A lost node is declared dead after ~3 s, not Ray's ~15 s (5 failed checks, 3 s apart):
    # until then Tune may place a lost trial's retries on it, each one a failure more.
    env |= {"RAY_health_check_period_ms": "1000", "RAY_health_check_failure_threshold": "3"}
    head = ["start", "--head", "--node-ip-address", HEAD_NODE, "--port", str(port), "--include-dashboard=false"]
    subprocess.run([_ray_cli(), *head, *common], env=env, check=True, capture_output=True)
    for i in range(workers):
        node = WORKER_NODES.format(3 + i)
        agents = ["--dashboard-agent-listen-port", str(free_port()), "--runtime-env-agent-port", str(free_port())]
        cmd = [_ray_cli(), "start", "--address", address, "--node-ip-address", node, *agents, *common]
        subprocess.run(cmd, env=env, check=True, capture_output=True)
    return address


def cluster_down(address: str, grace: float = 3.0) -> int:
    """Stops the cluster whose GCS is at ``address``: its nodes on this machine and what
    they started (agents, workers), SIGTERM then SIGKILL after ``grace`` seconds (a raylet
    takes 10 s to end on SIGTERM, the GCS longer: nothing of theirs needs keeping). Never
    another Ray runtime of this user, as ``ray stop`` would (a sweep's private runtime
    beside it, say). Returns how many processes it stopped."""
    import psutil  # after ray, which brings its own copy

    mine = [p for p in psutil.process_iter(["cmdline", "uids"]) if getattr(p.info["uids"], "real", -1) == os.getuid()]
    roots = [proc for proc in mine if _in_cluster(address, proc.info["cmdline"] or [])]
    family = list({proc.pid: proc for root in roots for proc in [root, *_descendants(root)]}.values())
    alive = family
    for signum, timeout in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        for proc in alive:
            with suppress(psutil.NoSuchProcess):
                proc.send_signal(signum)
        deadline = time.monotonic() + timeout
        while (alive := [proc for proc in alive if not ended(proc)]) and time.monotonic() < deadline:
            time.sleep(0.1)
    return len(family)


def ended(proc) -> bool:
    """Gone, or a zombie (what is left of a process until its parent, often init, reaps it)."""
    import psutil

    try:
        return proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _in_cluster(address: str, cmdline: list[str]) -> bool:
    """Whether a command line is one of the cluster's own: every node process but the GCS
    names its address (the raylet inside one of its arguments); the GCS, its port and host.
    Workers and agents rename themselves (ray::IDLE): they are found as the raylets' children."""
    host, port = address.rsplit(":", 1)
    words = set(" ".join(cmdline).split())
    if f"--gcs-address={address}" in words:
        return True
    gcs = {f"--gcs_server_port={port}", f"--node-ip-address={host}"}
    return bool(cmdline) and cmdline[0].endswith("gcs_server") and gcs <= words


def _descendants(proc) -> list:
    import psutil

    try:
        return proc.children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def cluster_status(address: str) -> str:
    out = subprocess.run([_ray_cli(), "status", "--address", address], capture_output=True, text=True, check=False)
    return out.stdout if out.returncode == 0 else f"no cluster at {address}: {out.stderr.strip().splitlines()[-1:]}"

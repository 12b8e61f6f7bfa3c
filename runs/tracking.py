"""The MLflow adapter: the only module that imports mlflow.

One parent run per sweep, one nested child run per trial, addressed by run id through
``MlflowClient``: no process-global active run, so a failing trial cannot leave the
wrong run open, and MLflow's exit hook (which ends a fluent API's active run FINISHED
whatever happened, mlflow#3932) has nothing to mark as a success. The embedded store is
SQLite plus a folder of artifacts under the sweep's store directory; ``uri`` points at a
tracking server instead.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NOTE

os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")  # the sweep prints where to look
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # a bar per download fills logs
logging.getLogger("mlflow").setLevel(logging.WARNING)
logging.getLogger("alembic").setLevel(logging.WARNING)
# It warns on every pickled model; pickle it is, since torch.export (its "pt2") does not
# take every mixer (complex FFTs), and a model is only ever loaded from one's own store.
logging.getLogger("mlflow.pytorch").setLevel(logging.ERROR)

SWEEP_TAG = "archsweep.sweep"
TRIAL_TAG = "archsweep.trial"
PARETO_TAG = "archsweep.pareto"
STATE_TAG = "archsweep.state"
REASON_TAG = "archsweep.reason"
MODEL_TAG = "archsweep.model"  # the artifact path of the trial's logged MLflow model
MODEL_PATH = "model"
BLOCKS = Path(__file__).resolve().parents[1] / "blocks"  # travels with a logged model: it unpickles from it


ATTEMPT_TAG = "archsweep.attempt_key"  # which backend trial owns a run (a retry continues it)


def with_credentials(uri: str, user: str | None, password: str | None) -> str:
    """The URI MLflow's client opens. A server gets user and password through
    MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD, set in this process only; a
    database URI needs them in itself (kept in memory, never printed or logged)."""
    if not (user or password):
        return uri
    parts = urllib.parse.urlsplit(uri)
    if parts.scheme in ("http", "https"):
        os.environ["MLFLOW_TRACKING_USERNAME"] = user or ""
        os.environ["MLFLOW_TRACKING_PASSWORD"] = password or ""
        return uri
    login = urllib.parse.quote(user or "", safe="") + (":" + urllib.parse.quote(password, safe="") if password else "")
    return parts._replace(netloc=f"{login}@{parts.netloc}").geturl()


def embedded_uri(store: Path) -> str:
    return f"sqlite:///{(store / 'mlflow.db').resolve()}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:
    """In the server's process: SIGTERM when the sweep's process dies, even by SIGKILL
    (``mlflow server`` forwards it to its web server), so no server outlives its sweep."""
    if sys.platform == "linux":
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@contextmanager
def private_server(store: Path, timeout: float = 120.0) -> Iterator[str]:
    """An ``mlflow server`` on 127.0.0.1 over the embedded store, for worker processes
    that log runs themselves: one process owns the SQLite file, so concurrent trials do
    not meet SQLite's "database is locked". Yields its URI; stopped on exit."""
    store.mkdir(parents=True, exist_ok=True)
    port = free_port()
    cmd = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    artifacts = (store / "artifacts").resolve().as_uri()
    cmd += ["--backend-store-uri", embedded_uri(store), "--default-artifact-root", artifacts]
    log = open(store / "mlflow-server.log", "ab")  # noqa: SIM115 (closed below)
    # No job runner (GenAI evaluation jobs: a dozen processes this store never uses).
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    proc = subprocess.Popen(
        cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True, preexec_fn=_die_with_parent
    )
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + timeout
        while True:
            try:
                urllib.request.urlopen(f"{uri}/health", timeout=2).close()
                break
            except OSError:
                if proc.poll() is not None or time.time() > deadline:
                    raise RuntimeError(f"the MLflow server did not start; see {store / 'mlflow-server.log'}") from None
                time.sleep(0.3)
        yield uri
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


def experiment_names(uri: str) -> list[str]:
    """The experiments of a store or server, MLflow's empty "Default" left out."""
    found = MlflowClient(uri).search_experiments()
    return [e.name for e in found if not (e.name == "Default" and e.experiment_id == "0")]


def get_run(uri: str, run_id: str):
    """A run by id; LookupError when the store has none."""
    from mlflow.exceptions import MlflowException

    try:
        return MlflowClient(uri).get_run(run_id)
    except MlflowException:
        raise LookupError(run_id) from None


def download_model(uri: str, run_id: str, into: Path) -> Path:
    """The run's logged model folder (see Tracker.log_model), downloaded into ``into``."""
    return Path(MlflowClient(uri).download_artifacts(run_id, MODEL_PATH, str(into)))


class Tracker:
    def __init__(
        self,
        uri: str,
        experiment: str,
        artifacts: Path | None = None,
        credentials: tuple = (None, None),
        create: bool = True,
    ) -> None:
        """The ``experiment`` in the store at ``uri``, created unless ``create`` is False
        (then LookupError when it does not exist)."""
        self.client = MlflowClient(with_credentials(uri, *credentials))
        found = self.client.get_experiment_by_name(experiment)
        if found is None and not create:
            raise LookupError(experiment)
        if found is None:
            location = artifacts.resolve().as_uri() if artifacts is not None else None
            # The UI opens it in its "Model training" mode (runs, metrics), not the GenAI one.
            tags = {"mlflow.experimentKind": "custom_model_development"}
            self.experiment_id = self.client.create_experiment(experiment, artifact_location=location, tags=tags)
        else:
            self.experiment_id = found.experiment_id

    # -- the sweep ---------------------------------------------------------------------

    def sweep_run(self, sweep: str, name: str, tags: Mapping[str, str], description: str = "") -> str:
        """The sweep's parent run: the existing one when resuming, else a new one."""
        runs = self.client.search_runs(
            [self.experiment_id], filter_string=f"tags.`{SWEEP_TAG}` = '{sweep}' and tags.`{TRIAL_TAG}` = 'parent'"
        )
        if runs:
            run_id = runs[0].info.run_id
            self.client.update_run(run_id, status="RUNNING")
            return run_id
        all_tags = {SWEEP_TAG: sweep, TRIAL_TAG: "parent", **tags}
        if description:
            all_tags[MLFLOW_RUN_NOTE] = description
        return self.client.create_run(self.experiment_id, run_name=name, tags=all_tags).info.run_id

    def sweeps(self) -> list:
        """The experiment's sweep (parent) runs, the latest first."""
        query = f"tags.`{TRIAL_TAG}` = 'parent'"
        return self.client.search_runs([self.experiment_id], filter_string=query, order_by=["start_time DESC"])

    def end_sweep(self, run_id: str, status: str) -> None:
        self.client.set_terminated(run_id, status=status)

    def log_params(self, run_id: str, params: Mapping[str, object]) -> None:
        items = [Param(k, str(v)[:6000]) for k, v in params.items()]
        for i in range(0, len(items), 100):
            self.client.log_batch(run_id, params=items[i : i + 100])

    def log_text(self, run_id: str, text: str, name: str) -> None:
        self.client.log_text(run_id, text, name)

    def log_figure(self, run_id: str, figure, name: str) -> None:
        self.client.log_figure(run_id, figure, name)

    def tags(self, run_id: str) -> dict[str, str]:
        return dict(self.client.get_run(run_id).data.tags)

    def set_tags(self, run_id: str, tags: Mapping[str, str]) -> None:
        self.client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    # -- models ------------------------------------------------------------------------

    def log_model(
        self, run_id: str, model, example: tuple, files: Mapping[str, bytes], register: str | None = None
    ) -> None:
        """``model`` (an nn.Module) as an MLflow PyTorch model at ``model/`` of the run, its
        signature from ``example`` (inputs, outputs as arrays), ``files`` (name -> content)
        beside it; and a new version of the registered model ``register`` if named."""
        import mlflow.pytorch
        import torch
        from mlflow.models import infer_signature

        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / MODEL_PATH
            mlflow.pytorch.save_model(
                model,
                path,
                serialization_format="pickle",
                code_paths=[str(BLOCKS)],
                # Given, not inferred: inferring them loads the model in a subprocess (seconds).
                pip_requirements=[f"torch=={torch.__version__.split('+')[0]}", "pyyaml"],
                signature=infer_signature(*example),
            )
            for name, content in files.items():
                (path / name).write_bytes(content)
            self.client.log_artifacts(run_id, str(path), MODEL_PATH)
        if register:
            self._register(run_id, register)
        self.set_tags(run_id, {MODEL_TAG: MODEL_PATH})

    def _register(self, run_id: str, name: str) -> None:
        from mlflow.exceptions import MlflowException

        try:
            self.client.create_registered_model(name)
        except MlflowException as err:
            if err.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        source = f"{self.client.get_run(run_id).info.artifact_uri}/{MODEL_PATH}"
        self.client.create_model_version(name, source, run_id=run_id)

    # -- trials ------------------------------------------------------------------------

    def trial_run(
        self, parent: str, sweep: str, number: int, name: str, params: Mapping, tags: Mapping, key: str = ""
    ) -> str:
        """A new child run; with ``key`` (the backend's id of this trial) an existing run
        of that key is continued instead, so a retried trial keeps a single run."""
        if key:
            found = self.runs_with_key(sweep, key)
            if found:
                run_id = found[0].info.run_id
                self.client.update_run(run_id, status="RUNNING")
                return run_id
            tags = {**tags, ATTEMPT_TAG: key}
        run = self.client.create_run(
            self.experiment_id,
            run_name=name,
            tags={MLFLOW_PARENT_RUN_ID: parent, SWEEP_TAG: sweep, TRIAL_TAG: str(number), **tags},
        )
        self.log_params(run.info.run_id, params)
        return run.info.run_id

    def log_metrics(self, run_id: str, metrics: Mapping[str, float], step: int = 0) -> None:
        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, step) for k, v in metrics.items()]
        self.client.log_batch(run_id, metrics=batch)

    def end_trial(self, run_id: str, state: str, reason: str = "") -> None:
        """``state``: complete, pruned, infeasible, failed or interrupted."""
        tags = {STATE_TAG: state}
        if reason:
            tags[REASON_TAG] = reason[:5000]
        self.set_tags(run_id, tags)
        status = {"failed": "FAILED", "interrupted": "KILLED"}.get(state, "FINISHED")
        self.client.set_terminated(run_id, status=status)

    def trial_runs(self, sweep: str) -> list:
        """Every child run of the sweep (for resuming and reporting)."""
        query = f"tags.`{SWEEP_TAG}` = '{sweep}' and tags.`{TRIAL_TAG}` != 'parent'"
        return self.client.search_runs([self.experiment_id], filter_string=query, max_results=50000)

    def runs_with_key(self, sweep: str, key: str) -> list:
        query = f"tags.`{SWEEP_TAG}` = '{sweep}' and tags.`{ATTEMPT_TAG}` = '{key}'"
        return self.client.search_runs([self.experiment_id], filter_string=query)

    def delete_runs(self, run_ids: list[str]) -> None:
        for run_id in run_ids:
            self.client.delete_run(run_id)

    def close_orphans(self, sweep: str) -> int:
        """Runs left RUNNING by a process that died mid-trial are ended as KILLED (MLflow
        never ends the run of a SIGKILLed or OOM-killed process: it stays RUNNING)."""
        orphans = [r for r in self.trial_runs(sweep) if r.info.status == "RUNNING"]
        for run in orphans:
            self.end_trial(run.info.run_id, "interrupted", "the sweep process stopped during this trial")
        return len(orphans)

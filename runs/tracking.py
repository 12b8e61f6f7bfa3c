"""The MLflow adapter's client side, through which the rest of archsweep reads and writes
MLflow: with runs.server (the servers, started as processes of their own) the MLflow
adapter, and the only module that imports mlflow. runs.tags names archsweep's tags.

One parent run per sweep, one nested child run per trial, addressed by run id through
``MlflowClient``: no process-global active run, so a failing trial cannot leave the
wrong run open, and MLflow's exit hook (which ends a fluent API's active run FINISHED
whatever happened, mlflow#3932) has nothing to mark as a success. The embedded store is
SQLite plus a folder of artifacts under the sweep's store directory; ``uri`` points at a
tracking server instead.

Importing this module imports no mlflow and changes nothing: mlflow is imported on first
use, through ``_mlflow``, after ``mlflow_environment`` has set what it reads.
"""

from __future__ import annotations

import errno
import functools
import importlib.metadata
import logging
import os
import re
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from runs import store as stores
from runs.tags import ATTEMPT_TAG, FLAG_TAGS, MODEL_TAG, PARETO_TAG, REASON_TAG, STATE_TAG, SWEEP_TAG, TRIAL_TAG

if TYPE_CHECKING:
    from mlflow import MlflowClient

BLOCKS = Path(__file__).resolve().parents[1] / "blocks"  # travels with a logged model: it unpickles from it


def mlflow_environment() -> None:
    """Set what MLflow reads from the environment, each as a default a user may override:
    in this process before mlflow is imported (``_mlflow``), and in the tracking server
    and ``mlflow ui`` processes runs.server starts, which inherit it."""
    # MLflow 3 sends usage telemetry unless told not to (it looks up config.mlflow-telemetry.io
    # and keeps an installation id in ~/.config/mlflow): a sweep talks to loopback only. Read
    # when mlflow is imported, which is when it starts its client; a user may opt back in.
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")  # the sweep prints where to look
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # a bar per download fills logs


@functools.cache
def _mlflow():
    """mlflow, imported once ``mlflow_environment`` is set, with its loggers quietened
    (after the import, which sets the level of its own). Every use of mlflow here comes
    after this: directly, or through a Tracker or client it made."""
    mlflow_environment()
    import mlflow

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    # A failing database is reported by the sweep, in one line (see failure_line), not as MLflow's traceback.
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)
    # It warns on every pickled model. Pickle it is: it gives back the model's own class
    # (blocks' VisionModel, trainable further), where MLflow's "pt2" gives an exported graph;
    # and a model is only loaded from one's own store.
    logging.getLogger("mlflow.pytorch").setLevel(logging.ERROR)
    return mlflow


def _client(uri: str) -> MlflowClient:
    return _mlflow().MlflowClient(uri)


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


def embedded_store(store: Path) -> str:
    """The URI of the sweep's own SQLite store, created whole or not at all, and rewritten
    to where the store is now if it was moved (see runs.store).

    MLflow builds a new database's schema by some sixty Alembic migrations, committed one
    by one over seconds: a process killed among them leaves a database no later run can open
    ("table _alembic_tmp_experiments already exists"). So the schema is built in a side
    file (or copied there from the user's template: runs.store) and linked into place,
    which is atomic and never replaces a database another process made meanwhile; the
    store's lock makes the others wait for it."""
    db = store / "mlflow.db"
    store.mkdir(parents=True, exist_ok=True)
    with stores.locked(store):
        if not db.exists():
            _build(store, db)
        stores.check_intact(db)
        if stores.relocate(db, stores.artifacts_uri(store)):
            forget_locations()
    return embedded_uri(store)


def forget_locations() -> None:
    """MLflow keeps each run's artifact location, by run id, for the life of the process:
    after a store was rewritten (moved), those point at its old place. Not imported yet:
    none kept."""
    utils = sys.modules.get("mlflow.tracking._tracking_service.utils")
    if utils is not None:
        getattr(utils, "_artifact_repos_cache", {}).clear()


def _build(store: Path, db: Path) -> None:
    for stale in store.glob("mlflow.db.init-*"):  # left by a process killed while building (and its -journal)
        if not _alive(int(stale.name.split("-")[1])):
            stale.unlink(missing_ok=True)
    side = store / f"mlflow.db.init-{os.getpid()}"
    side.unlink(missing_ok=True)
    version = importlib.metadata.version("mlflow")
    if not stores.from_template(version, side, stores.artifacts_uri(store)):
        _mlflow()
        from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore  # sqlalchemy: only when building

        side_uri = f"sqlite:///{side.resolve()}"
        SqlAlchemyStore(side_uri, stores.artifacts_uri(store))
        SqlAlchemyStore._engine_map.pop(side_uri).dispose()  # nothing keeps the side file open once linked
        stores.record(side, stores.artifacts_uri(store))
        stores.keep_as_template(version, side)
    try:
        os.link(side, db)  # unlike a rename, never replaces a database
    except FileExistsError:
        pass  # made meanwhile by a process that took no lock: that one stands
    except OSError:  # a file system without hard links: the lock keeps other sweeps out
        os.replace(side, db)
        return
    side.unlink()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's: alive
        pass
    return True


def tracking_failed(err: BaseException) -> bool:
    """Whether ``err`` came from the tracking store (its database, server or artifacts),
    not from the trial being recorded."""
    import sqlite3

    import requests
    import sqlalchemy.exc

    failures = sqlalchemy.exc.SQLAlchemyError | sqlite3.Error | requests.RequestException | TrackingUnreachable
    if "mlflow" in sys.modules:  # not imported: none of its errors can exist (nor is it imported to check)
        from mlflow.exceptions import MlflowException

        failures |= MlflowException
    return isinstance(err, failures)


# What a file system says when the store cannot be written: not the trial's fault.
_STORE_ERRNOS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.EIO}


def store_failure(err: BaseException) -> BaseException | None:
    """The error in ``err``'s chain (causes and contexts) that came from the tracking store
    or the study's journal (a database error, a server, a disk that is full or read-only),
    or None. Optuna masks a journal that failed while telling a trial with an assertion of
    its own ("Should not reach."), so the chain is searched, not only ``err``."""
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if tracking_failed(err) or (isinstance(err, OSError) and err.errno in _STORE_ERRNOS):
            return err
        err = err.__cause__ or err.__context__
    return None


DAMAGED = ("malformed", "not a database", "file is encrypted")  # SQLite's words for a damaged file


def failure_line(err: BaseException) -> str:
    """A store failure in one line: SQLAlchemy appends the statement and its parameters on
    lines of their own; what failed is the first. A damaged database says what to do."""
    first = (str(err).strip().splitlines() or [""])[0]
    first = re.sub(r"^\((?:sqlite3|psycopg2?|pymysql)\.\w+\) ", "", first)
    line = f"{type(err).__name__}: {first}" if first else type(err).__name__
    if any(word in first for word in DAMAGED):
        line += "; the MLflow database is damaged: restore mlflow.db from a copy (archsweep changes nothing in it)"
    return line


class TrackingUnreachable(ConnectionError):
    """No tracking server answers at the spec's ``tracking.uri`` (runs.server.check_server);
    the message is one line."""


def experiment_names(uri: str) -> list[str]:
    """The experiments of a store or server, MLflow's empty "Default" left out."""
    found = _client(uri).search_experiments()
    return [e.name for e in found if not (e.name == "Default" and e.experiment_id == "0")]


def get_run(uri: str, run_id: str):
    """A run by id; LookupError when the store has none."""
    client = _client(uri)
    from mlflow.exceptions import MlflowException

    try:
        return client.get_run(run_id)
    except MlflowException:
        raise LookupError(run_id) from None


def pareto_runs(uri: str, experiment_id: str, sweep: str) -> list:
    """The runs of ``sweep`` tagged Pareto-optimal."""
    query = f"tags.`{SWEEP_TAG}` = '{sweep}' and tags.`{PARETO_TAG}` = 'true'"
    return _client(uri).search_runs([experiment_id], filter_string=query)


def download_model(uri: str, model_id: str, into: Path) -> Path:
    """A logged model's folder (see Tracker.log_model), downloaded into ``into``."""
    location = _client(uri).get_logged_model(model_id).artifact_location
    import mlflow.artifacts

    return Path(mlflow.artifacts.download_artifacts(artifact_uri=location, dst_path=str(into), tracking_uri=uri))


def _model_name(text: str) -> str:
    """A logged model's name: MLflow refuses / : . % and quotes in it."""
    return re.sub(r"[^A-Za-z0-9_-]+", "-", text).strip("-") or "model"


def artifact_text(client: MlflowClient, run_id: str, name: str) -> str | None:
    """A text artifact of a run, or None when it has none of that name."""
    from mlflow.exceptions import MlflowException

    with tempfile.TemporaryDirectory() as folder:
        try:
            return Path(client.download_artifacts(run_id, name, folder)).read_text()
        except (MlflowException, OSError):
            return None


def sweep_text(uri: str, sweep: str, name: str, credentials: tuple = (None, None)) -> str | None:
    """A text artifact of ``sweep``'s parent run, in whichever experiment of the store at
    ``uri`` it ran; None when the store has no such run, or the run no such artifact."""
    client = _client(with_credentials(uri, *credentials))
    experiments = [e.experiment_id for e in client.search_experiments()]
    query = f"tags.`{SWEEP_TAG}` = '{sweep}' and tags.`{TRIAL_TAG}` = 'parent'"
    parents = client.search_runs(experiments, filter_string=query) if experiments else []
    return artifact_text(client, parents[0].info.run_id, name) if parents else None


def mlflow_version() -> str:
    """The version of MLflow this process uses (recorded with a benchmark table)."""
    return _mlflow().__version__


class Tracker:
    """One experiment of a store or server: its sweeps' parent runs, their trials' runs and
    logged models. Made, it has imported mlflow (``_mlflow``); its methods import the
    entities they use from it."""

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
        self.client = _client(with_credentials(uri, *credentials))
        found = self.client.get_experiment_by_name(experiment)
        if found is None and not create:
            raise LookupError(experiment)
        if found is None:
            location = artifacts.resolve().as_uri() if artifacts is not None else None
            self.experiment_id = self.client.create_experiment(experiment, artifact_location=location)
        else:
            self.experiment_id = found.experiment_id

    # -- the sweep ---------------------------------------------------------------------

    def find_sweep(self, sweep: str):
        """The sweep's parent run, or None."""
        runs = self.client.search_runs(
            [self.experiment_id], filter_string=f"tags.`{SWEEP_TAG}` = '{sweep}' and tags.`{TRIAL_TAG}` = 'parent'"
        )
        return runs[0] if runs else None

    def sweep_run(self, sweep: str, name: str, tags: Mapping[str, str], description: str = "") -> str:
        """The sweep's parent run: the existing one when resuming, else a new one."""
        found = self.find_sweep(sweep)
        if found is not None:
            run_id = found.info.run_id
            self.client.update_run(run_id, status="RUNNING")
            return run_id
        from mlflow.utils.mlflow_tags import MLFLOW_RUN_NOTE

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
        from mlflow.entities import Param

        items = [Param(k, str(v)[:6000]) for k, v in params.items()]
        for i in range(0, len(items), 100):
            self.client.log_batch(run_id, params=items[i : i + 100])

    def log_text(self, run_id: str, text: str, name: str) -> None:
        self.client.log_text(run_id, text, name)

    def text(self, run_id: str, name: str) -> str | None:
        """A text artifact of the run, or None when it has none of that name."""
        return artifact_text(self.client, run_id, name)

    def log_figure(self, run_id: str, figure, name: str) -> None:
        self.client.log_figure(run_id, figure, name)

    def tags(self, run_id: str) -> dict[str, str]:
        return dict(self.client.get_run(run_id).data.tags)

    def set_tags(self, run_id: str, tags: Mapping[str, str]) -> None:
        from mlflow.entities import RunTag

        self.client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def delete_tag(self, run_id: str, key: str) -> None:
        if key in self.tags(run_id):
            self.client.delete_tag(run_id, key)

    # -- models ------------------------------------------------------------------------

    def log_model(
        self,
        run_id: str,
        model,
        *,
        name: str,
        example: tuple,
        files: Mapping[str, bytes],
        step: int,
        register: str | None = None,
    ) -> str:
        """``model`` (an nn.Module) as an MLflow logged model of the run (MLflow 3: the
        run's "Models" column and the experiment's Models tab), with the run's metrics
        of ``step`` linked to it, its signature from ``example`` (input, output arrays)
        and ``files`` (name -> content) in its folder; a new version of the registered
        model ``register`` if named. Returns the model id, also the run's tag
        archsweep.model."""
        import mlflow.pytorch
        import torch
        from mlflow.entities import LoggedModelOutput
        from mlflow.models import Model, infer_signature

        logged = self.client.create_logged_model(self.experiment_id, name=_model_name(name), source_run_id=run_id)
        model_id = logged.model_id
        self.client.log_outputs(run_id, [LoggedModelOutput(model_id, step=0)])
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "model"
            mlflow.pytorch.save_model(
                model,
                path,
                mlflow_model=Model(artifact_path=logged.artifact_location, run_id=run_id, model_id=model_id),
                serialization_format="pickle",
                code_paths=[str(BLOCKS)],
                # Given, not inferred: inferring them loads the model in a subprocess (seconds).
                pip_requirements=[f"torch=={torch.__version__.split('+')[0]}", "pyyaml"],
                signature=infer_signature(*example),
            )
            for file, content in files.items():
                (path / file).write_bytes(content)
            self.client.log_model_artifacts(model_id, str(path))
        self._link_metrics(run_id, model_id, step)
        self.client.finalize_logged_model(model_id, "READY")
        if register:
            self._register(run_id, logged, register)
        self.set_tags(run_id, {MODEL_TAG: model_id})
        return model_id

    def _link_metrics(self, run_id: str, model_id: str, step: int) -> None:
        """The run's metrics of ``step``, logged again as they are plus the model id (as
        MLflow's own log_model does): the store keeps one entry each, now the model's too."""
        from mlflow.entities import Metric

        linked = [
            Metric(m.key, m.value, m.timestamp, m.step, model_id=model_id)
            for key in self.client.get_run(run_id).data.metrics
            for m in self.client.get_metric_history(run_id, key)
            if m.step == step
        ]
        self.client.log_batch(run_id, metrics=linked)

    def _register(self, run_id: str, logged, name: str) -> None:
        from mlflow.exceptions import MlflowException

        try:
            self.client.create_registered_model(name)
        except MlflowException as err:
            if err.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        # Its artifact location, not models:/<id>: that one the registry resolves through
        # the process-wide tracking URI, not this client's store.
        self.client.create_model_version(name, logged.artifact_location, run_id=run_id, model_id=logged.model_id)

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
        from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

        run = self.client.create_run(
            self.experiment_id,
            run_name=name,
            tags={MLFLOW_PARENT_RUN_ID: parent, SWEEP_TAG: sweep, TRIAL_TAG: str(number), **tags},
        )
        self.log_params(run.info.run_id, params)
        return run.info.run_id

    def log_metrics(self, run_id: str, metrics: Mapping[str, float], step: int = 0) -> None:
        from mlflow.entities import Metric, RunTag

        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, step) for k, v in metrics.items()]
        flags = [RunTag(tag, str(bool(metrics[k])).lower()) for k, tag in FLAG_TAGS.items() if k in metrics]
        self.client.log_batch(run_id, metrics=batch, tags=flags)

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

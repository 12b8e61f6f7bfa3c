"""The MLflow adapter: the only module that imports mlflow.

One parent run per sweep, one nested child run per trial, addressed by run id through
``MlflowClient`` (no process-global active run, so a failing trial cannot leave the
wrong run open). The embedded store is SQLite plus a folder of artifacts under the
sweep's store directory; ``uri`` points at a tracking server instead.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from pathlib import Path

from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NOTE

logging.getLogger("mlflow").setLevel(logging.WARNING)
logging.getLogger("alembic").setLevel(logging.WARNING)

SWEEP_TAG = "archsweep.sweep"
TRIAL_TAG = "archsweep.trial"
PARETO_TAG = "archsweep.pareto"
STATE_TAG = "archsweep.state"
REASON_TAG = "archsweep.reason"


def embedded_uri(store: Path) -> str:
    return f"sqlite:///{(store / 'mlflow.db').resolve()}"


class Tracker:
    def __init__(self, uri: str, experiment: str, artifacts: Path | None = None) -> None:
        self.client = MlflowClient(uri)
        found = self.client.get_experiment_by_name(experiment)
        if found is None:
            location = artifacts.resolve().as_uri() if artifacts is not None else None
            self.experiment_id = self.client.create_experiment(experiment, artifact_location=location)
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

    def set_tags(self, run_id: str, tags: Mapping[str, str]) -> None:
        self.client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    # -- trials ------------------------------------------------------------------------

    def trial_run(self, parent: str, sweep: str, number: int, name: str, params: Mapping, tags: Mapping) -> str:
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

    def close_orphans(self, sweep: str) -> int:
        """Runs left RUNNING by a process that died mid-trial are ended as KILLED."""
        orphans = [r for r in self.trial_runs(sweep) if r.info.status == "RUNNING"]
        for run in orphans:
            self.end_trial(run.info.run_id, "interrupted", "the sweep process stopped during this trial")
        return len(orphans)

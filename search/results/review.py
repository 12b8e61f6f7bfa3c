"""After a sweep: its Pareto table read back from MLflow (``main.py show``) and a trial's
logged model taken away (``main.py export``). Errors are ``ReviewError``: one line each,
nothing written."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from blocks.builder import did_you_mean
from runs import store as stores
from runs.metrics import Objective
from runs.server import check_server
from runs.tags import ARCH_TAG, MODEL_TAG, OBJECTIVES_TAG, PARETO_TAG, SWEEP_TAG, TRIAL_TAG
from runs.tracking import (
    Tracker,
    TrackingUnreachable,
    download_model,
    experiment_names,
    forget_locations,
    get_run,
    pareto_runs,
)


class ReviewError(Exception):
    """A one-line reason the command could not do what was asked."""


@contextmanager
def opened(store: str | None, uri: str | None) -> Iterator[str]:
    """The tracking URI of ``--uri``, or of the embedded store in ``--store``: rewritten
    first if the store was moved, or a rewritten copy if it cannot be written."""
    if uri:
        if uri.startswith(("http://", "https://")):
            try:
                check_server(uri)
            except TrackingUnreachable as err:
                raise ReviewError(str(err)) from None
        yield uri
        return
    folder = Path(store or "out")
    if not (folder / "mlflow.db").exists():
        raise ReviewError(f"no sweep store at {folder}/mlflow.db; run a sweep first, or pass --store DIR or --uri URI")
    with stores.reading(folder) as db:
        forget_locations()  # of a store this process saw before it moved
        yield f"sqlite:///{db.resolve()}"


def pick_experiment(uri: str, name: str | None) -> str:
    names = experiment_names(uri)
    if name is not None:
        if name not in names:
            raise ReviewError(f"no experiment {name!r}{did_you_mean(name, names)}; there are: {', '.join(names)}")
        return name
    if len(names) != 1:
        listed = ", ".join(names) or "none"
        raise ReviewError(f"name the experiment to show; the store has {len(names)}: {listed}")
    return names[0]


def front(uri: str, experiment: str) -> tuple[str, list[Objective], list[dict]]:
    """(the latest sweep's name, its objectives, its Pareto-optimal trials as rows)."""
    tracker = Tracker(uri, experiment, create=False)
    sweeps = tracker.sweeps()
    if not sweeps:
        raise ReviewError(f"experiment {experiment!r} holds no archsweep sweep")
    parent = sweeps[0]
    if parent.info.status == "RUNNING":
        raise ReviewError(f"sweep {parent.info.run_name!r} is still running (or was killed: run it again to finish it)")
    tags = parent.data.tags
    objectives = [Objective(*pair.split(":")) for pair in tags.get(OBJECTIVES_TAG, "val_accuracy:max").split(",")]
    rows = [
        {
            "trial": int(run.data.tags[TRIAL_TAG]),
            "arch": run.data.tags.get(ARCH_TAG, ""),
            "run_id": run.info.run_id,
            "model": MODEL_TAG in run.data.tags,
            **run.data.metrics,
        }
        for run in tracker.trial_runs(tags[SWEEP_TAG])
        if run.data.tags.get(PARETO_TAG) == "true"
    ]
    return parent.info.run_name, objectives, rows


def export(uri: str, run_id: str, out: Path) -> Path:
    """The run's logged model folder copied to ``out`` (which must not exist or be empty):
    the MLflow model (``mlflow.pytorch.load_model(out)``), arch.yaml, weights.pt, probe.pt."""
    try:
        run = get_run(uri, run_id)
    except LookupError:
        raise ReviewError(f"no run {run_id!r} in {uri}") from None
    if run.data.tags.get(TRIAL_TAG) == "parent":
        raise ReviewError(f"run {run_id} is the parent run of sweep {run.info.run_name!r}; {_front_ids(uri, run)}")
    if MODEL_TAG not in run.data.tags:
        why = "it is not on the Pareto front" if run.data.tags.get(PARETO_TAG) != "true" else "the sweep logged none"
        raise ReviewError(
            f"run {run_id} ({run.info.run_name}) has no logged model: {why};"
            f" a sweep run with tracking.models: [{run.data.tags.get(TRIAL_TAG, 'N')}] (or all) logs it"
        )
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ReviewError(f"{out} exists and is not an empty folder; choose another --out")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}-") as staging:
            folder = download_model(uri, run.data.tags[MODEL_TAG], Path(staging))
            if out.exists():
                out.rmdir()
            shutil.move(str(folder), out)  # complete or not there at all
    except OSError as err:
        raise ReviewError(f"cannot write {out} ({err.strerror or err}); choose another --out") from None
    return out


def _front_ids(uri: str, parent) -> str:
    """The run ids of a sweep's Pareto trials, to export one of them instead of the parent."""
    runs = pareto_runs(uri, parent.info.experiment_id, parent.data.tags.get(SWEEP_TAG, ""))
    if not runs:
        return "export takes a trial's run id (python main.py show lists them)"
    listed = ", ".join(f"{r.info.run_id} ({r.info.run_name.split(' ')[0]})" for r in runs)
    return f"export takes a trial's run id; its front's: {listed}"

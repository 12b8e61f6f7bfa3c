"""archsweep from Python, for notebooks and scripts: what the command line does, through
the same code (``main.py`` calls ``load``, ``validate`` and ``execute``).

    import archsweep  # installed (pip install .); in the checkout: import api as archsweep
    sweep = archsweep.run("quickstart", overrides=["search.trials=4"])
    sweep.front  # the Pareto front as a pandas DataFrame, one row per trial with its run id

- ``load(spec, overrides)``: a ``Spec`` from a YAML file, a bundled space's name
  (``quickstart``, ``tables/digits``, ``reproduce/vix_table3``) or a dict, with ``-o``
  overrides. Raises ``SpecError`` (``.issues``: every problem, one line each).
- ``validate(spec)``: ``validate``'s report as data (``SpecReport``; ``.to_json()`` is
  what ``validate --json`` prints).
- ``run(spec)``: run (or resume) the sweep on its backend (``backend.kind`` local or
  ray) and read it back; ``open_sweep(store)`` reads a finished one.
- ``Sweep``: ``trials`` (every trial: state, reason, params, metrics; the parent run's
  trials.csv) and ``front`` (``show``'s rows) as DataFrames, ``hypervolume``, ``metrics``,
  ``load_model(run_id)`` (a logged model, built from its arch.yaml and weights).
"""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import yaml

from blocks import build, from_dict
from search.spec import Spec, SpecError
from search.spec import load as load_file
from search.sweep.validation import SpecReport, spec_report
from search.sweep.warm import completed_params

if TYPE_CHECKING:
    import pandas

# What running or reading a sweep needs (a backend, MLflow, pandas) is imported by the
# functions that do it: main.py loads this module for every command, and `validate` must
# stay small (tests/search/spec/test_file_fuzz.py bounds its memory).

# Beside this file both in the checkout and installed (setup.py ships spaces/ in the package).
SPACES = Path(__file__).resolve().parent / "spaces"


class SweepRefused(Exception):
    """The sweep did not start: busy, its store or data refused, nothing to resume (exit 2)."""


class SweepInterrupted(Exception):
    """Interrupted (Ctrl-C); its parent run is ended KILLED. Run it again to resume (exit 130)."""


class StoreFailed(Exception):
    """The tracking store or journal failed during the sweep (exit 4): ``errors`` say what
    failed and what was left, ``hint`` how to resume (None: the store is damaged)."""

    def __init__(self, errors: list[str], hint: str | None) -> None:
        super().__init__("; ".join(errors))
        self.errors, self.hint = errors, hint


def spec_path(spec: str | Path) -> Path:
    """The spec file: ``spec`` itself when it exists, else the bundled space of that name
    (``quickstart`` or ``quickstart.yaml``, ``tables/digits``), else ``spec`` (which ``load`` refuses)."""
    path = Path(spec)
    if path.exists() or path.is_absolute():
        return path
    for candidate in (SPACES / path, SPACES / f"{path}.yaml"):
        if candidate.is_file():
            return candidate
    return path


def load(
    spec: str | Path | Mapping | Spec,
    overrides: Sequence[str] = (),
    *,
    smoke: bool = False,
    check_data: bool = True,
    base: str | Path = ".",
) -> Spec:
    """The validated spec (``search.spec.load``) of a file, a bundled space's name or a
    dict (its relative paths, ``extends`` and ``search.replay`` among them, are read from
    ``base``; a dict without a ``name`` names the sweep "sweep"); ``overrides`` as ``-o``
    takes them (``search.trials=4``). Its warnings are in
    ``.warnings``. Raises ``SpecError``."""
    if isinstance(spec, Spec):
        if overrides or smoke:
            raise ValueError("overrides and smoke apply to a spec file or dict, not to a loaded Spec")
        return spec
    if isinstance(spec, Mapping):
        # The name goes into the YAML, never into the file's path (it is checked as an identifier there).
        data = {"name": "sweep", **spec}
        handle, name = tempfile.mkstemp(dir=base, prefix=".archsweep-spec-", suffix=".yaml")
        try:
            with os.fdopen(handle, "w") as out:
                yaml.safe_dump(data, out, sort_keys=False)
            return load_file(name, list(overrides), smoke=smoke, check_data=check_data, trial_params=completed_params)
        finally:
            os.unlink(name)
    return load_file(
        spec_path(spec), list(overrides), smoke=smoke, check_data=check_data, trial_params=completed_params
    )


def validate(
    spec: str | Path | Mapping | Spec, overrides: Sequence[str] = (), *, samples: int = 5, seed: int = 0
) -> SpecReport:
    """``validate``'s report: the space's dimensions and size, ``samples`` architectures
    drawn with ``seed`` (or an ablation's arms) with their cost or refusals, and what a run
    would continue in the store. Nothing is trained or written. Raises ``SpecError``."""
    if not isinstance(spec, Spec):
        spec = load(spec, overrides, check_data=False)
    return spec_report(spec, samples=samples, seed=seed)


def execute(
    spec: Spec,
    *,
    device: str | None = None,
    resume: bool = False,
    on_change: Callable | None = None,
    on_start: Callable | None = None,
    running: AbstractContextManager | None = None,
):
    """Run (or resume) ``spec``'s sweep on its backend; returns (the finished backend's
    sweep, its front rows). ``on_change`` sees the live progress, ``on_start(sweep)`` is
    called once it is open, ``running`` is entered around the trials (the CLI's live view).
    Raises SweepRefused, SweepInterrupted or StoreFailed."""
    from runs.data import DataError
    from runs.store import StoreError
    from runs.tracking import failure_line, store_failure
    from search.backends import backend_for
    from search.sweep.base import SweepBusy, TrackingFailed

    sweep = backend_for(spec.backend.kind)(spec, device=device, on_change=on_change or (lambda progress: None))
    if resume and not sweep.resumable():
        raise SweepRefused(f"--resume: sweep {spec.name} has no saved state in {spec.store} to resume")
    try:
        try:
            sweep.open()
        except (SweepBusy, StoreError) as refused:
            raise SweepRefused(str(refused)) from None
        except DataError as err:  # changed since it was validated: refused before anything is written
            raise SweepRefused(f"{spec.file}: data.path: {err}") from None
        if on_start is not None:
            on_start(sweep)
        try:
            with running or nullcontext():
                sweep.run()
        except KeyboardInterrupt:
            sweep.finish("KILLED")
            raise SweepInterrupted(f"sweep {spec.name} interrupted; run it again to resume") from None
        return sweep, sweep.finish()
    except TrackingFailed as err:
        raise _abandoned(sweep, f"in {err}; that trial is not counted") from None
    except (SweepRefused, SweepInterrupted):
        raise
    except Exception as err:
        cause = store_failure(err)
        if cause is None:
            raise
        raise _abandoned(sweep, failure_line(cause)) from None
    finally:
        sweep.close()


def _abandoned(sweep, what: str) -> StoreFailed:
    """The tracking store or the journal failed: the sweep's runs are ended where the store
    still takes it (a rerun ends the others and resumes); the error that says so."""
    left = sweep.abandon()
    errors = [f"the sweep's store failed: {what}", *([left] if left else [])]
    hint = f"run the same command again to resume once the store ({sweep.store}) can be written"
    return StoreFailed(errors, None if "damaged" in what else hint)


def run(
    spec: str | Path | Mapping | Spec,
    overrides: Sequence[str] = (),
    *,
    device: str | None = None,
    resume: bool = False,
    smoke: bool = False,
) -> Sweep:
    """Run (or resume: a finished sweep's trials are kept) the sweep, quietly, and read it
    back from its store (``open_sweep``). ``-o backend.kind=ray`` runs it on Ray."""
    spec = load(spec, overrides, smoke=smoke)
    execute(spec, device=device, resume=resume)
    return open_sweep(spec.store, experiment=spec.experiment, uri=spec.tracking_uri)


@dataclass(frozen=True)
class Sweep:
    """A finished sweep read back from MLflow (the latest sweep of its experiment)."""

    name: str
    experiment: str
    run_id: str  # the parent run's
    objectives: list[str]  # ``metric:direction``
    trials: pandas.DataFrame = field(repr=False)  # every trial, whatever its state (trials.csv)
    front: pandas.DataFrame = field(repr=False)  # the Pareto-optimal trials, as ``show`` lists them
    metrics: dict[str, float] = field(repr=False)  # the parent run's: hypervolume, pareto_size, trials_*
    store: str | None = None
    uri: str | None = None

    @property
    def hypervolume(self) -> float | None:
        return self.metrics.get("hypervolume")

    def load_model(self, run_id: str | int) -> torch.nn.Module:
        """A trial's logged model (``export``'s folder: arch.yaml and weights.pt), in eval
        mode; ``run_id`` or the trial's number. Raises ``review.ReviewError`` for a trial
        without a logged model (the front's are logged by default)."""
        from search.results import review

        if isinstance(run_id, int):
            run_id = str(self.trials.loc[self.trials["trial"] == run_id, "run_id"].iloc[0])
        with review.opened(self.store, self.uri) as uri, tempfile.TemporaryDirectory() as folder:
            out = review.export(uri, run_id, Path(folder) / "model")
            model = build(from_dict(yaml.safe_load((out / "arch.yaml").read_text())))
            model.load_state_dict(torch.load(out / "weights.pt", weights_only=True))
        return model.eval()


def open_sweep(store: str | Path | None = "out", *, experiment: str | None = None, uri: str | None = None) -> Sweep:
    """The latest sweep of ``experiment`` (default: the store's only one) in the store
    folder (a spec's ``tracking.dir``) or at the tracking server ``uri``. Raises
    ``review.ReviewError``."""
    import pandas as pd

    from runs.tracking import Tracker
    from search.results import review

    store = None if store is None else str(store)
    with review.opened(store, uri) as where:
        experiment = review.pick_experiment(where, experiment)
        name, objectives, rows = review.front(where, experiment)
        tracker = Tracker(where, experiment, create=False)
        parent = tracker.sweeps()[0]
        text = tracker.text(parent.info.run_id, "trials.csv")
    trials = pd.read_csv(io.StringIO(text)) if text else pd.DataFrame()
    front = pd.DataFrame(rows).sort_values("trial", ignore_index=True) if rows else pd.DataFrame()
    return Sweep(
        name=name,
        experiment=experiment,
        run_id=parent.info.run_id,
        objectives=[f"{o.metric}:{o.direction}" for o in objectives],
        trials=trials,
        front=front,
        metrics=dict(parent.data.metrics),
        store=store,
        uri=uri,
    )


__all__ = [
    "SPACES",
    "SpecError",
    "SpecReport",
    "StoreFailed",
    "Sweep",
    "SweepInterrupted",
    "SweepRefused",
    "execute",
    "load",
    "open_sweep",
    "run",
    "spec_path",
    "validate",
]

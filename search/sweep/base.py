"""What every backend shares around its trials: the sweep's parent run, the live
progress, and the end of a sweep (Pareto tags, CSV, plots, models, ablation report).

A backend subclasses ``Sweep``, fills ``self.study`` (``search.sweep.study``) and runs
each trial through ``search.sweep.pipeline``; ``ended`` counts a trial for the view.
"""

from __future__ import annotations

import io
import subprocess
from abc import ABC, abstractmethod
from pathlib import Path

import torch
import yaml

from runs.journal import journal_path, journal_storage
from runs.metrics import METRICS
from runs.server import check_server
from runs.tags import (
    BACKEND_TAG,
    DEVICE_TAG,
    GIT_COMMIT_TAG,
    HYPERVOLUME_REF_TAG,
    MODEL_ERROR_TAG,
    MODEL_TAG,
    OBJECTIVES_TAG,
    OUTSIDE_TAG,
    PARETO_TAG,
    SAMPLER_TAG,
    SPEC_SHA_TAG,
    STOPPED_TAG,
)
from runs.tracking import Tracker, embedded_store
from runs.trial import model_files, rebuild
from search.results import pareto, report, stats
from search.results.progress import COUNTERS, Progress
from search.spec import Spec
from search.sweep import amend, preflight
from search.sweep.study import feasible, state_of


class SweepBusy(Exception):
    """Another process runs this sweep now; the message says which."""


class TrackingFailed(Exception):
    """The tracking store failed while recording a trial: the sweep stopped, that trial
    uncounted (the next run of the sweep runs it again)."""


def _git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=False)
        return out.stdout.strip() or "unknown"
    except OSError:
        return "unknown"


class Sweep(ABC):
    """A sweep on some backend (``search.backends.BACKENDS`` names each backend's class).
    What every backend shares is here; a backend implements the four abstract methods,
    and its caller goes: ``open``, ``remaining``, ``run``, ``finish``, and ``close`` always
    (``abandon`` instead of ``finish`` when the store failed)."""

    def __init__(self, spec: Spec, *, device: str | None = None, on_change=lambda progress: None) -> None:
        self.spec, self.on_change = spec, on_change
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.store = Path(spec.store)
        self.progress = Progress(spec.search.trials)
        self.model_errors: list[str] = []  # models that could not be logged, and why
        self.tracking_failure = ""  # why the tracking store stopped the sweep (see TrackingFailed)
        self.amendment = None  # an amended resume's plan (search.sweep.amend), set by preflight
        self.stopped = ""  # why the sweep stopped before its budget was used up (see stopped_early)

    @abstractmethod
    def resumable(self) -> bool:
        """Whether a stopped sweep of this spec left state to continue from."""

    @abstractmethod
    def open(self) -> None:
        """Refuse what must not run (``preflight``), then open the study, the data the
        trials need and the tracking (``open_tracking``): nothing runs yet."""

    @abstractmethod
    def remaining(self) -> int:
        """The trials still to run of the spec's budget (``search.sweep.budget``: distinct
        architectures; a repeat is answered free): none when the sweep stops short of it
        (its space exhausted, its sampler only redrawing)."""

    @abstractmethod
    def run(self) -> None:
        """Run the remaining trials, or fewer when the space is exhausted or the sampler only
        redraws (``stopped_early``). KeyboardInterrupt after Ctrl-C, once every running
        trial is recorded; TrackingFailed when the store failed under a trial."""

    def close(self) -> None:  # noqa: B027 (a backend that starts nothing has nothing to stop)
        """Stop whatever the backend started (servers, runtimes)."""

    def preflight(self) -> None:
        """Refuse (StoreError), before anything is written, a sweep that would lose or mix its
        record: its MLflow store or journal gone, its spec changed, a link out of the store."""
        preflight.check(self)

    def open_tracking(self, uri: str | None = None) -> None:
        """The sweep's parent run (found again when resuming) with the resolved spec."""
        spec = self.spec
        uri = uri or spec.tracking_uri
        if uri and uri != spec.tracking_uri:  # a private server over the embedded store
            self.tracker = Tracker(uri, spec.experiment, artifacts=self.store / "artifacts")
        elif uri:  # a server of the user's: it decides where artifacts go
            if uri.startswith(("http://", "https://")):
                check_server(uri)  # else MLflow's client retries for minutes, silent
            self.tracker = Tracker(uri, spec.experiment, credentials=(spec.tracking_user, spec.tracking_password))
        else:
            self.tracker = Tracker(embedded_store(self.store), spec.experiment, artifacts=self.store / "artifacts")
        self.tracker.close_orphans(spec.name)
        self.parent = self.tracker.sweep_run(
            spec.name,
            spec.name,
            {
                SPEC_SHA_TAG: spec.sha,
                GIT_COMMIT_TAG: _git_commit(),
                BACKEND_TAG: spec.backend.kind,
                SAMPLER_TAG: spec.search.sampler,
                DEVICE_TAG: str(self.device),
                OBJECTIVES_TAG: ",".join(f"{o.metric}:{o.direction}" for o in spec.objectives),
            },
            spec.description,
        )
        # As run this time (preflight refused any change but in what may change): file and hash agree.
        if self.amendment is not None:  # before spec.yaml: until it is written, a rerun redoes the amendment
            self._record_amendment()
        self.tracker.log_text(self.parent, yaml.safe_dump(dict(spec.resolved), sort_keys=False), "spec.yaml")
        self.tracker.set_tags(self.parent, {SPEC_SHA_TAG: spec.sha})
        if self.amendment is not None:  # recorded: a rerun no longer starts it over
            amend.settle(journal_storage(journal_path(self.store, spec.name)), self.amendment.archive)

    def _record_amendment(self) -> None:
        """The amendment on the parent run, appended to ``amendments.txt`` (every one, in
        order; once, however often a crash made it run), and the runs of earlier trials
        outside the amended space tagged with the reason."""
        plan = self.amendment
        earlier = self.tracker.text(self.parent, "amendments.txt") or ""
        if f"[{plan.archive}]" not in earlier:
            number = earlier.count("\n## amendment ") + 1
            entry = f"\n## amendment {number} [{plan.archive}]: the earlier study is kept as {plan.archive}\n"
            self.tracker.log_text(self.parent, earlier + entry + plan.as_text(), "amendments.txt")
        runs = {t.number: t.user_attrs.get("mlflow_run_id") for t in self.trials_so_far()}
        for number, why in plan.outside.items():
            if runs.get(number):
                self.tracker.set_tags(runs[number], {OUTSIDE_TAG: why})
        for number in plan.returning:  # back inside: an earlier amendment had put it outside
            if runs.get(number):
                self.tracker.delete_tag(runs[number], OUTSIDE_TAG)

    def trials_so_far(self) -> list:
        """The sweep's trials as it opens (its study's; on Ray, the journal's)."""
        return self.study.get_trials(deepcopy=False)

    def abandon(self) -> str:
        """After the tracking store or the journal failed: end the sweep's runs left
        RUNNING (its trials' as interrupted, the parent as KILLED), without the report.
        Returns what could not be ended ("" when all were): the store may refuse the
        writes too, and then the next run of the sweep ends them (``close_orphans``)."""
        tracker = getattr(self, "tracker", None)
        if tracker is None or not hasattr(self, "parent"):
            return ""
        try:
            tracker.close_orphans(self.spec.name)
            tracker.end_sweep(self.parent, "KILLED")
        except Exception as err:
            return (
                f"its MLflow runs could not be ended either ({type(err).__name__}); the next run of the sweep ends them"
            )
        return ""

    def stopped_early(self, why: str) -> None:
        """The sweep stops before its budget is used up (``search.sweep.budget.Budget.stop``):
        why, on the live view now, on the parent run when it finishes (``STOPPED_TAG``) and
        in the closing lines (``main.py run``)."""
        self.stopped = self.progress.stopped = why
        self.on_change(self.progress)

    def failed(self) -> int:
        """Trials that failed with a reason (interrupted ones are not failures: they rerun)."""
        return sum(state_of(t) == "failed" for t in self.study.get_trials(deepcopy=False))

    def ended(self, number: int, state: str, arch: str = "", metrics=None, reason: str = "", duplicate_of=None) -> None:
        """Count a trial that ended in this session and show it (the view prints a line
        per trial when the console is not a terminal)."""
        p = self.progress
        setattr(p, COUNTERS[state], getattr(p, COUNTERS[state]) + 1)
        p.running.pop(number, None)
        p.ended.append(
            {
                "trial": number,
                "state": state,
                "arch": arch,
                "reason": reason,
                "metrics": dict(metrics or {}),
                "duplicate_of": duplicate_of,
            }
        )
        self.on_change(p)

    def trial_rows(self) -> list[dict]:
        """Every trial as a row: state, reason, the trial it repeats, metrics, architecture,
        MLflow run id and its Optuna parameters (named as its MLflow params)."""
        return [
            {
                "trial": t.number,
                "state": state_of(t),
                "reason": t.user_attrs.get("reason") or t.user_attrs.get("fail_reason", ""),
                "duplicate_of": t.user_attrs.get("duplicate_of", ""),
                **t.user_attrs.get("metrics", {}),
                "arch": t.user_attrs.get("arch", ""),
                "run_id": t.user_attrs.get("mlflow_run_id", ""),
                "warm_from": t.user_attrs.get("warm_from", ""),
                **t.params,
            }
            for t in self.study.get_trials(deepcopy=False)
        ]

    def front_rows(self) -> tuple[list[dict], list[dict]]:
        """(all feasible completed trials, the Pareto-optimal ones) as rows of metrics."""
        rows = [
            {
                "trial": t.number,
                "arch": t.user_attrs["arch"],
                "run_id": t.user_attrs["mlflow_run_id"],
                **t.user_attrs["metrics"],
                **({"warm_from": t.user_attrs["warm_from"]} if "warm_from" in t.user_attrs else {}),
            }
            for t in feasible(self.study)
        ]
        front = pareto.nondominated(rows, self.spec.objectives)
        return rows, [rows[i] for i in front]

    def finish(self, status: str = "FINISHED") -> list[dict]:
        """Tag the front, log it on the parent run, end the parent run; returns the front."""
        rows, front = self.front_rows()
        on_front = {r["trial"] for r in front}
        for row in rows:
            if "warm_from" not in row:  # a warm start's given trial: its run is the earlier sweep's
                self.tracker.set_tags(row["run_id"], {PARETO_TAG: str(row["trial"] in on_front).lower()})
        objectives = self.spec.objectives
        columns = [
            "trial",
            *[o.metric for o in objectives],
            *[m for m in METRICS if m not in {o.metric for o in objectives}],
            "arch",
            "run_id",
        ]
        self.tracker.log_text(self.parent, pareto.to_csv(front, columns), "pareto.csv")
        trials = self.trial_rows()
        params = dict.fromkeys(n for t in self.study.get_trials(deepcopy=False) for n in t.params)
        every = ["trial", "state", "reason", "duplicate_of", *columns[1:-2], "arch", "run_id", "warm_from", *params]
        self.tracker.log_text(self.parent, pareto.to_csv(trials, every), "trials.csv")
        plot = ""
        if rows:
            import matplotlib.pyplot as plt

            figure = pareto.plot(rows, [rows.index(r) for r in front], objectives)
            self.tracker.log_figure(self.parent, figure, "pareto.png")
            svg = io.StringIO()
            figure.savefig(svg, format="svg")
            plot = svg.getvalue()
            plt.close(figure)
        states = [t["state"] for t in trials]
        summary = {f"trials_{state}": float(states.count(state)) for state in COUNTERS}
        if "outside" in states:  # earlier trials an amended space cannot draw
            summary["trials_outside"] = float(states.count("outside"))
        summary["pareto_size"] = float(len(front))
        if len(objectives) > 1 and rows:
            summary["hypervolume"], ref = pareto.hypervolume(rows, objectives)
            self.tracker.set_tags(self.parent, {HYPERVOLUME_REF_TAG: str([round(r, 6) for r in ref])})
        self.tracker.log_metrics(self.parent, summary)
        if self.stopped:  # this run's reason; a resumed run that used its budget up has none
            self.tracker.set_tags(self.parent, {STOPPED_TAG: self.stopped})
        else:
            self.tracker.delete_tag(self.parent, STOPPED_TAG)
        if self.spec.ablation is not None:
            self.ablation_rows = self._ablation_report()
        self._log_models(rows, front)
        self._log_report(front, trials, summary, plot)
        self.tracker.end_sweep(self.parent, status)
        return front

    def trained(self, number: int) -> dict | None:
        """The ``runs.trial.trained_record`` a completed trial left, if the backend kept it."""
        return None

    def _log_models(self, rows: list[dict], front: list[dict]) -> None:
        """The chosen trials' trained models as MLflow models in their runs (once: a
        resumed sweep skips those logged before)."""
        choice = self.spec.log_models
        if isinstance(choice, tuple):  # the front's and those asked for by number
            chosen = [r for r in rows if r in front or r["trial"] in choice]
        else:
            chosen = {"pareto": front, "all": rows, "none": []}[choice]
        for row in chosen:
            if MODEL_TAG in self.tracker.tags(row["run_id"]):
                continue
            record = self.trained(row["trial"])
            if record is None:
                continue
            try:
                self._log_model(row, record)
            except Exception as err:  # the sweep's results stand without it: say why on the run
                self.model_errors.append(f"t{row['trial']:02d}: {type(err).__name__}: {err}")
                self.tracker.set_tags(row["run_id"], {MODEL_ERROR_TAG: f"{type(err).__name__}: {err}"})

    def _log_model(self, row: dict, record: dict) -> None:
        self.tracker.log_model(
            row["run_id"],
            rebuild(record),
            name=f"{self.spec.name}-t{row['trial']:02d}",
            example=(record["probe_x"].numpy(), record["probe_logits"].numpy()),
            files=model_files(record),
            step=int(row["epochs"]),
            register=self.spec.register,
        )

    def _log_report(self, front: list[dict], trials: list[dict], summary: dict[str, float], plot: str) -> None:
        html = report.html(self.spec, front, trials, summary, plot, getattr(self, "ablation_rows", None))
        self.tracker.log_text(self.parent, html, "report.html")

    def ablation_metrics(self) -> list[str]:
        names = [o.metric for o in self.spec.objectives] + [
            "params",
            "gmacs",
            "latency_ms",
            "peak_mem_mb",
            "train_time_s",
        ]
        return list(dict.fromkeys(names))

    def _ablation_report(self) -> list[dict]:
        """Per-arm statistics on the parent run: CSV, markdown and a plot."""
        trials = [
            {"arm": t.user_attrs["arm"], "seed": t.user_attrs["seed"], **t.user_attrs["metrics"]}
            for t in feasible(self.study)
        ]
        metrics = self.ablation_metrics()
        rows = stats.report(self.spec.ablation.arms, trials, metrics)
        columns = list(dict.fromkeys(k for row in rows for k in row))
        self.tracker.log_text(self.parent, pareto.to_csv(rows, columns), "ablation.csv")
        self.tracker.log_text(self.parent, stats.markdown(rows, metrics), "ablation.md")
        import matplotlib.pyplot as plt

        figure = stats.plot(rows, metrics[0], "gmacs" if metrics[0] != "gmacs" else "params")
        self.tracker.log_figure(self.parent, figure, "ablation.png")
        plt.close(figure)
        return rows

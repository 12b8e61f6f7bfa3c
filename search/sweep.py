"""What both backends share: the sweep's parent run, how a trial's draw and outcome are
decided, and the end of a sweep (Pareto tags, CSV, plots, ablation report).

A backend subclasses ``Sweep`` and fills ``self.study`` (an Optuna study holding every
trial with the user attributes ``arch``, ``mlflow_run_id``, ``metrics`` and ``state``; a
sampled trial's ``draw``, and ``duplicate_of`` when that draw had been trained before:
such a repeat is answered from the earlier result, never trained again).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import subprocess
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import optuna
import torch
import yaml
from optuna.trial import TrialState

from runs.tracking import MODEL_TAG, PARETO_TAG, Tracker, embedded_store
from runs.trial import Infeasible, rebuild
from search import pareto, preflight, report
from search.space import flatten, sample
from search.spec import METRICS, Spec


@dataclass
class Progress:
    """What the live view shows; updated by the objective as trials run."""

    requested: int
    done: int = 0
    duplicate: int = 0
    failed: int = 0
    infeasible: int = 0
    pruned: int = 0
    running: dict[int, str] = field(default_factory=dict)  # trial number -> what it is doing
    front: list[dict] = field(default_factory=list)
    ended: list[dict] = field(default_factory=list)  # a row per trial ended, in order (see Sweep.ended)


# The states a trial ends in, and Progress's counter of each.
COUNTERS = dict(complete="done", duplicate="duplicate", infeasible="infeasible", pruned="pruned", failed="failed")
DUPLICATE_TAG = "archsweep.duplicate_of"


class SweepBusy(Exception):
    """Another process runs this sweep now; the message says which."""


class TrackingFailed(Exception):
    """The tracking store failed while recording a trial: the sweep stopped, that trial
    uncounted (the next run of the sweep runs it again)."""


def journal_storage(path: Path, *, owned: bool = False) -> optuna.storages.JournalStorage:
    """The Optuna journal at ``path``. Optuna guards its writes with a symlink
    ``<journal>.lock -> <journal path as given>``: given a relative path, the link dangles, so
    the lock a killed process leaves is never judged stale and the next writer spins forever.
    Hence the absolute path (a stale lock is then broken after Optuna's 30 s). ``owned``: this
    process is the journal's only writer (the local sweep's lock, the Ray driver) and is not
    writing yet, so a lock there can only be a dead process's: removed at once."""
    path = path.resolve()
    if owned:
        Path(f"{path}.lock").unlink(missing_ok=True)
    return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))


def name_metrics(study: optuna.Study, spec: Spec) -> None:
    """The objectives' names on the study, so that Optuna's own tools (optuna-dashboard,
    ``study.trials_dataframe()``) show ``val_accuracy`` and ``gmacs``, not "Objective 0"."""
    names = [o.metric for o in spec.objectives]
    if study.metric_names != names:
        with warnings.catch_warnings():  # experimental in Optuna 5, stable in use since 3.2
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(names)


def counted(trial: optuna.trial.FrozenTrial) -> bool:
    """Trials that use up the budget: finished ones, failures with a reason; not trials
    interrupted by Ctrl-C or a killed process (those are run again)."""
    if trial.state in (TrialState.COMPLETE, TrialState.PRUNED):
        return True
    return trial.state == TrialState.FAIL and "fail_reason" in trial.user_attrs


def _saved(obj) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def _git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=False)
        return out.stdout.strip() or "unknown"
    except OSError:
        return "unknown"


def _worst(metric: str, known: dict[str, float]) -> float:
    """The value an infeasible trial reports for ``metric`` (its real cost when measured)."""
    if metric in known:
        return known[metric]
    return 0.0 if METRICS[metric] == "max" else 1e12


def draw(spec: Spec, trial) -> tuple[dict, dict, int, dict[str, str]]:
    """(model config, train config, seed, extra MLflow tags) of an Optuna trial: a sample
    of the space, or an (arm, seed) of the ablation (queued with ``enqueue_trial``). A
    sample's key is kept as the user attribute ``draw`` (see ``repeat_of``)."""
    if spec.ablation is None:
        model_cfg, train_cfg = sample(spec.model, trial, "model"), sample(spec.train, trial, "train")
        trial.set_user_attr("draw", draw_key(model_cfg, train_cfg))
        return model_cfg, train_cfg, trial_seed(spec, trial.number), {}
    index = trial.suggest_categorical("arm", spec.ablation.runnable)
    repeat = trial.suggest_categorical("seed", list(range(spec.ablation.seeds)))
    arm = spec.ablation.arms[index]
    trial.set_user_attr("arm", index)
    trial.set_user_attr("seed", repeat)
    return dict(arm.model), dict(arm.train), repeat, {"archsweep.arm": arm.name, "archsweep.seed": str(repeat)}


def trial_seed(spec: Spec, number: int) -> int:
    """The seed a sampled trial trains with."""
    return spec.search.seed + number


def run_name(number: int, line: str, tags: dict[str, str], seed: int) -> str:
    if "archsweep.arm" in tags:
        return f"t{number:02d} {tags['archsweep.arm']} s{seed}"
    if DUPLICATE_TAG in tags:
        return f"t{number:02d} = t{int(tags[DUPLICATE_TAG]):02d} {line}"
    return f"t{number:02d} {line}"


def trial_params(model_cfg: dict, train_cfg: dict, seed: int) -> dict:
    """The MLflow params of a trial, named as Optuna names its parameters
    (``search.space.param``); a stage left out (depth 0) by its depth alone."""
    stages = model_cfg.get("stages")
    if isinstance(stages, list):
        model_cfg = {**model_cfg, "stages": [{"depth": 0} if s.get("depth") == 0 else s for s in stages]}
    return {**flatten(model_cfg, "model"), **flatten(train_cfg, "train"), "seed": seed}


def draw_key(model_cfg: dict, train_cfg: dict) -> str:
    """Equal for two draws that train the same: the same params but the seed (so the
    values of a stage left out make no difference)."""
    params = trial_params(model_cfg, train_cfg, 0)
    del params["seed"]
    return hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()


def repeat_of(study: optuna.Study, trial) -> optuna.trial.FrozenTrial | None:
    """The earliest other trial with ``trial``'s draw that finished (complete or
    infeasible): ``trial`` is answered from it instead of training the same again."""
    key = trial.user_attrs.get("draw")
    if key is None:  # an ablation's (arm, seed): distinct by design
        return None
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if t.number != trial.number and t.user_attrs.get("draw") == key and state_of(t) in ("complete", "infeasible"):
            return t
    return None


def state_of(trial: optuna.trial.FrozenTrial) -> str:
    """complete, duplicate, infeasible, pruned, failed; interrupted (a failure without a
    reason: it runs again); running or waiting."""
    if trial.state == TrialState.COMPLETE:
        return trial.user_attrs.get("state", "complete")
    if trial.state == TrialState.FAIL:
        return "failed" if "fail_reason" in trial.user_attrs else "interrupted"
    return trial.state.name.lower()


def constraint_names(spec: Spec) -> list[str]:
    return [str(c) for c in spec.constraints] + ["buildable"]


@dataclass(frozen=True)
class Outcome:
    """How a trial that ran to its end is recorded: ``state`` complete, infeasible or
    duplicate, the values told to Optuna, and the constraint violations (<= 0: satisfied)
    that make the samplers rank infeasible trials below feasible ones."""

    state: str
    reason: str
    metrics: dict[str, float]
    values: tuple[float, ...]
    violations: tuple[float, ...]  # one per constraint_names(spec)
    duplicate_of: int | None = None  # state duplicate: the trial whose result this is


def completed(spec: Spec, metrics: dict[str, float]) -> Outcome:
    violations = [c.violation(metrics[c.metric]) for c in spec.constraints]
    broken = [str(c) for c, v in zip(spec.constraints, violations, strict=True) if v > 0]
    values = tuple(metrics[o.metric] for o in spec.objectives)
    if broken:
        return Outcome("infeasible", "breaks " + ", ".join(broken), metrics, values, (*violations, 0.0))
    return Outcome("complete", "", metrics, values, (*violations, 0.0))


def refused(spec: Spec, err: Infeasible) -> Outcome:
    values = tuple(_worst(o.metric, err.cost) for o in spec.objectives)
    return Outcome("infeasible", err.reason, dict(err.cost), values, (*err.violations, 0.0 if err.cost else 1.0))


def repeated(spec: Spec, original: optuna.trial.FrozenTrial) -> Outcome:
    """A repeat of ``original``'s draw, answered with its values and constraints (the
    sampler learns the same as from the original) without training."""
    reason = f"same draw as t{original.number:02d}"
    if original.user_attrs.get("reason"):
        reason += f": {original.user_attrs['reason']}"
    violations = tuple(original.constraints.get(name, 0.0) for name in constraint_names(spec))
    metrics = dict(original.user_attrs.get("metrics", {}))
    return Outcome("duplicate", reason, metrics, tuple(original.values), violations, original.number)


class Sweep:
    """The parts of a sweep that do not depend on where trials run."""

    def __init__(self, spec: Spec, *, device: str | None = None, on_change=lambda progress: None) -> None:
        self.spec, self.on_change = spec, on_change
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.store = Path(spec.store)
        self.progress = Progress(spec.search.trials)
        self.model_errors: list[str] = []  # models that could not be logged, and why
        self.tracking_failure = ""  # why the tracking store stopped the sweep (see TrackingFailed)

    def resumable(self) -> bool:
        """Whether a stopped sweep of this spec left state to continue from."""
        raise NotImplementedError

    def close(self) -> None:
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
            self.tracker = Tracker(uri, spec.experiment, credentials=(spec.tracking_user, spec.tracking_password))
        else:
            self.tracker = Tracker(embedded_store(self.store), spec.experiment, artifacts=self.store / "artifacts")
        self.tracker.close_orphans(spec.name)
        self.parent = self.tracker.sweep_run(
            spec.name,
            spec.name,
            {
                "archsweep.spec_sha": spec.sha,
                "archsweep.git_commit": _git_commit(),
                "archsweep.backend": spec.backend.kind,
                "archsweep.sampler": spec.search.sampler,
                "archsweep.device": str(self.device),
                "archsweep.objectives": ",".join(f"{o.metric}:{o.direction}" for o in spec.objectives),
            },
            spec.description,
        )
        # As run this time (preflight refused any change but in what may change): file and hash agree.
        self.tracker.log_text(self.parent, yaml.safe_dump(dict(spec.resolved), sort_keys=False), "spec.yaml")
        self.tracker.set_tags(self.parent, {"archsweep.spec_sha": spec.sha})

    def abandon(self) -> None:
        """End the parent run as KILLED, without the report, after the tracking store failed
        (it may fail again: the next run of the sweep ends it properly)."""
        with contextlib.suppress(Exception):
            self.tracker.end_sweep(self.parent, "KILLED")

    def failed(self) -> int:
        """Trials that failed with a reason (interrupted ones are not failures: they rerun)."""
        return sum(t.state == TrialState.FAIL and counted(t) for t in self.study.get_trials(deepcopy=False))

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
            }
            for t in self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if t.user_attrs.get("state") == "complete"
        ]
        front = pareto.nondominated(rows, self.spec.objectives)
        return rows, [rows[i] for i in front]

    def finish(self, status: str = "FINISHED") -> list[dict]:
        """Tag the front, log it on the parent run, end the parent run; returns the front."""
        rows, front = self.front_rows()
        on_front = {r["trial"] for r in front}
        for row in rows:
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
        every = ["trial", "state", "reason", "duplicate_of", *columns[1:-2], "arch", "run_id", *params]
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
        summary["pareto_size"] = float(len(front))
        if len(objectives) > 1 and rows:
            summary["hypervolume"], ref = pareto.hypervolume(rows, objectives)
            self.tracker.set_tags(self.parent, {"archsweep.hypervolume_ref": str([round(r, 6) for r in ref])})
        self.tracker.log_metrics(self.parent, summary)
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
                self.tracker.set_tags(row["run_id"], {"archsweep.model_error": f"{type(err).__name__}: {err}"})

    def _log_model(self, row: dict, record: dict) -> None:
        probe = {"x": record["probe_x"], "logits": record["probe_logits"]}
        files = {
            "arch.yaml": yaml.safe_dump(record["arch"], sort_keys=False).encode(),
            "weights.pt": _saved(record["state_dict"]),
            "probe.pt": _saved(probe),
        }
        self.tracker.log_model(
            row["run_id"],
            rebuild(record),
            name=f"{self.spec.name}-t{row['trial']:02d}",
            example=(probe["x"].numpy(), probe["logits"].numpy()),
            files=files,
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
        from search import ablation

        trials = [
            {"arm": t.user_attrs["arm"], "seed": t.user_attrs["seed"], **t.user_attrs["metrics"]}
            for t in self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if t.user_attrs.get("state") == "complete"
        ]
        metrics = self.ablation_metrics()
        rows = ablation.report(self.spec.ablation, trials, metrics)
        columns = list(dict.fromkeys(k for row in rows for k in row))
        self.tracker.log_text(self.parent, pareto.to_csv(rows, columns), "ablation.csv")
        self.tracker.log_text(self.parent, ablation.markdown(rows, metrics), "ablation.md")
        import matplotlib.pyplot as plt

        figure = ablation.plot(rows, metrics[0], "gmacs" if metrics[0] != "gmacs" else "params")
        self.tracker.log_figure(self.parent, figure, "ablation.png")
        plt.close(figure)
        return rows

"""The local backend: one Optuna study per sweep, trials run in this process.

The study lives in a journal file next to the MLflow store, so running the same command
again resumes it: finished trials are kept and the sweep goes on to the requested count.
"""

from __future__ import annotations

import math
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import optuna
import torch
import yaml
from optuna.trial import TrialState

from blocks import summary
from runs import data as datasets
from runs.tracking import PARETO_TAG, Tracker, embedded_uri
from runs.train import TrainConfig
from runs.trial import Infeasible, run_trial
from search import pareto
from search.fields import to_arch
from search.space import Choice, FloatRange, IntRange, dimensions, flatten, sample
from search.spec import METRICS, Spec

optuna.logging.set_verbosity(optuna.logging.ERROR)  # failures are recorded and shown by the view


@dataclass
class Progress:
    """What the live view shows; updated by the objective as trials run."""

    requested: int
    done: int = 0
    failed: int = 0
    infeasible: int = 0
    pruned: int = 0
    current: str = ""
    epoch: str = ""
    front: list[dict] = field(default_factory=list)


def counted(trial: optuna.trial.FrozenTrial) -> bool:
    """Trials that use up the budget: finished ones, failures with a reason; not trials
    interrupted by Ctrl-C or a killed process (those are run again)."""
    if trial.state in (TrialState.COMPLETE, TrialState.PRUNED):
        return True
    return trial.state == TrialState.FAIL and "fail_reason" in trial.user_attrs


def _grid_space(spec: Spec) -> dict[str, list]:
    space = {}
    for path, dim in {**dimensions(spec.model, "model"), **dimensions(spec.train, "train")}.items():
        if isinstance(dim, Choice):
            space[path] = dim.labels()
        elif isinstance(dim, IntRange):
            space[path] = list(range(dim.low, dim.high + 1, dim.step))
        elif isinstance(dim, FloatRange):
            n = round((dim.high - dim.low) / dim.step)
            space[path] = [dim.low + i * dim.step for i in range(n + 1)]
    return space


def make_sampler(spec: Spec) -> optuna.samplers.BaseSampler:
    # Feasibility reaches the samplers through trial.set_constraint (see _constrain).
    s = spec.search
    if s.sampler == "nsga2":
        population = max(4, min(50, s.trials // 3))
        return optuna.samplers.NSGAIISampler(population_size=population, seed=s.seed)
    if s.sampler == "random":
        return optuna.samplers.RandomSampler(seed=s.seed)
    if s.sampler == "grid":
        return optuna.samplers.GridSampler(_grid_space(spec), seed=s.seed)
    return optuna.samplers.TPESampler(seed=s.seed, n_startup_trials=min(10, s.trials // 2 or 1))


def make_pruner(spec: Spec) -> optuna.pruners.BasePruner:
    if spec.search.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1)
    if spec.search.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1)
    return optuna.pruners.NopPruner()


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


class LocalSweep:
    def __init__(self, spec: Spec, *, device: str | None = None, on_change=lambda progress: None) -> None:
        self.spec, self.on_change = spec, on_change
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.store = Path(spec.store)
        self.progress = Progress(spec.search.trials)

    # -- set-up ------------------------------------------------------------------------

    def open(self) -> None:
        spec = self.spec
        (self.store / "optuna").mkdir(parents=True, exist_ok=True)
        backend = optuna.storages.journal.JournalFileBackend(str(self.store / "optuna" / f"{spec.name}.journal"))
        self.study = optuna.create_study(
            study_name=spec.name,
            storage=optuna.storages.JournalStorage(backend),
            directions=["maximize" if o.direction == "max" else "minimize" for o in spec.objectives],
            sampler=make_sampler(spec),
            pruner=make_pruner(spec),
            load_if_exists=True,
        )
        for stale in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            self.study.tell(stale.number, state=TrialState.FAIL)  # its process died: run it again
        if spec.ablation is not None:
            self._enqueue_arms()
        if spec.tracking_uri:  # a server: it decides where artifacts go
            self.tracker = Tracker(spec.tracking_uri, spec.experiment)
        else:
            self.tracker = Tracker(embedded_uri(self.store), spec.experiment, artifacts=self.store / "artifacts")
        self.tracker.close_orphans(spec.name)
        self.parent = self.tracker.sweep_run(
            spec.name,
            spec.name,
            {
                "archsweep.spec_sha": spec.sha,
                "archsweep.git_commit": _git_commit(),
                "archsweep.backend": spec.backend,
                "archsweep.sampler": spec.search.sampler,
                "archsweep.device": str(self.device),
            },
            spec.description,
        )
        self.tracker.log_text(self.parent, yaml.safe_dump(dict(spec.resolved), sort_keys=False), "spec.yaml")
        self.data = datasets.load(spec.data, seed=spec.search.seed).to(self.device)

    def _enqueue_arms(self) -> None:
        """Queue every (arm, seed) of the ablation that has neither run nor been queued."""
        trials = self.study.get_trials(deepcopy=False)
        have = {(t.params.get("arm"), t.params.get("seed")) for t in trials if counted(t)}
        have |= {(t.params.get("arm"), t.params.get("seed")) for t in trials if t.state == TrialState.WAITING}
        for arm in self.spec.ablation.runnable:
            for seed in range(self.spec.ablation.seeds):
                if (arm, seed) not in have:
                    self.study.enqueue_trial({"arm": arm, "seed": seed})

    # -- one trial ---------------------------------------------------------------------

    def draw(self, trial: optuna.Trial) -> tuple[dict, dict, int, dict[str, str]]:
        """(model config, train config, seed, extra MLflow tags) of this trial."""
        spec = self.spec
        if spec.ablation is None:
            model_cfg, train_cfg = sample(spec.model, trial, "model"), sample(spec.train, trial, "train")
            return model_cfg, train_cfg, spec.search.seed + trial.number, {}
        index = trial.suggest_categorical("arm", spec.ablation.runnable)
        repeat = trial.suggest_categorical("seed", list(range(spec.ablation.seeds)))
        arm = spec.ablation.arms[index]
        trial.set_user_attr("arm", index)
        trial.set_user_attr("seed", repeat)
        return dict(arm.model), dict(arm.train), repeat, {"archsweep.arm": arm.name, "archsweep.seed": str(repeat)}

    def objective(self, trial: optuna.Trial) -> tuple[float, ...]:
        spec, geo = self.spec, self.data.geometry
        model_cfg, train_cfg, seed, extra_tags = self.draw(trial)
        arch = to_arch(model_cfg, geo.image_size, geo.num_classes, geo.channels)
        cfg = TrainConfig.from_mapping({**train_cfg, "crop": spec.data.crop, "flip": spec.data.flip})
        line = summary(arch)
        params = {**flatten(model_cfg), **flatten(train_cfg, "train"), "seed": seed}
        name = (
            f"t{trial.number:02d} {extra_tags['archsweep.arm']} s{seed}"
            if extra_tags
            else f"t{trial.number:02d} {line}"
        )
        run = self.tracker.trial_run(
            self.parent, spec.name, trial.number, name, params, {"archsweep.arch": line, **extra_tags}
        )
        trial.set_user_attr("mlflow_run_id", run)
        trial.set_user_attr("arch", line)
        self.progress.current, self.progress.epoch = f"t{trial.number:02d} {line}", ""
        self.on_change(self.progress)
        try:
            metrics = run_trial(
                arch,
                cfg,
                self.data,
                seed=seed,
                constraints=spec.constraints,
                report=self._reporter(trial, run, cfg.epochs),
            )
        except Infeasible as err:
            return self._infeasible(trial, run, err)
        except optuna.TrialPruned:
            self.tracker.end_trial(run, "pruned")
            self.progress.pruned += 1
            raise
        except KeyboardInterrupt:
            self.tracker.end_trial(run, "interrupted", "stopped by Ctrl-C")
            raise
        except Exception as err:
            reason = f"{type(err).__name__}: {err}"
            trial.set_user_attr("fail_reason", reason)
            self.tracker.end_trial(run, "failed", reason)
            self.progress.failed += 1
            raise
        return self._complete(trial, run, metrics)

    def _reporter(self, trial: optuna.Trial, run: str, epochs: int):
        single = len(self.spec.objectives) == 1

        def report(epoch: int, metrics: dict[str, float]) -> None:
            self.tracker.log_metrics(run, metrics, step=epoch)
            self.progress.epoch = f"epoch {epoch + 1}/{epochs}, val_accuracy {metrics['val_accuracy']:.3f}"
            self.on_change(self.progress)
            if single:
                trial.report(metrics.get(self.spec.objectives[0].metric, math.nan), epoch)
                if trial.should_prune():
                    raise optuna.TrialPruned(f"pruned after epoch {epoch + 1}")

        return report

    def _constrain(self, trial: optuna.Trial, violations: list[float], *, refused: bool) -> None:
        """Every completed trial sets the same constraints (<= 0: satisfied), so that the
        samplers rank infeasible trials below feasible ones."""
        for constraint, value in zip(self.spec.constraints, violations, strict=True):
            trial.set_constraint(str(constraint), value)
        trial.set_constraint("buildable", 1.0 if refused else 0.0)

    def _infeasible(self, trial: optuna.Trial, run: str, err: Infeasible) -> tuple[float, ...]:
        self._constrain(trial, err.violations, refused=not err.cost)
        trial.set_user_attr("state", "infeasible")
        trial.set_user_attr("reason", err.reason)
        if err.cost:
            self.tracker.log_metrics(run, err.cost)
        self.tracker.end_trial(run, "infeasible", err.reason)
        self.progress.infeasible += 1
        return tuple(_worst(o.metric, err.cost) for o in self.spec.objectives)

    def _complete(self, trial: optuna.Trial, run: str, metrics: dict[str, float]) -> tuple[float, ...]:
        violations = [c.violation(metrics[c.metric]) for c in self.spec.constraints]
        feasible = all(v <= 0 for v in violations)
        self._constrain(trial, violations, refused=False)
        trial.set_user_attr("metrics", metrics)
        trial.set_user_attr("state", "complete" if feasible else "infeasible")
        self.tracker.log_metrics(run, metrics, step=int(metrics["epochs"]))
        reason = (
            ""
            if feasible
            else "breaks " + ", ".join(str(c) for c, v in zip(self.spec.constraints, violations, strict=True) if v > 0)
        )
        self.tracker.end_trial(run, "complete" if feasible else "infeasible", reason)
        self.progress.done += 1
        self.progress.front = self.front_rows()[1]
        self.on_change(self.progress)
        return tuple(metrics[o.metric] for o in self.spec.objectives)

    # -- the sweep ---------------------------------------------------------------------

    def remaining(self) -> int:
        return max(0, self.spec.search.trials - sum(counted(t) for t in self.study.get_trials(deepcopy=False)))

    def run(self) -> None:
        """Run trials until the requested count has finished (Ctrl-C propagates)."""
        self.study.optimize(
            self.objective,
            n_trials=self.remaining(),
            timeout=self.spec.search.timeout,
            catch=(Exception,),
            gc_after_trial=False,
        )

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
        self.tracker.log_text(self.parent, pareto.to_csv(rows, columns), "trials.csv")
        if rows:
            import matplotlib.pyplot as plt

            figure = pareto.plot(rows, [rows.index(r) for r in front], objectives)
            self.tracker.log_figure(self.parent, figure, "pareto.png")
            plt.close(figure)
        states = [t.state for t in self.study.get_trials(deepcopy=False)]
        summary = {
            "trials_complete": float(len(rows)),
            "trials_failed": float(sum(s == TrialState.FAIL for s in states)),
            "pareto_size": float(len(front)),
        }
        if len(objectives) > 1 and rows:
            summary["hypervolume"], ref = pareto.hypervolume(rows, objectives)
            self.tracker.set_tags(self.parent, {"archsweep.hypervolume_ref": str([round(r, 6) for r in ref])})
        self.tracker.log_metrics(self.parent, summary)
        if self.spec.ablation is not None:
            self.ablation_rows = self._ablation_report()
        self.tracker.end_sweep(self.parent, status)
        return front

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

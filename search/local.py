"""The local backend: one Optuna study per sweep, trials run in this process.

The study lives in a journal file next to the MLflow store, so running the same command
again resumes it: finished trials are kept and the sweep goes on to the requested count.
"""

from __future__ import annotations

import math

import optuna
from optuna.trial import TrialState

from blocks import summary
from runs import data as datasets
from runs.train import TrainConfig
from runs.trial import Infeasible, run_trial
from search.fields import to_arch
from search.space import Choice, FloatRange, IntRange, dimensions
from search.spec import Spec
from search.sweep import (
    Outcome,
    Sweep,
    completed,
    constraint_names,
    counted,
    draw,
    refused,
    run_name,
    trial_params,
)

optuna.logging.set_verbosity(optuna.logging.ERROR)  # failures are recorded and shown by the view


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
    if spec.search.pruner == "asha":  # asynchronous successive halving, as on the ray backend
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=1)
    if spec.search.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1)
    return optuna.pruners.NopPruner()


class LocalSweep(Sweep):
    def resumable(self) -> bool:
        return (self.store / "optuna" / f"{self.spec.name}.journal").exists()

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
        self.open_tracking()
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

    def objective(self, trial: optuna.Trial) -> tuple[float, ...]:
        spec, geo = self.spec, self.data.geometry
        model_cfg, train_cfg, seed, extra_tags = draw(spec, trial)
        arch = to_arch(model_cfg, geo.image_size, geo.num_classes, geo.channels)
        cfg = TrainConfig.from_mapping({**train_cfg, "crop": spec.data.crop, "flip": spec.data.flip})
        line = summary(arch)
        run = self.tracker.trial_run(
            self.parent,
            spec.name,
            trial.number,
            run_name(trial.number, line, extra_tags, seed),
            trial_params(model_cfg, train_cfg, seed),
            {"archsweep.arch": line, **extra_tags},
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
            return self._record(trial, run, refused(spec, err))
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
        self.tracker.log_metrics(run, metrics, step=int(metrics["epochs"]))
        return self._record(trial, run, completed(spec, metrics))

    def _reporter(self, trial: optuna.Trial, run: str, epochs: int):
        single = len(self.spec.objectives) == 1

        def report(epoch: int, metrics: dict[str, float], snapshot=None) -> None:
            self.tracker.log_metrics(run, metrics, step=epoch)
            self.progress.epoch = f"epoch {epoch + 1}/{epochs}, val_accuracy {metrics['val_accuracy']:.3f}"
            self.on_change(self.progress)
            if single:
                trial.report(metrics.get(self.spec.objectives[0].metric, math.nan), epoch)
                if trial.should_prune():
                    raise optuna.TrialPruned(f"pruned after epoch {epoch + 1}")

        return report

    def _record(self, trial: optuna.Trial, run: str, outcome: Outcome) -> tuple[float, ...]:
        for name, value in zip(constraint_names(self.spec), outcome.violations, strict=True):
            trial.set_constraint(name, value)
        trial.set_user_attr("state", outcome.state)
        trained = "epochs" in outcome.metrics
        if trained:
            trial.set_user_attr("metrics", outcome.metrics)
        elif outcome.metrics:
            self.tracker.log_metrics(run, outcome.metrics)  # the cost measured before refusing it
        if outcome.reason:
            trial.set_user_attr("reason", outcome.reason)
        self.tracker.end_trial(run, outcome.state, outcome.reason)
        if outcome.state == "complete":
            self.progress.done += 1
            self.progress.front = self.front_rows()[1]
        else:
            self.progress.infeasible += 1
        self.on_change(self.progress)
        return outcome.values

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

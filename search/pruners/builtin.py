"""Optuna's pruners on the local backend and in replays, Ray Tune's schedulers of the same
name on the ray backend. Both stop on one objective (Tune's on the first of several)."""

from __future__ import annotations

import optuna

from search.pruners.base import Pruner


class NoPruner(Pruner):
    """Every trial trains to its last epoch."""

    name = "none"


class Median(Pruner):
    """Stops a trial whose objective is below the median of earlier trials at the same epoch."""

    name = "median"
    several_objectives = False

    def optuna(self) -> optuna.pruners.BasePruner:
        return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1)

    def tune_scheduler(self, metric: str, mode: str):
        from ray import tune  # Ray is imported by a sweep on the ray backend only (seconds)

        return tune.schedulers.MedianStoppingRule(metric=metric, mode=mode, time_attr="epoch", grace_period=1)


class ASHA(Pruner):
    """Asynchronous successive halving: 1 in reduction_factor trials goes on past each rung."""

    name = "asha"
    halving = (1, 4)  # Optuna's and Tune's own defaults
    several_objectives = False

    def optuna(self) -> optuna.pruners.BasePruner:
        return optuna.pruners.SuccessiveHalvingPruner(
            min_resource=self.min_epochs, reduction_factor=self.reduction_factor
        )

    def tune_scheduler(self, metric: str, mode: str):
        from ray import tune  # Ray is imported by a sweep on the ray backend only (seconds)

        return tune.schedulers.ASHAScheduler(
            metric=metric,
            mode=mode,
            max_t=self.epochs,
            grace_period=self.min_epochs,
            reduction_factor=self.reduction_factor,
            time_attr="epoch",
            # Tune's default stops a trial at its last epoch's report, before the worker
            # reports how the trial ended: every complete trial would be recorded pruned.
            stop_last_trials=False,
        )


class Hyperband(Pruner):
    """Hyperband: successive halving in several brackets (Optuna's; none on Ray)."""

    name = "hyperband"
    several_objectives = False
    on_ray = False

    def optuna(self) -> optuna.pruners.BasePruner:
        return optuna.pruners.HyperbandPruner(min_resource=1)

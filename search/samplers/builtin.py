"""Optuna's own samplers, with the settings archsweep runs them at (``bench search``
measures each on recorded tables: BENCHMARKS.md, "Search efficiency")."""

from __future__ import annotations

import warnings

import optuna

from search.samplers.base import Sampler


def _startup(trials: int) -> int:
    """Random trials before a model-based sampler fits its model: 10, or half a small budget."""
    return min(10, trials // 2 or 1)


class TPE(Sampler):
    """Tree-structured Parzen estimators (independent per dimension, Optuna's default)."""

    name = "tpe"

    def build(self) -> optuna.samplers.BaseSampler:
        return optuna.samplers.TPESampler(seed=self.seed, n_startup_trials=_startup(self.trials))


class TPEMultivariate(Sampler):
    """TPE over all dimensions jointly (``multivariate=True``): the fair TPE to compare with
    a sampler that models the whole architecture (``search.md``)."""

    name = "tpe_multivariate"

    def build(self) -> optuna.samplers.BaseSampler:
        with warnings.catch_warnings():  # experimental in Optuna 5
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.TPESampler(
                seed=self.seed, n_startup_trials=_startup(self.trials), multivariate=True, group=True
            )


class NSGA2(Sampler):
    """NSGA-II: generations bred from the completed trials' non-dominated fronts."""

    name = "nsga2"

    def build(self) -> optuna.samplers.BaseSampler:
        return optuna.samplers.NSGAIISampler(population_size=max(4, min(50, self.trials // 3)), seed=self.seed)


class GP(Sampler):
    """A Gaussian process with log expected hypervolume improvement."""

    name = "gp"

    def build(self) -> optuna.samplers.BaseSampler:
        return optuna.samplers.GPSampler(seed=self.seed, n_startup_trials=_startup(self.trials))


class Random(Sampler):
    """Uniform draws: the baseline every other sampler is measured against."""

    name = "random"

    def build(self) -> optuna.samplers.BaseSampler:
        return optuna.samplers.RandomSampler(seed=self.seed)


class Grid(Sampler):
    """Every combination of a finite space, in a seeded order."""

    name = "grid"
    finite = True

    def build(self) -> optuna.samplers.BaseSampler:
        return optuna.samplers.GridSampler(dict(self.grid or {}), seed=self.seed)

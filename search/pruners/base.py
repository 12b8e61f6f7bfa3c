"""The base of every pruner a spec names: when a trial stops before its last epoch.

A pruner answers in one of three ways, each backend taking the one it can use:
``optuna()``, the study's pruner, fed one objective through ``trial.report`` (the local
backend, a replay); ``judge()``, archsweep's own decision on every objective (MO-ASHA, on
every backend alike); ``tune_scheduler()``, a Ray Tune scheduler (the ray backend)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import optuna


class Pruner:
    """One of ``search.pruner``'s values. A subclass sets ``name``, says where it works
    (``several_objectives``, ``on_ray``) and overrides the answers it gives."""

    name: ClassVar[str]
    halving: ClassVar[tuple[int, int]] = (1, 3)  # default (min_epochs, reduction_factor), where it takes them
    several_objectives: ClassVar[bool] = True  # judges a multi-objective sweep on the local backend
    on_ray: ClassVar[bool] = True

    def __init__(
        self,
        *,
        directions: Sequence[str],
        epochs: int,
        min_epochs: int | None = None,
        reduction_factor: int | None = None,
    ) -> None:
        """``directions``: max or min per objective; ``epochs``: the most a trial trains;
        ``min_epochs``, ``reduction_factor``: the spec's, None for this pruner's defaults."""
        first, eta = self.halving
        self.directions, self.epochs = list(directions), epochs
        self.min_epochs, self.reduction_factor = min_epochs or first, reduction_factor or eta

    @classmethod
    def problem(cls, *, objectives: int, ray: bool) -> str | None:
        """Why a sweep with ``objectives`` objectives (on the ray backend or not) cannot
        use this pruner, or None."""
        if ray and not cls.on_ray:
            return f"{cls.name} has no Ray Tune scheduler: on the ray backend early stopping is asha, median or mo_asha"
        if not ray and objectives > 1 and not cls.several_objectives:
            one = "Optuna's pruners take a single objective"
            return f"{one}; use pruner: mo_asha (every objective), none, or one objective"
        return None

    def optuna(self) -> optuna.pruners.BasePruner:
        """The study's pruner where trials report one objective to Optuna (else it never prunes)."""
        return optuna.pruners.NopPruner()

    def judge(self, metrics: Sequence[str]):
        """archsweep's own per-epoch judge on every objective (``metrics``, in order), for
        all backends alike; None where Optuna or Tune decides."""
        return None

    def tune_scheduler(self, metric: str, mode: str):
        """Ray Tune's scheduler on the first objective; None: Tune's FIFO (nothing stops early)."""
        return None

"""The base of every sampler a spec names: what it is told (a seed, the sweep's trial
budget, the space's finite grid when it needs one, what is known of the space before
training when it uses that) and what it gives (an Optuna sampler, which both backends ask
from: the local study directly, Ray Tune through OptunaSearch)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import optuna

from search.samplers.knowledge import Knowledge


class Sampler:
    """One of ``search.sampler``'s values. A subclass sets ``name`` (and ``finite`` when
    it can only search a finite space) and implements ``build``."""

    name: ClassVar[str]
    finite: ClassVar[bool] = False  # needs every dimension finite: handed the grid of them
    informed: ClassVar[bool] = False  # uses what is known before training: handed a Knowledge

    def __init__(
        self,
        *,
        seed: int,
        trials: int,
        grid: Mapping[str, list] | None = None,
        knowledge: Knowledge | None = None,
    ) -> None:
        """``seed``: the sweep's (a resumed sweep's, moved on by how far it got);
        ``trials``: the sweep's budget; ``grid``: every dimension's values (``finite`` only);
        ``knowledge``: the space's distributions, keys and exact costs (``informed`` only)."""
        self.seed, self.trials, self.grid, self.knowledge = seed, trials, grid, knowledge

    def build(self) -> optuna.samplers.BaseSampler:
        """A new Optuna sampler; feasibility reaches it through ``trial.set_constraint``
        (``search.sweep.pipeline.tell``)."""
        raise NotImplementedError

    @classmethod
    def problem(cls, *, finite: bool) -> str | None:
        """Why a space cannot be searched with this sampler (``finite``: whether every
        dimension of the space is), or None."""
        if cls.finite and not finite:
            return f"{cls.name} needs finite dimensions; give every float range a step"
        return None

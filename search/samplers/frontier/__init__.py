"""archsweep's own sampler (``search.sampler: frontier``): exact costs before training, no
redraws, a surrogate of what training measures and expected hypervolume improvement."""

from __future__ import annotations

import optuna

from search.samplers.base import Sampler
from search.samplers.frontier.sampler import FrontierSampler


class Frontier(Sampler):
    """Proposals near the front, costed exactly, picked by a random forest's expected
    hypervolume improvement (``search.samplers.frontier.sampler``)."""

    name = "frontier"
    informed = True
    acquisition = "optimistic"

    def build(self) -> optuna.samplers.BaseSampler:
        if self.knowledge is None:
            raise ValueError("the frontier sampler needs the space's knowledge (search.sweep.knowledge)")
        startup = min(10, max(3, self.trials // 6))
        return FrontierSampler(self.knowledge, seed=self.seed, startup=startup, acquisition=self.acquisition)


class FrontierEHVI(Frontier):
    """The frontier sampler picking by expected hypervolume improvement (bench search
    compares the two acquisitions)."""

    name = "frontier_ehvi"
    acquisition = "ehvi"


__all__ = ["Frontier", "FrontierEHVI", "FrontierSampler"]

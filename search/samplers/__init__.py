"""The samplers a spec can name (``search.sampler``): one registry of classes behind one
base (``base.Sampler``), read by the schema for the names it accepts and by every place
that builds a sampler (a sweep on either backend, a replay, ``bench search``).

Adding a sampler is one file with a ``Sampler`` subclass and one line here."""

from search.samplers.base import Sampler
from search.samplers.builtin import GP, NSGA2, TPE, Grid, Random, TPEMultivariate
from search.samplers.frontier import Frontier, FrontierEHVI
from search.samplers.knowledge import Described, Exact, Knowledge

SAMPLERS: dict[str, type[Sampler]] = {
    s.name: s for s in (TPE, TPEMultivariate, NSGA2, GP, Random, Grid, Frontier, FrontierEHVI)
}

__all__ = ["SAMPLERS", "Described", "Exact", "Knowledge", "Sampler"]

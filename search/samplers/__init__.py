"""The samplers a spec can name (``search.sampler``): one registry of classes behind one
base (``base.Sampler``), read by the schema for the names it accepts and by every place
that builds a sampler (a sweep on either backend, a replay, ``bench search``).

Adding a sampler is one file with a ``Sampler`` subclass and one line here."""

from search.samplers.base import Sampler
from search.samplers.builtin import GP, NSGA2, TPE, Grid, Random

SAMPLERS: dict[str, type[Sampler]] = {s.name: s for s in (TPE, NSGA2, GP, Random, Grid)}

__all__ = ["SAMPLERS", "Sampler"]

"""What archsweep knows about a space before anything trains, handed to the samplers that
use it (``Sampler.informed``): every parameter's distribution, conditional ones included;
which architectures two parameter sets are (a key, and the parameters that matter); and
the exact value of every cost that is counted rather than measured (params, GMACs; a
NAS-Bench-201 cell's conv cost), with whether the spec's constraints refuse it.

A sweep builds it from its spec (``search.sweep.knowledge``); ``bench search`` from a
table's own space. Samplers sit below specs, so this is plain data and callables."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from optuna.distributions import BaseDistribution

Params = Mapping[str, Any]


@dataclass(frozen=True)
class Exact:
    """The costs of one architecture known before training (metric -> value), and whether
    the spec's constraints on them let it train."""

    costs: Mapping[str, float]
    feasible: bool = True


@dataclass(frozen=True)
class Described:
    """One parameter set as an architecture: ``key`` is equal for two sets that train the
    same; ``active`` holds the parameters that matter (not those of an option not chosen,
    nor a left-out stage's)."""

    key: str
    active: Mapping[str, Any]


@dataclass(frozen=True)
class Knowledge:
    """``distributions``: every parameter a trial can suggest, by Optuna's name.
    ``objectives``: (metric, "max" or "min") in the study's order.
    ``describe``: a parameter set (a trial's: only those it suggested) as an architecture.
    ``exact``: its exact costs, or None when it cannot be built (refused at no cost).
    ``new_costs_per_ask``: how many architectures a sampler may cost for the first time in
    one ask (``exact`` may take milliseconds each: it builds the model on the meta device).
    ``features``: numbers that describe an architecture beyond its parameters (a cell's
    paths from input to output), for a surrogate; None: the parameters and costs alone."""

    distributions: Mapping[str, BaseDistribution]
    objectives: tuple[tuple[str, str], ...]
    describe: Callable[[Params], Described]
    exact: Callable[[Params], Exact | None]
    new_costs_per_ask: int = 64
    features: Callable[[Params], list[float]] | None = None

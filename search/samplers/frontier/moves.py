"""Candidate parameter sets near what is known to be good: one-choice moves of the front's
members, two-choice moves, crossovers of two members, and fresh draws, over any mix of
categorical, integer and float distributions (Optuna's)."""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

Params = dict[str, Any]
ENUMERABLE = 200_000  # a finite space this small is walked in full when draws find nothing new


def values(dist: BaseDistribution) -> list | None:
    """Every value of a finite distribution (None for a float without a step)."""
    if isinstance(dist, CategoricalDistribution):
        return list(dist.choices)
    if isinstance(dist, IntDistribution):
        return list(range(dist.low, dist.high + 1, dist.step))
    if isinstance(dist, FloatDistribution) and dist.step is not None:
        n = round((dist.high - dist.low) / dist.step)
        return [dist.low + i * dist.step for i in range(n + 1)]
    return None


def draw(dist: BaseDistribution, rng: np.random.Generator) -> Any:
    """One uniform value (log-uniform for a log range)."""
    if isinstance(dist, CategoricalDistribution):
        return dist.choices[rng.integers(len(dist.choices))]
    if isinstance(dist, (IntDistribution, FloatDistribution)) and dist.log:
        value = math.exp(rng.uniform(math.log(dist.low), math.log(dist.high)))
        return _snap(dist, value)
    grid = values(dist)
    if grid is not None:
        return grid[rng.integers(len(grid))]
    return float(rng.uniform(dist.low, dist.high))


def _snap(dist: BaseDistribution, value: float) -> Any:
    """``value`` clipped into ``dist`` and onto its step."""
    value = min(max(value, dist.low), dist.high)
    if isinstance(dist, IntDistribution):
        return int(dist.low + round((value - dist.low) / dist.step) * dist.step)
    if dist.step is not None:
        return float(dist.low + round((value - dist.low) / dist.step) * dist.step)
    return float(value)


def nearby(dist: BaseDistribution, value: Any, rng: np.random.Generator) -> list:
    """The values one move from ``value``: every other option of a choice; the next step
    each way on a grid of numbers (and one further draw when the grid is long); two
    perturbations of a continuous value, a tenth of the (log) range wide."""
    if isinstance(dist, CategoricalDistribution):
        return [c for c in dist.choices if c != value]
    grid = values(dist)
    if grid is not None and not dist.log:
        i = min(range(len(grid)), key=lambda j: abs(grid[j] - value))
        out = [grid[j] for j in (i - 1, i + 1) if 0 <= j < len(grid)]
        return out + ([draw(dist, rng)] if len(grid) > 5 else [])
    if dist.log:
        scale = 0.1 * (math.log(dist.high) - math.log(dist.low))
        return [_snap(dist, value * math.exp(scale * z)) for z in rng.standard_normal(2)]
    scale = 0.1 * (dist.high - dist.low)
    return [_snap(dist, value + scale * z) for z in rng.standard_normal(2)]


def fill(params: Mapping[str, Any], space: Mapping[str, BaseDistribution], rng: np.random.Generator) -> Params:
    """A trial's parameters (only those it suggested) completed with draws for the rest."""
    return {name: params[name] if name in params else draw(dist, rng) for name, dist in space.items()}


def random(space: Mapping[str, BaseDistribution], rng: np.random.Generator) -> Params:
    return {name: draw(dist, rng) for name, dist in space.items()}


def single_moves(params: Params, space: Mapping[str, BaseDistribution], rng: np.random.Generator) -> list[Params]:
    """Every parameter set one move from ``params``."""
    return [{**params, name: v} for name, dist in space.items() for v in nearby(dist, params[name], rng)]


def mutate(params: Params, space: Mapping[str, BaseDistribution], rng: np.random.Generator, moves: int) -> Params:
    """``params`` with ``moves`` parameters moved one step each."""
    out = dict(params)
    names = list(space)
    for i in rng.choice(len(names), size=min(moves, len(names)), replace=False):
        name = names[i]
        options = nearby(space[name], out[name], rng)
        if options:
            out[name] = options[rng.integers(len(options))]
    return out


def crossover(a: Params, b: Params, rng: np.random.Generator) -> Params:
    """Each parameter from ``a`` or ``b`` at random."""
    return {name: a[name] if rng.random() < 0.5 else b[name] for name in a}


def proposals(
    parents: list[Params], space: Mapping[str, BaseDistribution], rng: np.random.Generator, draws: int
) -> Iterator[Params]:
    """Candidates, most promising kinds interleaved: one-choice moves of the parents (the
    front first), crossovers and two-choice moves of them, and ``draws`` fresh draws."""
    singles = [p for parent in parents for p in single_moves(parent, space, rng)]
    rng.shuffle(singles)
    crosses, doubles = [], []
    if len(parents) >= 2:
        crosses = [crossover(*(parents[i] for i in rng.choice(len(parents), 2, replace=False)), rng) for _ in range(64)]
    if parents:
        doubles = [mutate(parents[rng.integers(len(parents))], space, rng, 2) for _ in range(64)]
    fresh = [random(space, rng) for _ in range(draws)]
    groups = [singles, crosses, doubles, fresh]
    for batch in itertools.zip_longest(*groups):
        yield from (p for p in batch if p is not None)


def enumerate_all(space: Mapping[str, BaseDistribution], rng: np.random.Generator) -> Iterator[Params] | None:
    """Every parameter set of a finite space (in a seeded order of its first dimension),
    or None when the space is not finite or too large to walk."""
    grids = {name: values(dist) for name, dist in space.items()}
    if any(g is None for g in grids.values()) or math.prod(len(g) for g in grids.values()) > ENUMERABLE:
        return None
    names = list(grids)
    order = [list(rng.permutation(len(g))) for g in grids.values()]
    return ({n: grids[n][i] for n, i in zip(names, combo, strict=True)} for combo in itertools.product(*order))

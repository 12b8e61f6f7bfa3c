"""How well the frontier sampler's surrogate ranks what it has not seen (``bench search``
writes it as search_surrogate.csv): a random forest on the ranks of ``n`` architectures'
results (``search.samplers.frontier.surrogate``, the features the sampler uses), Kendall's
tau against the accuracy of every other architecture of the table, over all of them and
within one exact cost (where the cost says nothing: NB201's cost levels; digits' GMACs
in ten bands), the mean of several random training sets."""

from __future__ import annotations

import itertools
import math

import numpy as np
from scipy.stats import kendalltau

from search.samplers.frontier.surrogate import Features, Forest, Ranks
from search.samplers.knowledge import Knowledge
from search.sweep import study
from search.sweep.knowledge import knowledge as spec_knowledge

TRAINED = (20, 50, 100, 200, 400)
DRAWS = 5


def _walked(known: Knowledge, table, grid: dict[str, list]) -> list[tuple]:
    """(description, row) of every row of ``table`` that a walk of ``grid`` reaches, once
    each, in the walk's order (describing every point of the grid is the slow part: walk
    once, then build features for each setting with ``_architectures``)."""
    rows, out = table.by_key(), {}
    for combo in itertools.product(*grid.values()):
        described = known.describe(dict(zip(grid, combo, strict=True)))
        row = rows.get(described.key)
        if row is not None and described.key not in out:
            out[described.key] = (described, row)
    return list(out.values())


def _architectures(
    known: Knowledge, table, grid: dict[str, list], extra: tuple[str, ...] = (), walked: list | None = None
) -> list[tuple[np.ndarray, float, float]]:
    """(features, final accuracy, cost) of every row of ``table``, from a walk of ``grid``
    (or the ``_walked`` one given); the row's costs named in ``extra`` (zero-cost proxies)
    appended to the features as they are (NaN where a row lacks one: the forest routes
    missing values)."""
    features = Features(known.distributions, [m for m, _ in known.objectives if m != "val_accuracy"], known.features)
    out = []
    for described, row in _walked(known, table, grid) if walked is None else walked:
        cost = next(v for k, v in row.costs.items() if k in features.costs)
        added = [row.costs.get(n, math.nan) for n in extra]
        out.append((np.append(features(described.active, row.costs), added), row.curve[-1], cost))
    return out


def ranking(
    name: str,
    table,
    known: Knowledge,
    grid: dict[str, list],
    seeds: int = DRAWS,
    trained: tuple[int, ...] = TRAINED,
    extra: tuple[str, ...] = (),
) -> list[dict]:
    """Rows of (table, trained, kendall_all, kendall_within_cost) for each training size
    in ``trained``, with the costs ``extra`` as further features (``_architectures``)."""
    data = _architectures(known, table, grid, extra)
    rows = []
    for n in trained:
        if n >= len(data) // 2:
            continue
        overall, within = split_taus(data, n, seeds)
        rows.append(
            {
                "table": name,
                "trained": n,
                "kendall_all": float(np.mean(overall)),
                "kendall_within_cost": float(np.mean(within)),
                "architectures": len(data),
            }
        )
    return rows


def split_taus(data: list[tuple[np.ndarray, float, float]], n: int, seeds: int) -> tuple[list, list]:
    """Kendall's tau over all and within cost (one per seed) of the forest trained on ``n``
    of ``data``'s architectures (a random split per seed) on the others."""
    x = np.array([d[0] for d in data])
    y = np.array([d[1] for d in data])
    cost = np.array([d[2] for d in data])
    overall, within = [], []
    for seed in range(seeds):
        order = np.random.default_rng(seed).permutation(len(data))
        seen, rest = order[:n], order[n:]
        ranks = Ranks(-y[seen, None])
        forest = Forest(seed)
        forest.fit(x[seen], ranks.forward(-y[seen, None]))
        predicted = -forest.predict(x[rest])[0][:, 0]
        overall.append(kendalltau(predicted, y[rest])[0])
        within.append(_within(predicted, y[rest], cost[rest]))
    return overall, within


def _within(predicted: np.ndarray, truth: np.ndarray, cost: np.ndarray, stat=kendalltau) -> float:
    """Kendall's tau (or ``stat``: scipy's spearmanr) inside each cost level of at least
    10 architectures, weighted by size; a cost of many distinct values (digits' GMACs) in
    10 bands of equal counts instead."""
    if len(np.unique(cost)) > len(cost) // 10:
        edges = np.quantile(cost, np.linspace(0, 1, 11)[1:-1])
        cost = np.searchsorted(edges, cost)
    taus, weights = [], []
    for level in np.unique(cost):
        at = cost == level
        if at.sum() >= 10:
            tau = stat(predicted[at], truth[at])[0]
            if not np.isnan(tau):
                taus.append(tau)
                weights.append(at.sum())
    return float(np.average(taus, weights=weights)) if taus else float("nan")


def for_spec(name: str, table, spec) -> list[dict]:
    """``ranking`` for a recorded table of a spec's space (the digits table)."""
    return ranking(name, table, spec_knowledge(spec), study.grid_space(spec))

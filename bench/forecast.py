"""Whether the architecture sharpens MO-ASHA's forecast (``search.pruners.forecast``): on
the recorded digits table, the root mean square error of the final validation accuracy
predicted for the architectures not fitted, mean of random splits, by the rung value's
isotonic map (the judge's forecast), the map plus a random forest on the frontier
sampler's features fitted to the map's residuals, one forest with the rung value as a
feature, and a precision-weighted blend of the map with the forest's prediction from the
architecture alone (the map's local spread against the trees' spread); and how many of
the map's spreads the exact-front member farthest above the map ends there
(``front_spreads``: what the judge's protection would need to keep every member).

    PYTHONPATH=. .venv/bin/python -m bench.forecast          # 10 splits, 20 / 40 / 80 fitted, rungs 5 and 10
"""

from __future__ import annotations

import argparse

import numpy as np
from sklearn.ensemble import RandomForestRegressor

from bench import search
from bench.surrogate import _walked
from search.pruners.forecast import Map
from search.samplers.frontier.surrogate import TREES, Features
from search.sweep import study
from search.sweep.knowledge import knowledge as spec_knowledge


def _forest(x: np.ndarray, y: np.ndarray, seed: int) -> RandomForestRegressor:
    return RandomForestRegressor(TREES, max_features=0.5, random_state=seed, n_jobs=1).fit(x, y)


def errors(
    features: np.ndarray, early: np.ndarray, final: np.ndarray, fitted: int, seed: int, front: np.ndarray
) -> dict[str, float]:
    """Each predictor's RMSE on the architectures outside one random split of ``fitted``,
    and how many of the map's spreads the exact-front member (``front``) farthest above
    the map ends there: how far the judge's protection would have to reach to keep it."""
    order = np.random.default_rng(seed).permutation(len(final))
    train, test = order[:fitted], order[fitted:]
    mapped = Map(early[train], final[train])
    by_map, spread = mapped(early[test]), mapped.spread(early[test])
    residual = _forest(features[train], final[train] - mapped(early[train]), seed)
    with_rung = _forest(np.c_[features[train], early[train]], final[train], seed)
    alone = _forest(features[train], final[train], seed)
    trees = np.stack([t.predict(features[test]) for t in alone.estimators_])
    weight = spread**-2 / (spread**-2 + np.maximum(trees.std(0), 1e-3) ** -2)
    predicted = {
        "map": by_map,
        "map+residual": by_map + residual.predict(features[test]),
        "forest+rung": with_rung.predict(np.c_[features[test], early[test]]),
        "forest": trees.mean(0),
        "blend": weight * by_map + (1 - weight) * trees.mean(0),
    }
    out = {name: float(np.sqrt(np.mean((p - final[test]) ** 2))) for name, p in predicted.items()}
    above = ((final[test] - by_map) / spread)[front[test]]
    out["front_spreads"] = float(above.max()) if above.size else float("nan")
    return out


def run(rungs=(5, 10), fitted=(20, 40, 80), splits: int = 10, say=print) -> list[dict]:
    table, _, _, _, front_keys, spec = search._tables(False)["digits"]
    known = spec_knowledge(spec)
    walked = _walked(known, table, study.grid_space(spec))
    make = Features(known.distributions, ["gmacs"], known.features)
    features = np.array([make(d.active, r.costs) for d, r in walked])
    final = np.array([r.curve[-1] for _, r in walked])
    front = np.array([r.key in front_keys for _, r in walked])
    rows = []
    for rung in rungs:
        early = np.array([r.curve[rung - 1] for _, r in walked])
        for n in fitted:
            each = [errors(features, early, final, n, seed, front) for seed in range(splits)]
            row = {"rung": rung, "fitted": n, **{k: float(np.mean([e[k] for e in each])) for k in each[0]}}
            say(" ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()))
            rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--splits", type=int, default=10)
    run(splits=parser.parse_args().splits)


if __name__ == "__main__":
    main()

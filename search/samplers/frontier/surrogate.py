"""The frontier sampler's model of what training will say: features that generalise across
architectures, and a random forest whose trees' spread is the uncertainty.

Random forests measured against extra trees and a Gaussian process (RBF on the same
features, sklearn, marginal-likelihood fit) on NAS-Bench-201, Kendall tau on 3,000 held-out
cells, mean of 3 draws: forest 0.57 / 0.60 / 0.63 / 0.69 with 50 / 100 / 300 / 1,000
trained (fit 0.03-0.10 s); extra trees 0.49 / 0.53 / 0.64 / 0.72; the GP 0.30 / 0.43 /
0.50 / 0.54 (2.3 s to fit at 1,000)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from statistics import NormalDist
from typing import Any

import numpy as np
from optuna.distributions import BaseDistribution, CategoricalDistribution

TREES = 32


class Features:
    """A parameter set and its exact costs as a vector: a one-hot per choice, each number
    scaled to [0, 1] (on a log scale for a log range; -1 when the parameter does not
    matter), how many times each option occurs among choices that share their options
    (NAS-Bench-201's op counts, a mixer used in several stages), and log1p of each cost."""

    def __init__(self, space: Mapping[str, BaseDistribution], costs: list[str], extra=None) -> None:
        self.space, self.costs, self.extra = dict(space), costs, extra
        self.choices = {n: list(d.choices) for n, d in space.items() if isinstance(d, CategoricalDistribution)}
        groups: dict[tuple, list[str]] = {}
        for name, options in self.choices.items():
            groups.setdefault(tuple(map(repr, options)), []).append(name)
        self.shared = [names for names in groups.values() if len(names) > 1]

    def __call__(self, active: Mapping[str, Any], costs: Mapping[str, float]) -> np.ndarray:
        out: list[float] = []
        for name, dist in self.space.items():
            if name in self.choices:
                out += [float(active.get(name, _ABSENT) == c) for c in self.choices[name]]
            elif name not in active:
                out.append(-1.0)
            elif dist.log:
                out.append((math.log(active[name]) - math.log(dist.low)) / (math.log(dist.high / dist.low) or 1.0))
            else:
                out.append((active[name] - dist.low) / ((dist.high - dist.low) or 1.0))
        for names in self.shared:
            for option in self.choices[names[0]]:
                out.append(float(sum(active.get(n, _ABSENT) == option for n in names)))
        out += [math.log1p(max(costs[c], 0.0)) for c in self.costs]
        if self.extra is not None:
            out += self.extra(active)
        return np.asarray(out)


_ABSENT = object()
_NORMAL = NormalDist()


class Ranks:
    """Each objective's results mapped to normal scores of their ranks (a Gaussian copula)
    and back: the forest learns the order of architectures, not the scale, so a few
    diverged trainings (digits: 0.26 accuracy among 0.98s) do not flatten the rest. Back
    from scores by the observed values, past either end along the last tenth's slope."""

    def __init__(self, y: np.ndarray) -> None:
        n = len(y)
        self.y = np.sort(y, axis=0)
        self.z = np.array([_NORMAL.inv_cdf((i + 0.5) / n) for i in range(n)])
        self.tail = max(1, n // 10)

    def forward(self, y: np.ndarray) -> np.ndarray:
        ranks = np.argsort(np.argsort(y, axis=0, kind="stable"), axis=0)
        return self.z[ranks]

    def inverse(self, z: np.ndarray, column: int) -> np.ndarray:
        y, zs, k = self.y[:, column], self.z, self.tail
        inside = np.interp(z, zs, y)
        low = (y[k] - y[0]) / (zs[k] - zs[0]) if len(y) > k else 0.0
        high = (y[-1] - y[-1 - k]) / (zs[-1] - zs[-1 - k]) if len(y) > k else 0.0
        return np.where(z < zs[0], y[0] + (z - zs[0]) * low, np.where(z > zs[-1], y[-1] + (z - zs[-1]) * high, inside))


class Forest:
    """A random forest per sweep, refitted as results arrive; mean and spread of its trees."""

    def __init__(self, seed: int) -> None:
        self.seed, self.model = seed, None

    def fit(self, x: np.ndarray, y: np.ndarray, weights: np.ndarray | None = None) -> None:
        """``y`` (n, outputs): every unknown objective, one forest for all; ``weights``: each
        result's (an imputed one may count less than a measured one)."""
        from sklearn.ensemble import RandomForestRegressor  # here: every command loads the registry, few fit

        self.model = RandomForestRegressor(
            n_estimators=TREES, max_features=0.5, min_samples_leaf=1, random_state=self.seed, n_jobs=1
        ).fit(x, y[:, 0] if y.shape[1] == 1 else y, sample_weight=weights)
        self.floor = 0.02 * (y.max(0) - y.min(0)) + 1e-9  # no candidate is ever certain

    def predict(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        per_tree = np.stack([t.predict(x).reshape(len(x), -1) for t in self.model.estimators_])
        return per_tree.mean(0), np.maximum(per_tree.std(0), self.floor)

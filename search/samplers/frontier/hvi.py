"""Hypervolume improvement of candidate points over a front, vectorised over candidates:
exact with one or two objectives (the usual accuracy-against-cost case), a shared Monte
Carlo estimate with more. Everything is minimised: a maximised objective comes negated."""

from __future__ import annotations

import numpy as np

MC_SAMPLES = 4096


def nondominated(points: np.ndarray) -> np.ndarray:
    """The rows of ``points`` (m, d) that no other row dominates (duplicates kept once)."""
    if len(points) == 0:
        return points
    points = np.unique(points, axis=0)
    le = (points[:, None, :] >= points[None, :, :]).all(-1)  # [i, j]: j at least as good as i
    lt = (points[:, None, :] > points[None, :, :]).any(-1)
    dominated = (le & lt).any(1)
    return points[~dominated]


def improvement(front: np.ndarray, points: np.ndarray, ref: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The hypervolume (bounded by ``ref``) each of ``points`` (n, d) adds to ``front`` (m, d)."""
    points = np.minimum(points, ref)  # a point past the reference adds nothing on that axis
    front = front[(front < ref).all(1)] if len(front) else front.reshape(0, points.shape[1])
    d = points.shape[1]
    if d == 1:
        best = front[:, 0].min() if len(front) else ref[0]
        return np.maximum(0.0, best - points[:, 0])
    if d == 2:
        return _two(front, points, ref)
    return _monte_carlo(front, points, ref, rng)


def _two(front: np.ndarray, points: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Exact in two objectives: the area of [x, rx] x [y, ry] above the front's staircase.
    Between consecutive front x's the staircase is the least y of the members to the left."""
    order = np.argsort(front[:, 0], kind="stable")
    xs, ys = front[order, 0], np.minimum.accumulate(front[order, 1]) if len(front) else front[:, 1]
    lo = np.concatenate([[-np.inf], xs])  # segment k spans [lo[k], hi[k]) with ceiling top[k]
    hi = np.concatenate([xs, [ref[0]]])
    top = np.concatenate([[ref[1]], ys])
    x, y = points[:, :1], points[:, 1:2]
    width = np.clip(np.minimum(hi, ref[0]) - np.maximum(lo, x), 0.0, None)
    height = np.clip(np.minimum(top, ref[1]) - y, 0.0, None)
    return (width * height).sum(1)


def _monte_carlo(front: np.ndarray, points: np.ndarray, ref: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Three or more objectives: uniform samples of the box below ``ref`` that the front
    leaves open, counted under each point."""
    low = np.minimum(points.min(0), front.min(0) if len(front) else points.min(0))
    volume = float(np.prod(ref - low))
    if volume <= 0:
        return np.zeros(len(points))
    u = low + (ref - low) * rng.random((MC_SAMPLES, len(ref)))
    if len(front):
        u = u[~(u[:, None, :] >= front[None, :, :]).all(-1).any(1)]
    if len(u) == 0:
        return np.zeros(len(points))
    return volume / MC_SAMPLES * (u[None, :, :] >= points[:, None, :]).all(-1).sum(1)


def expected(
    front: np.ndarray,
    exact: np.ndarray,
    unknown: np.ndarray,
    mean: np.ndarray,
    std: np.ndarray,
    ref: np.ndarray,
    rng: np.random.Generator,
    back=None,
) -> np.ndarray:
    """Expected hypervolume improvement of n candidates whose objectives at ``exact``
    (columns: known, given in ``exact`` (n, d)) are certain and at ``unknown`` (column
    indices) normal with ``mean`` and ``std`` (n, u). One unknown: Gauss-Hermite
    quadrature over 9 nodes; several: 16 shared joint draws."""
    n, u = mean.shape
    if u == 1:
        nodes, weights = np.polynomial.hermite_e.hermegauss(9)
        z, w = nodes[:, None], weights / weights.sum()
    else:
        z, w = rng.standard_normal((16, u)), np.full(16, 1 / 16)
    draws = np.repeat(exact[:, None, :], len(w), axis=1)  # (n, q, d)
    scores = mean[:, None, :] + std[:, None, :] * z[None, :, :]
    if back is not None:  # the model's scale to the objectives' (surrogate.Ranks)
        scores = np.stack([back(scores[:, :, j], j) for j in range(u)], axis=-1)
    draws[:, :, unknown] = scores
    gains = improvement(front, draws.reshape(-1, exact.shape[1]), ref, rng).reshape(n, len(w))
    return gains @ w

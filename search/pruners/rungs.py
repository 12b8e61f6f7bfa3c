"""Multi-objective asynchronous successive halving (MO-ASHA, Schmucker et al. 2021,
arXiv 2106.12639): the rung decisions, without I/O and without Optuna.

Optuna's pruners refuse multi-objective studies and ``trial.report`` raises in them, so
archsweep decides rungs itself. A trial is judged after each epoch of
``rung_epochs(...)`` against every trial that reached the same rung before it, on the
full objective vector at that rung (accuracy so far, and the costs, which are known
before training and so compare exactly).

The order of the points at a rung (``order``), best first:

1. non-dominated sorting: front 0 is the points no other point dominates (at least as
   good in every objective, better in one), front 1 those only front 0 dominates, and
   so on; a lower front comes first. Equal points do not dominate each other.
2. within a front, NSGA-II's crowding distance, larger first: per objective, the front
   is sorted by value (ties by arrival); the first and last points get infinity, each
   inner point the gap between its two neighbours divided by the front's range in that
   objective; the objectives' shares are summed. An objective in which the whole front
   is equal adds nothing, not even the infinities (as Optuna's NSGA-II): there is no
   boundary to keep.
3. remaining ties by arrival: the earlier index first, so the order is deterministic.

Promotion is "stopping" ASHA as Optuna's ``SuccessiveHalvingPruner`` does it: no waiting
for a full rung. A trial continues iff its position (from 0) is below
``max(1, n // reduction_factor)``, n counting every trial at the rung so far, itself
included. So the first ``reduction_factor - 1`` trials at a rung continue only if they
are first in the order so far (Optuna's bootstrap: it cannot pause a trial and promote
it later). Unlike Optuna's single-objective ``>=`` threshold, ties never share a place:
of two equal vectors only the earlier can take the last place above the cut.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

# "smaller is better" form: a maximised objective is negated; Optuna's names are accepted
# so a caller can pass study.directions as text.
_SIGN = {"min": 1.0, "minimize": 1.0, "max": -1.0, "maximize": -1.0}


def rung_epochs(min_epochs: int, reduction_factor: int, max_epochs: int) -> list[int]:
    """The epochs after which a rung decision is taken: min_epochs * eta**k, k = 0, 1, ...,
    strictly below max_epochs (a trial that reaches max_epochs is complete, never pruned)."""
    if min_epochs < 1:
        raise ValueError(f"min_epochs must be at least 1, not {min_epochs}")
    if reduction_factor < 2:
        raise ValueError(f"reduction_factor must be at least 2, not {reduction_factor}")
    if max_epochs < 1:
        raise ValueError(f"max_epochs must be at least 1, not {max_epochs}")
    epochs, epoch = [], min_epochs
    while epoch < max_epochs:
        epochs.append(epoch)
        epoch *= reduction_factor
    return epochs


def _minimised(points: Sequence[Sequence[float]], directions: Sequence[str]) -> np.ndarray:
    """(n, k) values with smaller better in every objective; refuses what cannot be ranked."""
    if not directions or any(d not in _SIGN for d in directions):
        raise ValueError(f"directions must be 'max' or 'min' per objective, not {list(directions)}")
    k = len(directions)
    for i, point in enumerate(points):
        if len(point) != k:
            raise ValueError(f"point {i} has {len(point)} values for {k} objectives")
    values = np.array(points, dtype=float).reshape(len(points), k)
    # A non-finite loss already fails the trial (runs.train), so NaN here is a caller's bug:
    # NaN compares false both ways and would sit on front 0.
    if not np.all(np.isfinite(values)):
        raise ValueError("rung values must be finite")
    return values * np.array([_SIGN[d] for d in directions])


def _fronts(values: np.ndarray) -> np.ndarray:
    """(n,) front index of each point (Deb's fast non-dominated sort)."""
    n = len(values)
    no_worse = np.all(values[:, None, :] <= values[None, :, :], axis=2)  # [i, j]: i <= j everywhere
    better = np.any(values[:, None, :] < values[None, :, :], axis=2)
    dominates = no_worse & better  # [i, j]: i dominates j
    dominated_by = dominates.sum(axis=0)  # (n,) how many still-unplaced points dominate j
    front = np.full(n, -1)
    current, f = np.flatnonzero(dominated_by == 0), 0
    while current.size:
        front[current] = f
        dominated_by = dominated_by - dominates[current].sum(axis=0)
        current, f = np.flatnonzero((dominated_by == 0) & (front < 0)), f + 1
    return front


def _crowding(values: np.ndarray) -> np.ndarray:
    """(m,) NSGA-II crowding distance of the m points of one front, rows in arrival order."""
    distance = np.zeros(len(values))
    for column in values.T:
        span = column.max() - column.min()
        if span == 0:  # the whole front is equal here: no boundary, no gaps
            continue
        ranked = np.argsort(column, kind="stable")  # stable: equal values stay in arrival order
        distance[ranked[1:-1]] += (column[ranked[2:]] - column[ranked[:-2]]) / span
        distance[ranked[[0, -1]]] = np.inf
    return distance


def _rank(points, directions) -> tuple[list[int], np.ndarray]:
    """The order (indices, best first) and each point's front."""
    values = _minimised(points, directions)
    front = _fronts(values)
    crowding = np.zeros(len(values))
    for f in range(front.max(initial=-1) + 1):
        members = np.flatnonzero(front == f)  # ascending: arrival order
        crowding[members] = _crowding(values[members])
    index = np.arange(len(values))
    ranked = np.lexsort((index, -crowding, front))  # last key first: front, then crowding, then index
    return ranked.tolist(), front


def order(points: Sequence[Sequence[float]], directions: Sequence[str]) -> list[int]:
    """Indices of the points at one rung, best first (the rule is in the module docstring)."""
    return _rank(points, directions)[0]


def _cut(n: int, reduction_factor: int) -> int:
    """How many of n trials at a rung continue; at least one, so a rung never stalls."""
    if reduction_factor < 2:
        raise ValueError(f"reduction_factor must be at least 2, not {reduction_factor}")
    return max(1, n // reduction_factor)


def promotable(
    candidate: int, points: Sequence[Sequence[float]], directions: Sequence[str], reduction_factor: int
) -> bool:
    """Whether points[candidate] continues past this rung; points hold every trial that
    reached the rung so far, the candidate included, in arrival order."""
    if not 0 <= candidate < len(points):
        raise ValueError(f"candidate {candidate} is not one of the {len(points)} points")
    return order(points, directions).index(candidate) < _cut(len(points), reduction_factor)


@dataclass(frozen=True)
class RungDecision:
    """One rung decision, with what an MLflow tag needs to say why. position and front
    count from 0 (front 0: non-dominated); the trial proceeds iff position < cut, unless
    a forecast of its final values overrode halving (``forecast``: why, in words)."""

    proceed: bool
    position: int
    cut: int
    front: int
    rung: int  # index into rung_epochs(...)
    size: int  # trials at the rung so far, the candidate included
    epoch: int | None = None  # the rung's epoch, when the caller gives it
    forecast: str = ""  # set when the forecast decided against halving (search.pruners.mo_asha)

    @property
    def reason(self) -> str:
        """One line, e.g. "pruned at rung 2 (epoch 4): position 5 of 9 by non-dominated
        sorting (behind 1 front), the top 3 continue"; with a forecast's override, what
        halving alone would have done and why the forecast did not."""
        where = f"rung {self.rung}" + ("" if self.epoch is None else f" (epoch {self.epoch})")
        verdict = f"continues past {where}" if self.proceed else f"pruned at {where}"
        fronts = "on the front" if self.front == 0 else f"behind {self.front} front{'s' * (self.front > 1)}"
        top = f"the top {self.cut} continue" if self.cut > 1 else "only the top 1 continues"
        line = f"{verdict}: position {self.position + 1} of {self.size} by non-dominated sorting ({fronts}), {top}"
        return f"{line}; {self.forecast}" if self.forecast else line


def decide(
    candidate_key: str,
    rung: int,
    vector: Sequence[float],
    records: Mapping[str, Sequence[float]],
    directions: Sequence[str],
    reduction_factor: int,
    *,
    epoch: int | None = None,
) -> RungDecision:
    """The decision for a trial reaching ``rung`` with ``vector``. ``records`` maps the keys
    of the trials that reached the rung earlier, in arrival order, to their vectors; the
    candidate comes last. A candidate already in ``records`` (a retried trial reaching the
    rung again) counts once: it keeps its first arrival place, with the new vector."""
    keys = list(records)
    points = [vector if key == candidate_key else records[key] for key in keys]
    if candidate_key in records:
        candidate = keys.index(candidate_key)
    else:
        candidate = len(points)
        points.append(vector)
    ranked, front = _rank(points, directions)
    position, cut = ranked.index(candidate), _cut(len(points), reduction_factor)
    return RungDecision(position < cut, position, cut, int(front[candidate]), rung, len(points), epoch)


class Rungs:
    """The vectors recorded at each rung of one sweep, in arrival order, and the decisions
    taken on them: the one piece of state MO-ASHA keeps. Both backends and replay judge
    through it, so one worker and one seed decide identically everywhere. Thread-safe
    (the local backend's trials report from several threads)."""

    def __init__(self, epochs: Sequence[int], directions: Sequence[str], reduction_factor: int) -> None:
        self.epochs = list(epochs)  # rung k is judged after epochs[k] epochs
        self.directions, self.reduction_factor = list(directions), reduction_factor
        self.records: list[dict[str, list[float]]] = [{} for _ in self.epochs]
        self._lock = threading.Lock()

    def judge(self, key: str, epochs_done: int, vector: Sequence[float]) -> RungDecision | None:
        """The decision for trial ``key`` after ``epochs_done`` epochs, or None when that is
        not a rung; the vector joins the rung's records either way."""
        if epochs_done not in self.epochs:
            return None
        rung = self.epochs.index(epochs_done)
        with self._lock:
            decision = decide(
                key, rung, vector, self.records[rung], self.directions, self.reduction_factor, epoch=epochs_done
            )
            self.records[rung][key] = [float(v) for v in vector]
        return decision

    def restore(self, key: str, epochs_done: int, vector: Sequence[float]) -> None:
        """A record of an earlier session (a resumed sweep), in its arrival order."""
        if epochs_done in self.epochs:
            with self._lock:
                self.records[self.epochs.index(epochs_done)].setdefault(key, [float(v) for v in vector])

"""The frontier sampler: archsweep's own, for what a black-box sampler is never told.

Each ask proposes candidates near the current front (``moves``), drops every architecture
already tried or running (no draw is a repeat while the space holds something new), costs
the rest exactly before training (``Knowledge.exact``: params and GMACs from the model on
the meta device; a constraint on them refuses a candidate at no cost), predicts what only
training measures with a random forest on the ranks of the results (``surrogate``), and
asks for the candidate whose exact costs and optimistic prediction (a sigma better than
the mean) add the most hypervolume to the front (``hvi``; expected hypervolume
improvement instead with ``acquisition="ehvi"``). Trials still running count as done at
their predicted values, so that concurrent asks (Ray, ``--workers N``) spread out instead
of proposing one architecture twice. Until ``startup`` trials have finished it spreads
its draws over the exact costs.

It keeps no state between asks but caches and its random generator: everything it uses is
read from the study, so a resumed, warm-started or amended sweep samples on from what its
study holds."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial, TrialState

from search.samplers.frontier import hvi, moves
from search.samplers.frontier.surrogate import Features, Forest, Ranks
from search.samplers.knowledge import Described, Exact, Knowledge

# The acquisition: the hypervolume a candidate adds at its exact costs and an accuracy one
# sigma better than predicted. Expected hypervolume improvement ("ehvi", the sampler
# frontier_ehvi) chases long shots of large spread: bench search measures both.
OPTIMISM = 1.0
DRAWS = 128  # fresh draws among each ask's candidates
PARENTS = 16  # front members (then the next front's) whose neighbours are proposed
LEVELS = 64
# The forest's trees agree where they have no data: a candidate whose exact costs few
# results share gets the prior's spread back (a normal score's prior sd is 1), shrunk as
# 1 / (1 + results within BAND of the log-costs' range). Measured on NB201, 10 seeds: 99%
# of the exact hypervolume after a median 144 evaluations instead of 286, 99.9% after 567
# instead of never within 800 (the costliest cells were left untried: their forecasts
# never rose above the front the cheap cells made).
PRIOR_SD = 1.0
BAND = 0.02  # exact costs of at most this many values: the best at each is a parent too


@dataclass(frozen=True)
class _Candidate:
    params: dict
    described: Described
    exact: Exact


class FrontierSampler(optuna.samplers.BaseSampler):
    def __init__(self, knowledge: Knowledge, *, seed: int, startup: int = 8, acquisition: str = "optimistic") -> None:
        self.knowledge, self.startup, self.acquisition = knowledge, startup, acquisition
        self._rng = np.random.default_rng(seed)
        self._independent = optuna.samplers.RandomSampler(seed=seed)
        self._maximise = np.array([d == "max" for _, d in knowledge.objectives])
        self._described: dict[int, Described] = {}  # finished trial number -> its architecture
        self._exact: dict[str, Exact | None] = {}  # architecture key -> its exact costs
        self._vectors: dict[str, np.ndarray] = {}  # architecture key -> its features
        self._cost_range: dict[str, tuple[float, float]] = {}  # each exact cost's extremes, of all costed
        self._forest, self._fitted = Forest(seed), -1
        self._features: Features | None = None

    # -- Optuna's sampler interface ----------------------------------------------------

    def infer_relative_search_space(self, study, trial) -> dict[str, BaseDistribution]:
        return dict(self.knowledge.distributions)

    def sample_relative(self, study, trial, search_space) -> dict[str, Any]:
        if not search_space:
            return {}
        return self.pick(study.get_trials(deepcopy=False), trial.number)

    def sample_independent(self, study, trial, param_name, param_distribution) -> Any:
        return self._independent.sample_independent(study, trial, param_name, param_distribution)

    # -- one ask -----------------------------------------------------------------------

    def pick(self, trials: Sequence[FrozenTrial], number: int) -> dict[str, Any]:
        """The parameters of trial ``number``, given every trial of the study."""
        known = self._known(trials, number)
        candidates = self._candidates(known)
        if not candidates:  # the space is exhausted: a repeat, which the sweep answers and stops on
            return moves.random(self.knowledge.distributions, self._rng)
        if len(known.observed) < self.startup:
            return self._spread(candidates, known).params
        return self._best(candidates, known).params

    def _known(self, trials: Sequence[FrozenTrial], number: int) -> _Known:
        known = _Known()
        for t in trials:
            if t.number == number or not t.params:
                continue
            finished = t.state.is_finished()
            if t.state == TrialState.FAIL and "fail_reason" not in t.user_attrs:
                continue  # interrupted: it runs again, so it may be drawn again
            described = self._described.get(t.number) or self.knowledge.describe(t.params)
            if finished:
                self._described[t.number] = described
            known.tried.add(described.key)
            if not finished:
                known.pending.append((t, described))
            elif t.state == TrialState.COMPLETE and t.values is not None:
                known.observed.append((t, described))
        return known

    def _cost(self, params: Mapping[str, Any], key: str) -> Exact | None:
        if key not in self._exact:
            self._exact[key] = exact = self.knowledge.exact(params)
            for name, value in (exact.costs if exact is not None else {}).items():
                low, high = self._cost_range.get(name, (value, value))
                self._cost_range[name] = (min(low, value), max(high, value))
        return self._exact[key]

    def _parents(self, known: _Known) -> list[dict]:
        """The front's members, then the next front's, as full parameter sets."""
        feasible = [(t, d) for t, d in known.observed if t.user_attrs.get("state", "complete") == "complete"]
        if not feasible:
            return []
        values = np.where(self._maximise, -1.0, 1.0) * np.array([t.values for t, _ in feasible], dtype=float)
        ranks = _ranks(values)
        order = list(np.argsort(ranks, kind="stable")[:PARENTS])
        order += [i for i in self._best_per_cost(feasible, values) if i not in order]
        return [moves.fill(feasible[i][0].params, self.knowledge.distributions, self._rng) for i in order]

    def _best_per_cost(self, feasible: list, values: np.ndarray) -> list[int]:
        """The best result at each exact cost, when the costs take few values (NB201's 28
        levels): the front's missing members are the best of levels it does not hold yet,
        and their neighbours are where those are found. Best: lowest sum of the unknown
        objectives' ranks (none known: no levels)."""
        metrics = [m for m, _ in self.knowledge.objectives]
        costs = [self._exact.get(d.key) for _, d in feasible]
        known = [j for j, m in enumerate(metrics) if all(c is not None and m in c.costs for c in costs)]
        unknown = [j for j in range(len(metrics)) if j not in known]
        if not known or not unknown:
            return []
        levels: dict[tuple, int] = {}
        score = np.argsort(np.argsort(values[:, unknown], axis=0), axis=0).sum(1)
        for i, c in enumerate(costs):
            level = tuple(round(c.costs[metrics[j]], 9) for j in known)
            if level not in levels or score[i] < score[levels[level]]:
                levels[level] = i
        return list(levels.values()) if len(levels) <= LEVELS else []

    def _candidates(self, known: _Known) -> list[_Candidate]:
        """Untried, buildable, feasible candidates with their exact costs, at most
        ``new_costs_per_ask`` of them costed for the first time."""
        space, budget = self.knowledge.distributions, self.knowledge.new_costs_per_ask
        out, seen = [], set(known.tried)
        walks = [moves.proposals(self._parents(known), space, self._rng, DRAWS)]
        if (everything := moves.enumerate_all(space, self._rng)) is not None:
            walks.append(everything)  # consulted only when the proposals find nothing new
        for walk in walks:
            for params in walk:
                described = self.knowledge.describe(params)
                if described.key in seen:
                    continue
                seen.add(described.key)
                if described.key not in self._exact:
                    if budget <= 0:
                        continue
                    budget -= 1
                exact = self._cost(params, described.key)
                if exact is not None and exact.feasible:
                    out.append(_Candidate(params, described, exact))
                if out and walk is not walks[0] and len(out) >= DRAWS:
                    break
            if out:
                break
        return out

    def _spread(self, candidates: list[_Candidate], known: _Known) -> _Candidate:
        """Before the model has data: the candidate farthest, in the exact costs, from
        everything tried (a plain draw when no objective is known before training)."""
        names = self._known_objectives(candidates[0])
        if not names:
            return candidates[0]
        tried = [self._exact.get(d.key) for _, d in [*known.observed, *known.pending]]
        tried_costs = np.array([[e.costs[n] for n in names] for e in tried if e is not None]).reshape(-1, len(names))
        costs = np.array([[c.exact.costs[n] for n in names] for c in candidates])
        scale = np.ptp(np.vstack([costs, tried_costs]), axis=0) + 1e-12
        if not len(tried_costs):
            return candidates[int(self._rng.integers(len(candidates)))]
        gaps = np.abs(costs[:, None, :] - tried_costs[None, :, :]) / scale
        return candidates[int(np.argmax(gaps.sum(-1).min(1)))]

    def _known_objectives(self, candidate: _Candidate) -> list[str]:
        return [m for m, _ in self.knowledge.objectives if m in candidate.exact.costs]

    def _best(self, candidates: list[_Candidate], known: _Known) -> _Candidate:
        """The candidate of the largest expected hypervolume improvement."""
        metrics = [m for m, _ in self.knowledge.objectives]
        exact_names = self._known_objectives(candidates[0])
        unknown = [i for i, m in enumerate(metrics) if m not in exact_names]
        if self._features is None:
            self._features = Features(
                self.knowledge.distributions, sorted(candidates[0].exact.costs), self.knowledge.features
            )
        sign = np.where(self._maximise, -1.0, 1.0)
        observed_x = np.array([self._vector(d, t.params) for t, d in known.observed])
        observed_y = np.array([t.values for t, _ in known.observed], dtype=float) * sign
        if not unknown:  # every objective exact: the improvement itself, no model
            mean = np.zeros((len(candidates), 0))
        else:
            self._refit(observed_x, observed_y[:, unknown])
            ranks = self._ranks
        xs = np.array([self._vector(c.described, c.params, c.exact) for c in candidates])
        exact = np.array([[c.exact.costs.get(m, 0.0) for m in metrics] for c in candidates]) * sign
        mean, std = self._forest.predict(xs) if unknown else (mean, mean)
        if unknown and exact_names:
            std = self._widened(std, candidates, known, exact_names)
        front = self._front(known, observed_y, unknown, sign)
        ref = self._reference(front if len(front) else observed_y, exact, unknown)
        if unknown and self.acquisition == "ehvi":
            gain = hvi.expected(front, exact, np.array(unknown), mean, std, ref, self._rng, back=ranks.inverse)
        elif unknown:  # the improvement at an optimistic value: a sigma better than the mean
            gain = hvi.improvement(front, self._optimistic(exact, unknown, mean, std, ranks, OPTIMISM), ref, self._rng)
        else:
            gain = hvi.improvement(front, exact, ref, self._rng)
        if gain.max() <= 0 and unknown:  # nothing to gain at these odds: the longest shot
            gain = hvi.improvement(front, self._optimistic(exact, unknown, mean, std, ranks, 3.0), ref, self._rng)
        if gain.max() <= 0:
            return candidates[int(self._rng.integers(len(candidates)))]
        return candidates[int(np.argmax(gain))]

    def _widened(self, std: np.ndarray, candidates: list[_Candidate], known: _Known, names: list[str]) -> np.ndarray:
        """The trees' spread, widened where few results have costs like the candidate's."""
        tried = [self._cost(t.params, d.key) for t, d in known.observed]
        costs = np.log1p(np.abs([[c.exact.costs[n] for n in names] for c in candidates]))
        seen = np.log1p(np.abs([[e.costs[n] for n in names] for e in tried if e is not None])).reshape(-1, len(names))
        width = BAND * (np.ptp(np.vstack([costs, seen]), axis=0) + 1e-12)
        near = (np.abs(costs[:, None, :] - seen[None, :, :]) <= width).all(-1).sum(1)
        prior = (PRIOR_SD**2 / (1.0 + near)).reshape(-1, *([1] * (std.ndim - 1)))
        return np.sqrt(std**2 + prior)

    @staticmethod
    def _optimistic(exact, unknown, mean, std, ranks, sigmas: float) -> np.ndarray:
        """The candidates with each unknown objective ``sigmas`` better than predicted."""
        points = exact.copy()
        points[:, unknown] = np.stack(
            [ranks.inverse(mean[:, j] - sigmas * std[:, j], j) for j in range(len(unknown))], 1
        )
        return points

    def _vector(self, described: Described, params: Mapping[str, Any], exact: Exact | None = None) -> np.ndarray:
        """The features of an architecture (once: a thousand trials are read at every ask)."""
        if described.key not in self._vectors:
            exact = exact or self._cost(params, described.key) or Exact({c: 0.0 for c in self._features.costs})
            self._vectors[described.key] = self._features(described.active, exact.costs)
        return self._vectors[described.key]

    def _refit(self, x: np.ndarray, y: np.ndarray) -> None:
        """Refitted when results arrive: after each one at first, then every 4% more."""
        if self._fitted < 0 or len(x) - self._fitted >= max(1, len(x) // 25):
            self._ranks = Ranks(y)
            self._forest.fit(x, self._ranks.forward(y))
            self._fitted = len(x)

    def _front(self, known: _Known, observed_y: np.ndarray, unknown: list[int], sign: np.ndarray) -> np.ndarray:
        """The feasible results so far and the running trials at their predicted values."""
        feasible = [i for i, (t, _) in enumerate(known.observed) if t.user_attrs.get("state", "complete") == "complete"]
        points = [observed_y[i] for i in feasible]
        metrics = [m for m, _ in self.knowledge.objectives]
        for t, described in known.pending:
            exact = self._cost(moves.fill(t.params, self.knowledge.distributions, self._rng), described.key)
            if exact is None or not exact.feasible:
                continue
            point = np.array([exact.costs.get(m, 0.0) for m in metrics]) * sign
            if unknown:
                mean = self._forest.predict(self._vector(described, t.params, exact)[None])[0][0]
                point[unknown] = [self._ranks.inverse(mean[j : j + 1], j)[0] for j in range(len(unknown))]
            points.append(point)
        return hvi.nondominated(np.array(points).reshape(-1, len(metrics)))

    def _reference(self, front: np.ndarray, exact: np.ndarray, unknown: list[int]) -> np.ndarray:
        """Where a result stops counting. An objective training measures: the front's worst
        value moved out by a tenth of the front's range (BoTorch's rule), so that a long
        shot far below the front is worth nothing. An exact cost: the costliest architecture
        costed so far, moved out by a tenth of the costs' range, so that the front reaches
        out to the costs it has not tried yet (NB201's costliest cells hold a third of the
        exact hypervolume: a reference at the costliest candidate left them untried)."""
        worst, best = front.max(0), front.min(0)
        spread = np.where(worst > best, worst - best, np.abs(worst) + 1e-12)
        ref = worst + 0.1 * spread
        metrics = [m for m, _ in self.knowledge.objectives]
        for j in range(len(ref)):
            if j not in unknown:
                low, high = sorted(np.array(self._cost_range[metrics[j]]) * (-1.0 if self._maximise[j] else 1.0))
                ref[j] = max(worst[j], exact[:, j].max(), high) + 0.1 * (high - low)
        return ref


class _Known:
    """What the study holds, as an ask reads it."""

    def __init__(self) -> None:
        self.tried: set[str] = set()
        self.observed: list[tuple[FrozenTrial, Described]] = []
        self.pending: list[tuple[FrozenTrial, Described]] = []


def _ranks(values: np.ndarray, enough: int = PARENTS) -> np.ndarray:
    """Non-dominated sorting (minimised): 0 for the front, 1 for the next, ...; the fronts
    after the one that makes ``enough`` ranked share the next rank (only the first few are
    parents: sorting all of a thousand results at every ask would cost more than the rest)."""
    ranks = np.full(len(values), len(values))
    left, level = np.arange(len(values)), 0
    while len(left) and (ranks < len(values)).sum() < enough:
        v = values[left]
        dominated = ((v[None, :, :] <= v[:, None, :]).all(-1) & (v[None, :, :] < v[:, None, :]).any(-1)).any(1)
        ranks[left[~dominated]] = level
        left, level = left[dominated], level + 1
    return ranks

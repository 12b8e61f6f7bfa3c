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

Pruned trials (MO-ASHA) are results too: each training-measured objective's final value
is imputed from the trial's last rung through the monotone map that the study's completed
trials' rung records and final values teach (``search.pruners.forecast``, the rung
judge's), and joins the forest's data. A pruned architecture is a candidate again, to be
continued from its checkpoint (``search.sweep.pipeline.continued_of``): at its imputed
final values ``CONTINUE_OPTIMISM`` of the map's spreads better, costs exact. (With
``PER_EPOCH``, off by default, each candidate's gain is divided by the epochs it would
cost: a continuation the epochs it has left, a new one the mean a new trial has cost.)

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

from search.pruners.forecast import Forecast
from search.pruners.mo_asha import CONTINUES_ATTR, RUNGS_ATTR
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
# never rose above the front the cheap cells made). The log costs are in units of each
# cost's smallest positive value (``_log_costs``): on raw GMACs log1p was linear, and on
# the digits table the unpruned sweep completed the exact front after a median 0.54 of
# its epochs instead of 0.33, the pruned one 0.57 instead of 0.23.
PRIOR_SD = 1.0
BAND = 0.02  # exact costs of at most this many values: the best at each is a parent too
# Pruned trials (BENCHMARKS.md, "Search efficiency": MO-ASHA, each setting measured on the
# digits table, 10 seeds): imputed at all (False: only tried, as before), their imputed
# results' weight in the forest's fit (a completed one: 1; 0.3 and 0 found the front later),
# whether a pruned architecture may be proposed again (continued: without it up to 3
# exact-front members stayed pruned), at its imputed final how many map spreads better
# (0 and 0.5 continued too few to keep the front), and whether each candidate's gain is
# divided by the epochs it costs (a continuation: those it has left; a new one: the mean a
# new trial has cost in this study: with the prior widened on log costs, not divided
# found the full front as soon, 0.23 of the unpruned sweep's epochs, and left no member
# pruned against one, on 2,735 epochs against 2,820); how many spreads better than its
# forecast an imputed final joins the forest's data (0.5 and 1 found the front's last
# member later in 2 seeds of 3); and whether the imputed results count as results near
# their costs when the prior's spread is widened (0.43 of the epochs instead of 0.23).
IMPUTE = True
IMPUTED_WEIGHT = 1.0
CONTINUE = True
CONTINUE_OPTIMISM = 1.0
PER_EPOCH = False
IMPUTED_OPTIMISM = 0.0
WIDEN_IMPUTED = False


@dataclass(frozen=True)
class _Candidate:
    params: dict
    described: Described
    exact: Exact


@dataclass(frozen=True)
class _Imputed:
    """A pruned trial's result as the forecast completes it: each unknown objective's
    imputed final (minimised form) and the map's spread there, and the epochs it trained."""

    trial: FrozenTrial
    described: Described
    mean: np.ndarray  # (u,) minimised: a maximised objective negated
    spread: np.ndarray  # (u,)
    trained: int


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
        self._forecast, self._paired = Forecast(), set()  # what a rung value says of a final one

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
        if not candidates and not (CONTINUE and known.imputed):  # exhausted: a repeat, which the sweep stops on
            return moves.random(self.knowledge.distributions, self._rng)
        if len(known.observed) < self.startup and candidates:
            return self._spread(candidates, known).params
        return self._best(candidates, known)

    def _known(self, trials: Sequence[FrozenTrial], number: int) -> _Known:
        known, pruned = _Known(), {}
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
                epochs = int(t.user_attrs.get("metrics", {}).get("epochs", 0))
                known.epochs.append(epochs)
                if CONTINUES_ATTR not in t.user_attrs:
                    known.new_epochs.append(epochs)
            elif t.state == TrialState.PRUNED and t.user_attrs.get("state", "pruned") == "pruned":
                pruned[described.key] = (t, described)  # the latest of a chain of continuations
                if CONTINUES_ATTR not in t.user_attrs and (rungs := t.user_attrs.get(RUNGS_ATTR)):
                    known.new_epochs.append(int(max(r[0] for r in rungs)))
        self._learn(trials)
        done = {d.key for _, d in known.observed} | {d.key for _, d in known.pending}
        for key, (t, described) in pruned.items():
            if IMPUTE and key not in done and (imputed := self._impute(t, described)) is not None:
                known.imputed.append(imputed)
        return known

    # -- pruned trials: the forecast -----------------------------------------------------

    def _learn(self, trials: Sequence[FrozenTrial]) -> None:
        """Pairs (a rung value, the final value) of every completed trial not paired yet:
        its own rung records and those of the pruned trials it continues."""
        metrics = [m for m, _ in self.knowledge.objectives]
        by_number = None
        for t in trials:
            if t.number in self._paired or t.state != TrialState.COMPLETE or t.values is None:
                continue
            self._paired.add(t.number)
            if t.user_attrs.get("state", "complete") != "complete":
                continue
            chain, seen = t, set()
            while chain is not None and chain.number not in seen:
                seen.add(chain.number)
                for epochs, _, vector in chain.user_attrs.get(RUNGS_ATTR, []):
                    for j, metric in enumerate(metrics):
                        self._forecast.add(epochs, metric, vector[j], t.values[j], key=t.number)
                before = chain.user_attrs.get(CONTINUES_ATTR)
                if before is None:
                    break
                by_number = by_number or {u.number: u for u in trials}
                chain = by_number.get(before)

    def _impute(self, trial: FrozenTrial, described: Described) -> _Imputed | None:
        """A pruned trial's finals as the forecast sees them from its last rung (or, without
        rung records, its last metrics: a replay's); None while a map is missing."""
        metrics = [m for m, _ in self.knowledge.objectives]
        rungs = trial.user_attrs.get(RUNGS_ATTR) or []
        if rungs:
            epochs, _, vector = max(rungs, key=lambda r: r[0])
        else:
            last = trial.user_attrs.get("metrics", {})
            if "epochs" not in last or any(m not in last for m in metrics):
                return None
            epochs, vector = last["epochs"], [last[m] for m in metrics]
        exact = self._cost(moves.fill(trial.params, self.knowledge.distributions, self._rng), described.key)
        if exact is None:
            return None
        means, spreads = [], []
        for j, metric in enumerate(metrics):
            if metric in exact.costs:
                continue
            predicted = self._forecast.predict(int(epochs), metric, vector[j])
            if predicted is None:
                return None
            sign = -1.0 if self._maximise[j] else 1.0
            means.append(sign * float(predicted[0][0]))
            spreads.append(float(predicted[1][0]))
        return _Imputed(trial, described, np.array(means), np.array(spreads), int(epochs))

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

    def _best(self, candidates: list[_Candidate], known: _Known) -> dict:
        """The parameters of the candidate of the largest hypervolume improvement at its
        optimistic values (expected improvement with ``acquisition="ehvi"``): a new
        architecture, or a pruned one to continue (``known.imputed``)."""
        metrics = [m for m, _ in self.knowledge.objectives]
        resumable = [i for i in known.imputed if self._cost(i.trial.params, i.described.key) is not None]
        again = [self._again(i) for i in resumable] if CONTINUE else []
        everyone = [*candidates, *again]
        exact_names = self._known_objectives(everyone[0])
        unknown = [i for i, m in enumerate(metrics) if m not in exact_names]
        if self._features is None:
            self._features = Features(
                self.knowledge.distributions, sorted(everyone[0].exact.costs), self.knowledge.features
            )
        sign = np.where(self._maximise, -1.0, 1.0)
        observed_x = np.array([self._vector(d, t.params) for t, d in known.observed]).reshape(len(known.observed), -1)
        observed_y = np.array([t.values for t, _ in known.observed], dtype=float).reshape(-1, len(metrics)) * sign
        ranks = None
        if unknown:
            imputed_x = [self._vector(i.described, i.trial.params) for i in resumable]
            imputed_y = [self._imputed_row(i, metrics, sign, unknown) for i in resumable]
            x = np.vstack([observed_x, *imputed_x]) if imputed_x else observed_x
            y = np.vstack([observed_y, *imputed_y]) if imputed_y else observed_y
            weights = np.r_[np.ones(len(observed_x)), np.full(len(imputed_x), IMPUTED_WEIGHT)] if imputed_x else None
            self._refit(x, y[:, unknown], weights)
            ranks = self._ranks
        exact = np.array([[c.exact.costs.get(m, 0.0) for m in metrics] for c in everyone]) * sign
        front = self._front(known, observed_y, unknown, sign)
        ref = self._reference(front if len(front) else observed_y, exact, unknown)
        new = len(candidates)
        if unknown:
            xs = np.array([self._vector(c.described, c.params, c.exact) for c in candidates]).reshape(new, -1)
            mean, std = self._forest.predict(xs) if new else (np.zeros((0, len(unknown))),) * 2
            if exact_names and new:
                std = self._widened(std, candidates, known, exact_names)
            imputed_mean = np.array([i.mean for i in resumable[: len(again)]]).reshape(len(again), len(unknown))
            imputed_sd = np.array([i.spread for i in resumable[: len(again)]]).reshape(len(again), len(unknown))

        def optimistic(sigmas: float) -> np.ndarray:
            points = exact.copy()
            if new:
                points[:new] = self._optimistic(exact[:new], unknown, mean, std, ranks, sigmas)
            if again:  # the forecast's own scale: the map's mean and spread
                points[new:, unknown] = imputed_mean - sigmas / OPTIMISM * CONTINUE_OPTIMISM * imputed_sd
            return points

        if unknown and self.acquisition == "ehvi":
            gain = np.zeros(len(everyone))
            if new:
                u = np.array(unknown)
                gain[:new] = hvi.expected(front, exact[:new], u, mean, std, ref, self._rng, back=ranks.inverse)
            if again:
                u = np.array(unknown)
                gain[new:] = hvi.expected(front, exact[new:], u, imputed_mean, imputed_sd, ref, self._rng)
        elif unknown:  # the improvement at an optimistic value: a sigma better than the mean
            gain = hvi.improvement(front, optimistic(OPTIMISM), ref, self._rng)
        else:
            gain = hvi.improvement(front, exact, ref, self._rng)
        if gain.max() <= 0 and unknown:  # nothing to gain at these odds: the longest shot
            gain = hvi.improvement(front, optimistic(3.0), ref, self._rng)
        if PER_EPOCH and again:
            gain = gain / self._epochs_each(known, [i.trained for i in resumable[: len(again)]], new)
        if gain.max() <= 0:
            if not candidates:
                return everyone[int(self._rng.integers(len(everyone)))].params
            return candidates[int(self._rng.integers(len(candidates)))].params
        return everyone[int(np.argmax(gain))].params

    def _again(self, imputed: _Imputed) -> _Candidate:
        """A pruned trial's architecture as a candidate (continued if drawn)."""
        params = moves.fill(imputed.trial.params, self.knowledge.distributions, self._rng)
        return _Candidate(params, imputed.described, self._cost(params, imputed.described.key))

    def _imputed_row(self, imputed: _Imputed, metrics: list[str], sign: np.ndarray, unknown: list[int]) -> np.ndarray:
        exact = self._cost(imputed.trial.params, imputed.described.key)
        row = np.array([exact.costs.get(m, 0.0) for m in metrics]) * sign
        row[unknown] = imputed.mean - IMPUTED_OPTIMISM * imputed.spread
        return row

    def _epochs_each(self, known: _Known, trained: list[int], new: int) -> np.ndarray:
        """What each candidate costs in epochs: a new one the mean a new trial has cost so
        far, a continuation the epochs it has left."""
        last = max(known.epochs, default=1)
        fresh = float(np.mean(known.new_epochs)) if known.new_epochs else float(last)
        return np.maximum(np.r_[np.full(new, fresh), last - np.array(trained, dtype=float)], 1.0)

    def _widened(self, std: np.ndarray, candidates: list[_Candidate], known: _Known, names: list[str]) -> np.ndarray:
        """The trees' spread, widened where few results have costs like the candidate's."""
        tried = [self._cost(t.params, d.key) for t, d in known.observed]
        if WIDEN_IMPUTED:
            tried += [self._cost(i.trial.params, i.described.key) for i in known.imputed]
        costs = np.abs([[c.exact.costs[n] for n in names] for c in candidates])
        seen = np.abs([[e.costs[n] for n in names] for e in tried if e is not None]).reshape(-1, len(names))
        costs, seen = _log_costs(costs, seen)
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

    def _refit(self, x: np.ndarray, y: np.ndarray, weights: np.ndarray | None = None) -> None:
        """Refitted when results arrive: after each one at first, then every 4% more."""
        if self._fitted < 0 or len(x) - self._fitted >= max(1, len(x) // 25):
            self._ranks = Ranks(y)
            self._forest.fit(x, self._ranks.forward(y), weights)
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
        self.imputed: list[_Imputed] = []  # pruned architectures, not since completed nor running
        self.epochs: list[int] = []  # epochs of completed trials (a trial's last)
        self.new_epochs: list[int] = []  # epochs trained by trials not continuing another


def _log_costs(*arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    """Costs on a log scale that takes zero: each column in units of its smallest positive
    value, then log1p. GMACs of 1e-4 to 1e-2 are as far apart as NB201's costs of 1 to 100
    (log1p of raw GMACs is linear: its bands were 2% of the range, the cheapest tenth of
    the table one band)."""
    stacked = np.vstack(arrays)
    positive = np.where(stacked > 0, stacked, np.inf).min(0)
    unit = np.where(np.isfinite(positive), positive, 1.0)
    return tuple(np.log1p(a / unit) for a in arrays)


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

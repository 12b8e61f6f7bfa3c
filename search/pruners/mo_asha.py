"""MO-ASHA as a pruner (its decisions: ``search.pruners.rungs``) and its one adapter,
``RungJudge``, which every backend hands the epochs of its trials to: the local backend
after each epoch, the Ray backend's Tune scheduler, a replay. One sweep, one judge: one
worker and one seed decide identically everywhere.

Halving alone ranks a trial against the trials that reached the same rung; the judge
also forecasts where it would end (``search.pruners.forecast``: each training-measured
objective's rung value mapped to a final value, learned from the sweep's trials that
reached both, and the spread of the finals around it; costs are exact) and compares that
with the front of the trials completed so far:

- **protect**: a trial that halving would stop goes on when its optimistic final (its
  forecast ``protect`` spreads better than the map) would not be dominated by the
  completed front: it can still reach the front.
- **stop** (off by default: ``bench search`` measured it, see BENCHMARKS.md): a trial
  that halving would let go on stops when even its optimistic final (``stop`` spreads)
  is dominated by the completed front.

Neither applies before the map holds ``forecast.MIN_PAIRS`` pairs at that rung, nor
before a trial completed. The judge sees each trial's final values when it reports its
last epoch (``epochs``), and a continued trial (``continues``: the pruned trial it trains
on) pairs that trial's rung values with its own final ones.

A trial's rung records are kept on its Optuna trial (user attribute ``rungs``:
``[[epochs, arrival, vector], ...]``), so that a resumed sweep's judge starts from them;
its final values are its values in the study."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace

import numpy as np
import optuna

from runs.metrics import COST_METRICS
from search.pruners.base import Pruner
from search.pruners.forecast import MIN_PAIRS, Forecast
from search.pruners.rungs import RungDecision, Rungs, rung_epochs

RUNGS_ATTR = "rungs"  # a trial's MO-ASHA records: [[epochs, arrival, vector], ...]
CONTINUES_ATTR = "continues"  # a trial's user attribute: the pruned trial it trains on (search.sweep.pipeline)
# How many spreads better than its forecast a trial's final may turn out (None: off).
PROTECT: float | None = 1.0
STOP: float | None = None
REJUDGE = True  # a continued trial is judged at the rungs after the one it was pruned at


class MOASHA(Pruner):
    """Multi-objective asynchronous successive halving, judged on every objective."""

    name = "mo_asha"
    # (min_epochs, reduction_factor): rungs at 5 and 10 of 15 epochs. Chosen by bench search
    # on the recorded digits table with the frontier sampler, the forecast and continuations
    # (BENCHMARKS.md): (2, 2) and (4, 2) lost an exact-front member in some seeds.
    halving = (5, 2)

    def judge(self, metrics: Sequence[str]) -> RungJudge:
        epochs = rung_epochs(self.min_epochs, self.reduction_factor, self.epochs)
        book = Rungs(epochs, self.directions, self.reduction_factor)
        return RungJudge(book, metrics, epochs=self.epochs, protect=PROTECT, stop=STOP, rejudge=REJUDGE)


class RungJudge:
    """The rung book of one sweep and what its trials reached in this session: ``after_epoch``
    decides, ``reached`` holds each trial's records (for its user attribute), ``pruned``
    the decisions that stopped trials. ``epochs``: a trial's last epoch (its values then
    are final; None: never seen, no forecast). ``protect`` and ``stop``: the forecast's
    overrides of halving, in spreads (None: off; the module docstring says what they do);
    ``rejudge``: whether a continued trial is judged at the rungs after the one its pruned
    trial stopped at (False: it runs to its end); ``exact``: the metrics known before
    training (a rung value is the final one). Built as here, halving alone decides; the
    registered pruner (``MOASHA.judge``) sets the module's ``PROTECT``, ``STOP`` and
    ``REJUDGE``. Thread-safe as the book is."""

    def __init__(
        self,
        book: Rungs,
        metrics: Sequence[str],
        *,
        epochs: int | None = None,
        protect: float | None = None,
        stop: float | None = None,
        rejudge: bool = True,
        exact: Iterable[str] = COST_METRICS,
    ) -> None:
        self.book, self.metrics, self.epochs = book, list(metrics), epochs
        self.protect, self.stop, self.rejudge = protect, stop, rejudge
        self.exact = [m in set(exact) for m in self.metrics]  # known before training: final at any rung
        self.reached: dict[int, list] = {}
        self.pruned: dict[int, RungDecision] = {}
        self.forecast = Forecast()
        self._at_rungs: dict[int, dict[int, list[float]]] = {}  # trial -> rung epochs -> vector
        self._continues: dict[int, int] = {}  # trial -> the pruned trial it trains on
        self._finals: dict[int, list[float]] = {}  # trial -> its final vector
        self._off_front: set[int] = set()  # trained to the end, then refused (a device-measured constraint)
        self._sign = np.array([-1.0 if d in ("max", "maximize") else 1.0 for d in book.directions])
        self._lock = threading.Lock()

    def restore(self, trials: Iterable[optuna.trial.FrozenTrial]) -> RungJudge:
        """The rungs earlier trials reached (a resumed sweep's, a warm start's), in the order
        they reached them, and what completed trials ended with."""
        trials = list(trials)
        found = sorted(
            (arrival, epochs, t.number, vector)
            for t in trials
            for epochs, arrival, vector in t.user_attrs.get(RUNGS_ATTR, [])
        )
        for _, epochs, number, vector in found:
            self.book.restore(str(number), epochs, vector)
            self._at_rungs.setdefault(number, {}).setdefault(epochs, [float(v) for v in vector])
        for t in trials:
            if t.user_attrs.get(CONTINUES_ATTR) is not None:
                self._continues[t.number] = int(t.user_attrs[CONTINUES_ATTR])
        for t in trials:
            complete = t.state == optuna.trial.TrialState.COMPLETE and t.user_attrs.get("state") in (None, "complete")
            if complete and t.values is not None and len(t.values) == len(self.metrics):
                self._final(t.number, [float(v) for v in t.values])
        return self

    def after_epoch(
        self, number: int, epochs: int, metrics: Mapping[str, float], continues: int | None = None
    ) -> RungDecision | None:
        """The decision on trial ``number`` after ``epochs`` epochs in all (a continued
        trial's count those of the trial it continues: ``continues``) with ``metrics``, or
        None when that is not a rung (the trial goes on), or when an objective is missing
        (a retry's replayed epoch whose costs are not measured yet: it was judged before)."""
        if any(m not in metrics for m in self.metrics):
            return None
        vector = [float(metrics[m]) for m in self.metrics]
        with self._lock:
            if continues is not None:
                self._continues[number] = int(continues)
            if epochs in self.book.epochs:
                self._at_rungs.setdefault(number, {})[epochs] = vector
            if self.epochs is not None and epochs >= self.epochs:
                self._final(number, vector)
        decision = self.book.judge(str(number), epochs, vector)
        if decision is None:
            return None
        if not self.rejudge and number in self._continues and not decision.proceed:
            decision = replace(decision, proceed=True, forecast="goes on: a continued trial runs to its end")
        decision = self._forecast_decision(decision, epochs, vector)
        self.reached.setdefault(number, []).append([epochs, time.time_ns(), vector])
        if not decision.proceed:
            self.pruned[number] = decision
        else:
            self.pruned.pop(number, None)
        return decision

    def ended(self, number: int, state: str) -> None:
        """Trial ``number`` ended ``state``: one that trained to its last epoch and then
        broke a constraint (a device-measured one: latency, memory) is not on the completed
        front the forecast is held against; its final still pairs with its rung values."""
        if state != "complete":
            with self._lock:
                self._off_front.add(number)

    def keep(self, trial: optuna.Trial) -> None:
        """The rungs the trial reached in this session, on it (a resumed sweep's judge reads
        them back); nothing when it reached none."""
        if trial.number in self.reached:
            trial.set_user_attr(RUNGS_ATTR, self.reached[trial.number])

    # -- the forecast ------------------------------------------------------------------

    def _final(self, number: int, vector: list[float]) -> None:
        """Trial ``number`` ended with ``vector``: its own rung values and those of the
        trials it continues are pairs for the forecast."""
        self._finals[number] = vector
        trial, seen = number, set()
        while trial is not None and trial not in seen:
            seen.add(trial)
            for epochs, early in self._at_rungs.get(trial, {}).items():
                for j, metric in enumerate(self.metrics):
                    if not self.exact[j]:
                        self.forecast.add(epochs, metric, early[j], vector[j], key=number)
            trial = self._continues.get(trial)

    def optimistic(self, epochs: int, vector: Sequence[float], spreads: float) -> np.ndarray | None:
        """The final vector of a trial with ``vector`` after ``epochs`` epochs, each
        training-measured objective ``spreads`` spreads better than its forecast, in the
        minimised form (a maximised objective negated); None while a map is missing."""
        out = np.array(vector, dtype=float) * self._sign
        for j, metric in enumerate(self.metrics):
            if self.exact[j]:
                continue
            predicted = self.forecast.predict(epochs, metric, vector[j])
            if predicted is None:
                return None
            mean, spread = predicted
            out[j] = self._sign[j] * float(mean[0]) - spreads * float(spread[0])
        return out

    def _completed(self) -> list[list[float]]:
        return [v for n, v in self._finals.items() if n not in self._off_front]

    def _dominated(self, point: np.ndarray) -> bool:
        completed = self._completed()
        if not completed:
            return False
        front = np.array(completed, dtype=float) * self._sign
        return bool(((front <= point).all(1) & (front < point).any(1)).any())

    def _forecast_decision(self, decision: RungDecision, epochs: int, vector: list[float]) -> RungDecision:
        """Halving's decision, overridden where the forecast says otherwise (module docstring)."""
        spreads = self.protect if not decision.proceed else self.stop
        if spreads is None:
            return decision
        with self._lock:
            point = self.optimistic(epochs, vector, spreads)
            if point is None and not decision.proceed:  # no map yet: nothing says it cannot reach the front
                pairs = min(
                    self.forecast.size(epochs, m) for m, e in zip(self.metrics, self.exact, strict=True) if not e
                )
                why = (
                    f"too few completed trials to forecast its final values ({pairs} of {MIN_PAIRS} at epoch {epochs})"
                )
                return replace(decision, proceed=True, forecast=f"goes on: {why}")
            if point is None:
                return decision
            dominated = self._dominated(point)
        if not decision.proceed and not dominated:
            why = f"its forecast final {self._words(point)} at {spreads:g} spread would not be dominated"
            return replace(decision, proceed=True, forecast=f"goes on: {why} by the {len(self._completed())} completed")
        if decision.proceed and dominated:
            why = f"even its forecast final {self._words(point)} at {spreads:g} spread is dominated"
            return replace(decision, proceed=False, forecast=f"stopped: {why} by the completed trials")
        return decision

    def _words(self, point: np.ndarray) -> str:
        values = point * self._sign
        return ", ".join(f"{m} {v:.4g}" for m, v, e in zip(self.metrics, values, self.exact, strict=True) if not e)

"""MO-ASHA as a pruner (its decisions: ``search.pruners.rungs``) and its one adapter,
``RungJudge``, which every backend hands the epochs of its trials to: the local backend
after each epoch, the Ray backend's Tune scheduler, a replay. One sweep, one judge: one
worker and one seed decide identically everywhere.

A trial's rung records are kept on its Optuna trial (user attribute ``rungs``:
``[[epochs, arrival, vector], ...]``), so that a resumed sweep's judge starts from them."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence

import optuna

from search.pruners.base import Pruner
from search.pruners.rungs import RungDecision, Rungs, rung_epochs

RUNGS_ATTR = "rungs"  # a trial's MO-ASHA records: [[epochs, arrival, vector], ...]


class MOASHA(Pruner):
    """Multi-objective asynchronous successive halving, judged on every objective."""

    name = "mo_asha"
    halving = (2, 2)  # chosen by bench search on the recorded digits table (BENCHMARKS.md)

    def judge(self, metrics: Sequence[str]) -> RungJudge:
        epochs = rung_epochs(self.min_epochs, self.reduction_factor, self.epochs)
        return RungJudge(Rungs(epochs, self.directions, self.reduction_factor), metrics)


class RungJudge:
    """The rung book of one sweep and what its trials reached in this session: ``after_epoch``
    decides, ``reached`` holds each trial's records (for its user attribute), ``pruned``
    the decisions that stopped trials. Thread-safe as the book is."""

    def __init__(self, book: Rungs, metrics: Sequence[str]) -> None:
        self.book, self.metrics = book, list(metrics)
        self.reached: dict[int, list] = {}
        self.pruned: dict[int, RungDecision] = {}

    def restore(self, trials: Iterable[optuna.trial.FrozenTrial]) -> RungJudge:
        """The rungs earlier trials reached (a resumed sweep's, a warm start's), in the order
        they reached them."""
        found = sorted(
            (arrival, epochs, str(t.number), vector)
            for t in trials
            for epochs, arrival, vector in t.user_attrs.get(RUNGS_ATTR, [])
        )
        for _, epochs, key, vector in found:
            self.book.restore(key, epochs, vector)
        return self

    def after_epoch(self, number: int, epochs: int, metrics: Mapping[str, float]) -> RungDecision | None:
        """The decision on trial ``number`` after ``epochs`` epochs with ``metrics``, or None
        when that is not a rung (the trial goes on), or when an objective is missing (a
        retry's replayed epoch whose costs are not measured yet: it was judged before)."""
        if any(m not in metrics for m in self.metrics):
            return None
        vector = [float(metrics[m]) for m in self.metrics]
        decision = self.book.judge(str(number), epochs, vector)
        if decision is not None:
            self.reached.setdefault(number, []).append([epochs, time.time_ns(), vector])
            if not decision.proceed:
                self.pruned[number] = decision
        return decision

    def keep(self, trial: optuna.Trial) -> None:
        """The rungs the trial reached in this session, on it (a resumed sweep's judge reads
        them back); nothing when it reached none."""
        if trial.number in self.reached:
            trial.set_user_attr(RUNGS_ATTR, self.reached[trial.number])

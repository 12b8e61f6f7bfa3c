"""What ``search.trials`` counts, and when a sweep stops before it is used up.

The budget counts architectures evaluated: trained (complete, pruned, failed with a
reason) or refused before training (infeasible), ``study.counted``. A draw that repeats
a finished trial is answered from it (``pipeline.repeat_of``) and uses none of it, so a
sampler that redraws what was tried would never use the budget up: a sweep also stops
when its space is exhausted (every distinct architecture tried: ``space_size``), or
after ``REPEATS`` repeats in a row, and says why (``Budget.stop``). A draw that repeats a
pruned trial trains it on (``pipeline.continued_of``) and uses none of it either: the
architecture was counted when it was first drawn, and what the continuation costs is its
epochs, which a sweep's record keeps (not a repeat: it resets the repeats in a row).
Every backend and a replay count the same way.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

from optuna.trial import FrozenTrial

from search.spec import Spec
from search.spec.space import sample, size
from search.spec.yamlio import join
from search.sweep.pipeline import draw_key
from search.sweep.study import counted, state_of

REPEATS = 1_000  # repeats in a row after which a sweep stops: its sampler only redraws
WALKED = 100_000  # the most paths walked through one part of a space to count it (else: uncounted)
TRIED = ("complete", "infeasible", "pruned", "failed")  # states of an architecture tried

T = TypeVar("T")


# -- the number of distinct architectures a space holds -------------------------------


class _Walk:
    """A trial that takes the choices it is given, then the first option of each further
    dimension, and notes how many options each had: one path through the space's tree
    (define-by-run, so an option's own dimensions appear only under it)."""

    def __init__(self, prefix: list[int]) -> None:
        self.prefix, self.picks, self.sizes = prefix, [], []

    def _pick(self, name: str, options: list) -> Any:
        i = len(self.picks)
        pick = self.prefix[i] if i < len(self.prefix) else 0
        self.picks.append(pick)
        self.sizes.append(len(options))
        return options[pick]

    def suggest_categorical(self, name, choices):
        return self._pick(name, list(choices))

    def suggest_int(self, name, low, high, *, step=1, log=False):
        return self._pick(name, list(range(low, high + 1, step)))

    def suggest_float(self, name, low, high, *, step=None, log=False):
        if step is None:
            raise ValueError(f"{name}: a float range without a step has no paths to walk")
        return self._pick(name, [low + i * step for i in range(round((high - low) / step) + 1)])


def paths(draw: Callable[[_Walk], T]) -> Iterator[T]:
    """``draw(trial)`` for every path through a finite space (``draw`` samples it with
    the trial it is given), in a fixed order."""
    prefix: list[int] = []
    while True:
        walk = _Walk(prefix)
        yield draw(walk)
        # the next path: advance the last choice that has options left (an odometer)
        i = len(walk.picks) - 1
        while i >= 0 and walk.picks[i] + 1 >= walk.sizes[i]:
            i -= 1
        if i < 0:
            return
        prefix = [*walk.picks[:i], walk.picks[i] + 1]


def _parts(spec: Spec) -> Iterator[tuple[Any, str, Callable[[Any], tuple[dict, dict]]]]:
    """The parts of a spec's space that are drawn independently: (space, path, the model
    and train sections that hold only its value). Each stage is one: its depth 0 leaves
    its other values out of the draw's key, within the stage."""
    for k, v in spec.model.items():
        if k == "stages" and isinstance(v, list):
            for i, stage in enumerate(v):
                yield stage, join(join("model", k), i), lambda value, i=i: ({"stages": [{}] * i + [value]}, {})
        else:
            yield v, join("model", k), lambda value, k=k: ({k: value}, {})
    for k, v in spec.train.items():
        yield v, join("train", k), lambda value, k=k: ({}, {k: value})


def _distinct(space: Any, path: str, sections: Callable[[Any], tuple[dict, dict]]) -> float:
    """The distinct draw keys of one part (inf: a float range without a step, or more
    paths than ``WALKED``)."""
    if size(space) > WALKED:
        return math.inf
    return float(len(set(paths(lambda walk: draw_key(*sections(sample(space, walk, path)))))))


_SIZES: dict[str, float] = {}


def space_size(spec: Spec) -> float:
    """How many distinct architectures (distinct ``pipeline.draw_key``) ``spec``'s space
    holds: inf when a float range has no step, a part of it is too large to walk (more
    than ``WALKED`` paths), or for an ablation (its arms are not draws). The product over
    the parts drawn independently (``_parts``), each walked through; cached."""
    if spec.ablation is not None:
        return math.inf
    cache = repr((spec.model, spec.train))
    if cache not in _SIZES:
        _SIZES[cache] = math.prod(_distinct(*part) for part in _parts(spec))
    return _SIZES[cache]


# -- the budget -----------------------------------------------------------------------


@dataclass
class Budget:
    """A sweep's budget as its trials end: ``used`` (trials counted), the distinct
    architectures ``tried`` (by draw key; warm-start's given trials included: there is
    nothing to learn from training them), and the latest ``repeats`` in a row."""

    requested: int
    size: float = math.inf  # distinct architectures the space holds (``space_size``)
    used: int = 0
    tried: set = field(default_factory=set)
    repeats: int = 0

    @classmethod
    def of(cls, spec: Spec, trials: Iterable[FrozenTrial] = ()) -> Budget:
        """``spec``'s budget after ``trials`` (a study's)."""
        budget = cls(spec.search.trials, space_size(spec))
        for trial in sorted(trials, key=lambda t: t.number):
            budget.add(trial)
        return budget

    def add(self, trial: FrozenTrial) -> None:
        """A trial of the study (one not finished, or interrupted, changes nothing)."""
        state = state_of(trial)
        if state in (*TRIED, "duplicate"):
            self.note(state, trial.user_attrs.get("draw"), counted(trial))
        elif counted(trial):  # outside an amended space: it used the budget where it ran
            self.used += 1

    def note(self, state: str, key: Any, counts: bool = True) -> None:
        """A trial that ended in ``state`` with draw key ``key`` (None: an ablation's arm),
        counted in the budget or not (an earlier sweep's, given by a warm start)."""
        if state == "duplicate":
            self.repeats += 1
            return
        self.used += counts
        if state in TRIED:
            self.repeats = 0
            if key is not None:
                self.tried.add(key)

    def left(self) -> int:
        """Trials still to run of the budget."""
        return max(0, self.requested - self.used)

    def exhausted(self, running: Iterable = ()) -> bool:
        """Whether every architecture of the space was tried (or is being: ``running``, the
        keys of trials still running)."""
        return len(self.tried.union(running)) >= self.size

    def stop(self, running: Iterable = (), planned: int = 0) -> str:
        """Why the sweep stops before its budget is used up ("" when it goes on, or when the
        budget is used up), with ``running`` (the keys of new draws still running, ``planned``
        of the budget) in flight."""
        left = self.left() - planned
        if left <= 0:
            return ""
        if self.exhausted(running):
            return (
                f"the space is exhausted: all {self.size:,.0f} architectures were tried; "
                f"{left} of the requested {self.requested} trials had nothing left to try"
            )
        if self.repeats >= REPEATS:
            return (
                f"the sampler kept drawing architectures already tried ({self.repeats:,} repeats in a row); "
                f"{left} of the requested {self.requested} trials were not run"
            )
        return ""

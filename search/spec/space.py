"""Search dimensions, and define-by-run sampling of a space into concrete values.

A space is plain data in which some values are dimensions: ``Choice`` (each option a
value, or a name with its own conditional sub-space), ``IntRange`` or ``FloatRange``.
Sampling walks the space with an Optuna trial; each dimension becomes one Optuna
parameter named by its key path, and a conditional sub-space's parameters carry the
option's name in theirs (``model.stages.0.mixer.attention.heads``), so that options
never share a distribution.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Protocol

from search.spec.yamlio import join


class TrialLike(Protocol):
    def suggest_categorical(self, name: str, choices: list) -> Any: ...
    def suggest_int(self, name: str, low: int, high: int, *, step: int = 1, log: bool = False) -> int: ...
    def suggest_float(self, name: str, low: float, high: float, *, step=None, log: bool = False) -> float: ...


@dataclass(frozen=True)
class Option:
    """A choice option: ``value``, or ``value`` naming a block with ``space`` as its options."""

    value: Any
    space: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Choice:
    options: tuple[Option, ...]

    def labels(self) -> list:
        return [o.value for o in self.options]


@dataclass(frozen=True)
class IntRange:
    low: int
    high: int
    step: int = 1
    log: bool = False


@dataclass(frozen=True)
class FloatRange:
    low: float
    high: float
    step: float | None = None
    log: bool = False


DIMENSIONS = (Choice, IntRange, FloatRange)


@lru_cache(maxsize=4096)  # a space has a few dozen paths; a sampler names them thousands of times an ask
def param(path: str) -> str:
    """The parameter name of a key path, in Optuna and MLflow alike: list indices as dots
    (``model.stages[0].width`` -> ``model.stages.0.width``), since MLflow's names cannot
    hold brackets."""
    return re.sub(r"\[(\d+)\]", r".\1", path)


def sample(space: Any, trial: TrialLike, path: str) -> Any:
    """The concrete value of ``space`` under ``trial`` (define-by-run); each dimension is
    the parameter ``param(path)``."""
    if isinstance(space, Choice):
        labels = space.labels()
        picked = trial.suggest_categorical(param(path), labels) if len(labels) > 1 else labels[0]
        option = space.options[labels.index(picked)]
        if option.space is None:
            return picked
        return {"name": picked, "options": sample(option.space, trial, join(path, picked))}
    if isinstance(space, IntRange):
        return trial.suggest_int(param(path), space.low, space.high, step=space.step, log=space.log)
    if isinstance(space, FloatRange):
        return trial.suggest_float(param(path), space.low, space.high, step=space.step, log=space.log)
    if isinstance(space, Mapping):
        return {k: sample(v, trial, join(path, k)) for k, v in space.items()}
    if isinstance(space, (list, tuple)):
        return [sample(v, trial, join(path, i)) for i, v in enumerate(space)]
    return space


def dimensions(space: Any, path: str = "") -> dict[str, Any]:
    """Every dimension in ``space`` by key path, conditional ones included."""
    if isinstance(space, Choice):
        found = {path: space} if len(space.options) > 1 else {}
        for o in space.options:
            if o.space is not None:
                found.update(dimensions(o.space, join(path, o.value)))
        return found
    if isinstance(space, (IntRange, FloatRange)):
        return {path: space}
    if isinstance(space, Mapping):
        return {p: d for k, v in space.items() for p, d in dimensions(v, join(path, k)).items()}
    if isinstance(space, (list, tuple)):
        return {p: d for i, v in enumerate(space) for p, d in dimensions(v, join(path, i)).items()}
    return {}


def size(space: Any) -> float:
    """Number of distinct concrete values (``inf`` when a float range is free)."""
    if isinstance(space, Choice):
        return sum(1 if o.space is None else size(o.space) for o in space.options)
    if isinstance(space, IntRange):
        return float(len(range(space.low, space.high + 1, space.step))) if not space.log else space.high - space.low + 1
    if isinstance(space, FloatRange):
        return float("inf") if space.step is None else round((space.high - space.low) / space.step) + 1
    total = 1.0
    items = space.values() if isinstance(space, Mapping) else space if isinstance(space, (list, tuple)) else ()
    for v in items:
        total *= size(v)
    return total


def describe(dim: Any) -> str:
    if isinstance(dim, Choice):
        return "choice " + ", ".join(str(v) for v in dim.labels())
    if isinstance(dim, IntRange):
        return (
            f"int [{dim.low}, {dim.high}]"
            + (f" step {dim.step}" if dim.step != 1 else "")
            + (" log" if dim.log else "")
        )
    return f"float [{dim.low}, {dim.high}]" + (f" step {dim.step}" if dim.step else "") + (" log" if dim.log else "")


def flatten(value: Any, path: str = "") -> dict[str, Any]:
    """Flat params of a concrete value, named as ``sample`` names the dimensions (and so
    as Optuna names its parameters): ``model.stages.0.mixer = attention``,
    ``model.stages.0.mixer.attention.heads = 4``."""
    if isinstance(value, Mapping) and set(value) == {"name", "options"}:
        return {param(path): value["name"], **flatten(value["options"], join(path, value["name"]))}
    if isinstance(value, Mapping):
        return {p: v for k, sub in value.items() for p, v in flatten(sub, join(path, k)).items()}
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, Mapping) for v in value):
        return {p: v for i, sub in enumerate(value) for p, v in flatten(sub, join(path, i)).items()}
    return {param(path): value}


def as_written(value: Any) -> Any:
    """A concrete value back in the spec's own form: ``sample`` gives a named block as
    ``{name, options}``, the spec writes it ``{name: options}`` (or the bare name)."""
    if isinstance(value, Mapping) and set(value) == {"name", "options"}:
        return {value["name"]: as_written(value["options"])} if value["options"] else value["name"]
    if isinstance(value, Mapping):
        return {k: as_written(v) for k, v in value.items()}
    if isinstance(value, list):
        return [as_written(v) for v in value]
    return value

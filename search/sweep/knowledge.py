"""What a spec's space tells a sampler before anything trains (``search.samplers.Knowledge``):
its parameters' distributions, which architecture a parameter set is (``draw_key``: equal
for two draws that train the same), and the costs counted on the model built on the meta
device (params, GMACs, GFLOPs: ``blocks.cost.counted_cost``, what a trial logs), with the
spec's constraints on them. Measured costs (latency, memory) are not exact: a sampler
learns them from results like accuracy."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from blocks import ArchError, build
from blocks.cost import counted_cost
from runs.data import geometry
from search.samplers import Described, Exact, Knowledge
from search.spec import Spec
from search.spec.arch import to_arch
from search.spec.space import Choice, FloatRange, IntRange, dimensions, flatten, param, sample

COUNTED = ("params", "gmacs", "gflops")  # exact before training; latency and memory are measured
NEW_COSTS_PER_ASK = 48  # a model built and counted on the meta device takes about 15 ms


def trial_params(model_cfg: dict, train_cfg: dict, seed: int) -> dict:
    """The MLflow params of a trial, named as Optuna names its parameters
    (``search.spec.space.param``); a stage left out (depth 0) by its depth alone."""
    stages = model_cfg.get("stages")
    if isinstance(stages, list):
        model_cfg = {**model_cfg, "stages": [{"depth": 0} if s.get("depth") == 0 else s for s in stages]}
    return {**flatten(model_cfg, "model"), **flatten(train_cfg, "train"), "seed": seed}


def draw_key(model_cfg: dict, train_cfg: dict) -> str:
    """Equal for two draws that train the same: the same params but the seed (so the
    values of a stage left out make no difference)."""
    params = trial_params(model_cfg, train_cfg, 0)
    del params["seed"]
    return hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()


def distributions(spec: Spec) -> dict[str, BaseDistribution]:
    """Every parameter a trial of ``spec`` can suggest, conditional ones included, as the
    distribution ``search.spec.space.sample`` suggests it with."""
    out: dict[str, BaseDistribution] = {}
    for path, dim in {**dimensions(spec.model, "model"), **dimensions(spec.train, "train")}.items():
        if isinstance(dim, Choice):
            out[param(path)] = CategoricalDistribution(dim.labels())
        elif isinstance(dim, IntRange):
            out[param(path)] = IntDistribution(dim.low, dim.high, step=dim.step, log=dim.log)
        elif isinstance(dim, FloatRange):
            out[param(path)] = FloatDistribution(dim.low, dim.high, step=dim.step, log=dim.log)
    return out


class _Reading:
    """A stand-in trial that answers ``sample`` from a parameter set (its first value where
    the set lacks one: a trial's params hold only what it suggested) and notes what was asked."""

    def __init__(self, params: dict, space: dict[str, BaseDistribution]) -> None:
        self.params, self.space, self.asked = params, space, {}

    def _get(self, name: str, default: Any) -> Any:
        value = self.params.get(name, default)
        self.asked[name] = value
        return value

    def suggest_categorical(self, name: str, choices: list) -> Any:
        return self._get(name, choices[0])

    def suggest_int(self, name: str, low: int, high: int, *, step: int = 1, log: bool = False) -> int:
        return self._get(name, low)

    def suggest_float(self, name: str, low: float, high: float, *, step=None, log: bool = False) -> float:
        return self._get(name, low)


def knowledge(spec: Spec, counted_before: Mapping[str, Mapping[str, float]] | None = None) -> Knowledge:
    """The ``Knowledge`` of ``spec``'s space for an informed sampler. ``counted_before``:
    costs already counted, by ``draw_key`` (a replayed table's rows, recorded with the same
    counter), read instead of building each model again (about 30 ms each)."""
    counted_before = counted_before or {}
    space = distributions(spec)
    metrics = {o.metric for o in spec.objectives} | {c.metric for c in spec.constraints}
    counted = tuple(m for m in COUNTED if m in metrics)
    geo = geometry(spec.data)
    shape = (geo.image_size, geo.num_classes, geo.channels)

    def read(params) -> tuple[dict, dict, dict]:
        reading = _Reading(dict(params), space)
        model_cfg, train_cfg = sample(spec.model, reading, "model"), sample(spec.train, reading, "train")
        return model_cfg, train_cfg, reading.asked

    def describe(params) -> Described:
        return described(tuple(sorted((n, type(v).__name__, v) for n, v in params.items())))  # 1 is not True

    # The frontier sampler describes the same parameter sets ask after ask (every trial
    # known, the proposals around the same parents, a small space enumerated whole).
    @lru_cache(maxsize=2**14)
    def described(items: tuple) -> Described:
        model_cfg, train_cfg, asked = read({n: v for n, _, v in items})
        stages = model_cfg.get("stages") or []
        left_out = tuple(f"model.stages.{i}." for i, s in enumerate(stages) if s.get("depth") == 0)
        active = {n: v for n, v in asked.items() if not (n.startswith(left_out) and not n.endswith(".depth"))}
        return Described(draw_key(model_cfg, train_cfg), active)

    def exact(params) -> Exact | None:
        model_cfg, train_cfg, _ = read(params)
        known = counted_before.get(draw_key(model_cfg, train_cfg)) if counted_before else None
        if known is not None and all(m in known for m in counted):
            costs = {m: float(known[m]) for m in counted}
        else:
            costs = _counted(json.dumps(model_cfg, sort_keys=True, default=str), shape, counted)
        if costs is None:
            return None
        feasible = all(c.violation(costs[c.metric]) <= 0 for c in spec.constraints if c.metric in costs)
        return Exact(costs, feasible)

    objectives = tuple((o.metric, o.direction) for o in spec.objectives)
    return Knowledge(space, objectives, describe, exact, NEW_COSTS_PER_ASK)


@lru_cache(maxsize=65536)
def _counted(model_json: str, shape: tuple, metrics: tuple[str, ...]) -> dict[str, float] | None:
    """The counted costs of a model config (None when the builder refuses it), once per process."""
    arch = to_arch(json.loads(model_json), *shape)
    try:  # building on the meta device is the builder's check (blocks.check) and the count's model at once
        meta = build(arch, device="meta")
    except (ArchError, TypeError, OverflowError, RuntimeError):  # check's refusals; torch's on meta too
        return None
    if not metrics:
        return {}
    costs = counted_cost(arch, meta=meta)
    return {m: float(costs[m]) for m in metrics}

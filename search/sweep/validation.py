"""What ``validate`` reports of a loaded spec, as data: its search dimensions and how many
points they make, sampled architectures (an ablation's arms) with their counted cost and
what a sweep would refuse them for, and what running the spec would do to the sweep of
its name already in its store. ``python main.py validate`` prints a ``SpecReport``;
``--json`` prints its ``to_json()``.

>>> from search.spec import load
>>> from search.sweep.validation import spec_report
>>> spec_report(load("spaces/quickstart.yaml"), samples=2).size
inf
"""

from __future__ import annotations

import dataclasses
import math
import random
from dataclasses import dataclass
from typing import Any

from blocks import ArchSpec, build, check, summary
from blocks.cost import count_layer_params, count_params, flops_per_image, gmacs_of
from blocks.presets import published_for
from runs.data import geometry
from runs.store import StoreError
from search.spec.arch import RandomTrial, to_arch
from search.spec.load import Spec
from search.spec.space import describe, dimensions, sample, size
from search.sweep import preflight

COUNTED = ("params", "gmacs", "gflops")  # cost metrics counted without a device; latency and memory are measured


@dataclass(frozen=True)
class SpecReport:
    """``validate``'s report of a spec; its fields in the order ``--json`` writes them."""

    name: str
    dimensions: dict[str, str]  # key path -> the dimension in words (``choice 2, 4``)
    size: float  # points in the space: inf with a continuous dimension
    objectives: list[str]  # ``metric (direction)``
    constraints: list[str]
    constraints_checked_when_trials_run: list[str]  # measured on a trial's device, so not checked here
    samples: list[dict]  # one ``architecture_row`` per sampled architecture or ablation arm
    # The sweep of this name already in the store, when the spec changes it: the changes,
    # why run would refuse them ("" if it would not) and the earlier trials kept and outside.
    continues: dict | None = None

    @property
    def refused(self) -> bool:
        """Whether ``run`` would refuse the spec for the sweep already in its store."""
        return bool(self.continues and self.continues["refused"])

    def to_json(self) -> dict:
        """The report as JSON data: no ``continues`` for a new or unchanged sweep, and
        infinities as null (JSON has no numbers for them)."""
        data = dataclasses.asdict(self)
        if self.continues is None:
            del data["continues"]
        return _finite(data)


def spec_report(spec: Spec, *, samples: int = 5, seed: int = 0) -> SpecReport:
    """The report of ``spec``: ``samples`` architectures drawn uniformly with ``seed``, or
    an ablation's arms. Nothing is trained or written; the store is only read."""
    dims = {**dimensions(spec.model, "model"), **dimensions(spec.train, "train")}
    geo, rng = geometry(spec.data), random.Random(seed)
    if spec.ablation is not None:  # the arms, not random draws
        rows = [
            architecture_row(to_arch(arm.model, geo.image_size, geo.num_classes, geo.channels), spec, arm.name)
            for arm in spec.ablation.arms
        ]
    else:
        models = [sample(spec.model, RandomTrial(rng), "model") for _ in range(samples)]
        rows = [architecture_row(to_arch(m, geo.image_size, geo.num_classes, geo.channels), spec) for m in models]
    return SpecReport(
        name=spec.name,
        dimensions={p: describe(d) for p, d in dims.items()},
        size=size(spec.model) * size(spec.train),
        objectives=[f"{o.metric} ({o.direction})" for o in spec.objectives],
        constraints=[str(c) for c in spec.constraints],
        constraints_checked_when_trials_run=[str(c) for c in spec.constraints if c.metric not in COUNTED],
        samples=rows,
        continues=continuation(spec),
    )


def architecture_row(arch: ArchSpec, spec: Spec, arm: str = "") -> dict:
    """What the report shows of one architecture: its ``summary`` and the builder's
    refusals, or its counted cost (``params``, ``layer_params``, ``gmacs``, ``gflops``), a
    paper's count where it is a paper's model (``published``), and the cost constraints
    that it breaks (``refused``, as the sweep would record it)."""
    refused = [str(p) for p in check(arch)]
    row: dict[str, Any] = {"summary": f"{arm}: {summary(arch)}" if arm else summary(arch), "refused": refused}
    if not refused:
        flops, meta = flops_per_image(arch), build(arch, device="meta")
        row.update(params=count_params(meta)[0], layer_params=count_layer_params(meta))
        row.update(gmacs=gmacs_of(flops), gflops=flops / 1e9)
        if (found := published_for(arch)) is not None:  # a paper's model: its count beside ours
            name, p = found
            measured = row["layer_params"] if p.layer else row["params"]
            row["published"] = {"preset": name, "params": p.params, "convention": "layer" if p.layer else "total"}
            row["published"] |= {"source": p.source, "difference": measured - p.params, "note": p.note}
        broken = [str(c) for c in spec.constraints if c.metric in COUNTED and c.violation(row[c.metric]) > 0]
        row["refused"] = ["breaks " + ", ".join(broken)] if broken else []
    return row


def continuation(spec: Spec) -> dict | None:
    """What running the spec does to the sweep already in its store: an amendment (the
    spec's changes and what becomes of the earlier trials) or why it is refused; None for
    a new or unchanged sweep."""
    try:
        plan = preflight.continuation(spec)
    except StoreError as err:
        return {"changes": [], "refused": str(err), "kept": [], "outside": {}}
    if plan is None:
        return None
    return {"changes": plan.changes, "refused": "", "kept": sorted(plan.kept), "outside": plan.outside}


def _finite(value):
    """``value`` with infinities and NaNs as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value

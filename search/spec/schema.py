"""The spec's schema: which keys each section takes, what values they accept and which are
searchable. A key's default is written once, in the dataclass its section becomes
(``SearchSpec``, ``BackendSpec``, ``runs.data.DataSpec``, ``runs.train.TrainConfig``, and
``blocks``' ``ArchSpec`` and ``StageSpec`` for the model); the tables take it from there."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from blocks import HEADS, POSITIONALS, WIRINGS, ArchSpec, EmbeddingSpec, StageSpec, Transition
from runs.data import DataSpec
from runs.proxies import DEFAULT as DEFAULT_PROXIES
from runs.train import TrainConfig
from search.backends import BACKENDS
from search.pruners import PRUNERS
from search.samplers import SAMPLERS
from search.spec.checks import (
    Check,
    address,
    boolean,
    fraction,
    integer,
    mlflow_name,
    models_to_log,
    name_list,
    number,
    one_of,
    optional,
    path_text,
    registered,
    registered_name,
    stride,
    sweep_name,
    text,
    warm_start,
)


@dataclass(frozen=True)
class Field:
    check: Check
    default: Any = None  # for most keys taken from the section's dataclass (``with_defaults``)
    searchable: bool = False


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None  # a required field: the section's own check refuses it missing


def with_defaults(fields: dict[str, Field], *sources: type) -> dict[str, Field]:
    """``fields``, in their order, each with the default of the same-named field of the
    first dataclass in ``sources`` that has one; a key none has keeps its own."""
    found: dict[str, Any] = {}
    for source in reversed(sources):
        found |= {f.name: _default(f) for f in dataclasses.fields(source)}
    twice = [key for key, f in fields.items() if key in found and f.default is not None]
    if twice:
        raise TypeError(f"the default of {', '.join(twice)} is written in the table and in its dataclass")
    return {key: dataclasses.replace(f, default=found[key]) if key in found else f for key, f in fields.items()}


@dataclass(frozen=True)
class SearchSpec:
    sampler: str = "frontier"  # archsweep's own: bench search, BENCHMARKS.md ("The frontier sampler")
    trials: int = 16
    pruner: str = "none"
    seed: int = 0
    timeout: float | None = None
    # asha, mo_asha: the first rung is judged after min_epochs epochs, then every
    # reduction_factor times as many, and 1 in reduction_factor trials goes on past each.
    # None: the pruner's own default (``halving`` of its class in search.pruners).
    min_epochs: int | None = None
    reduction_factor: int | None = None
    # The zero-cost proxies (runs.proxies) every trial scores before training; [] for none.
    proxies: tuple[str, ...] = DEFAULT_PROXIES

    replay: str | None = None  # a recorded table: trials read their results from it, nothing trains
    # Start from an earlier sweep's results: {from: SWEEP or SPEC.yaml, take: front | all | N}
    # (search.sweep.warm); a mapping, read only by the sweep.
    warm_start: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class BackendSpec:
    kind: str = "local"  # local: trials in processes of this machine; ray: Ray Tune
    address: str = "local"  # ray: local (a private runtime), auto or host:port (join a cluster)
    cpus_per_trial: float = 1
    gpus_per_trial: float = 0
    max_concurrent: int | None = None  # trials at once (local: 1 unless --workers)
    max_failures: int = 2  # retries of a crashed trial, from its last checkpoint
    trial_timeout: float | None = None  # seconds; a trial still running then fails with reason timeout
    memory_per_trial: float | None = None  # GiB a trial may allocate; beyond it fails with reason oom
    storage_path: str | None = None  # Tune's experiment state; shared storage on a cluster
    dashboard: bool = False


# The order of the keys in each table is the order Optuna samples the searchable ones in:
# reordering them changes what a seeded sweep draws.

TOP_FIELDS = {
    k: Field({"name": sweep_name, "description": text}.get(k, lambda v: None))
    for k in (
        "name",
        "description",
        "data",
        "model",
        "train",
        "objectives",
        "constraints",
        "search",
        "ablation",
        "backend",
        "tracking",
    )
}
# ``Ablation`` holds the arms built from this section, not the section as written: the
# section's defaults are its own.
ABLATION_FIELDS = {
    "base": Field(lambda v: None),  # checked by search.spec.load._trial_base
    "factors": Field(lambda v: None, {}),
    "design": Field(one_of("one-at-a-time", "factorial"), "one-at-a-time"),
    "seeds": Field(integer(), 3),
}
DATA_FIELDS = with_defaults(
    {
        "dataset": Field(one_of("digits", "synthetic", "cifar10", "cifar100", "imagefolder")),
        "path": Field(optional(path_text)),
        "image_size": Field(optional(integer())),
        "val_fraction": Field(number(0, 1)),
        "num_classes": Field(integer(2)),
        "samples": Field(integer(10)),
        "channels": Field(integer()),
        "crop": Field(integer(0)),
        "flip": Field(boolean),
    },
    DataSpec,
)
TRAIN_FIELDS = with_defaults(
    {
        "optimizer": Field(one_of("adamw", "sgd"), searchable=True),
        "lr": Field(number(), searchable=True),
        "weight_decay": Field(number(open_low=False), searchable=True),
        "epochs": Field(integer(), searchable=True),
        "batch_size": Field(integer(), searchable=True),
        "label_smoothing": Field(number(0, 1, open_low=False), searchable=True),
        "schedule": Field(one_of("cosine", "constant"), searchable=True),
        "warmup_epochs": Field(number(open_low=False), searchable=True),
        "grad_clip": Field(number(open_low=False), searchable=True),
        "momentum": Field(number(0, 1, open_low=False), searchable=True),
        "amp": Field(boolean),
    },
    TrainConfig,
)
SEARCH_FIELDS = with_defaults(
    {
        "sampler": Field(registered(SAMPLERS)),
        "trials": Field(integer()),
        "pruner": Field(registered(PRUNERS)),
        "seed": Field(integer(0)),
        "timeout": Field(optional(number())),
        "min_epochs": Field(optional(integer())),
        "reduction_factor": Field(optional(integer(2))),
        "proxies": Field(name_list),  # each one of runs.metrics.PROXY_METRICS (search.spec.load)
        "replay": Field(optional(path_text)),
        "warm_start": Field(optional(warm_start)),
    },
    SearchSpec,
)


BACKEND_FIELDS = with_defaults(
    {
        "kind": Field(registered(BACKENDS)),
        "address": Field(address),
        "cpus_per_trial": Field(number()),
        "gpus_per_trial": Field(fraction),
        "max_concurrent": Field(optional(integer())),
        "max_failures": Field(integer(0)),
        "trial_timeout": Field(optional(number())),
        "memory_per_trial": Field(optional(number())),
        "storage_path": Field(optional(path_text)),
        "dashboard": Field(boolean),
    },
    BackendSpec,
)
# Spec takes these under other names (store, log_models, ...), some filled in from others
# (experiment from the sweep's name): the section's defaults are its own.
TRACKING_FIELDS = {
    "experiment": Field(optional(mlflow_name)),
    "uri": Field(optional(text)),
    "dir": Field(optional(path_text)),
    "models": Field(models_to_log, "pareto"),  # which trials are logged as MLflow models
    "register": Field(optional(registered_name)),  # the logged models become versions of this registered model
}
MODEL_FIELDS = with_defaults(
    {
        "patch_size": Field(integer(), searchable=True),
        "positional": Field(one_of(*POSITIONALS), searchable=True),
        "head": Field(one_of(*HEADS), searchable=True),
        "norm_eps": Field(number(0, 1), searchable=True),
    },
    ArchSpec,
    EmbeddingSpec,
)
# Model keys that enter the space only when a spec writes them (added after tables were
# recorded against spaces without them; see search.sweep.pipeline.draw_key).
WRITTEN_MODEL_FIELDS = {"final_norm": Field(boolean, True, searchable=True)}
STAGE_FIELDS = with_defaults(
    {
        "depth": Field(integer(0), searchable=True),
        "width": Field(integer(), searchable=True),
        "mlp_ratio": Field(number(), searchable=True),
        "dropout": Field(number(0, 1, open_low=False), searchable=True),
        "drop_path": Field(number(0, 1, open_low=False), searchable=True),
        # pool, pool_stride and merge are spelled differently in blocks' Transition (its kind
        # and mode in one word, its stride as the list YAML writes): their defaults are here.
        "pool": Field(one_of("none", "mean", "max"), "none", searchable=True),
        "pool_stride": Field(stride, [2, 2]),
        "query_only": Field(boolean, searchable=True),
        "merge": Field(boolean, False, searchable=True),
        "block": Field(one_of(*WIRINGS), searchable=True),
    },
    StageSpec,
    Transition,
)


# Keys an earlier version took, and where what they said is written now.
MOVED = {
    "model.norm": "the block wiring is set per stage now: stages[*].block: pre, post, shared, mid or bare",
}

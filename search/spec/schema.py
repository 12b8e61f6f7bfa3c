"""The spec's schema: which keys each section takes, what values they accept and which are
searchable. A key's default is written once, in the dataclass its section becomes
(``SearchSpec``, ``BackendSpec``, ``runs.data.DataSpec``, ``runs.train.TrainConfig``, and
``blocks``' ``ArchSpec`` and ``StageSpec`` for the model); the tables take it from there."""

from __future__ import annotations

import dataclasses
import math
import re
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from blocks import (
    EMBEDDINGS,
    HEADS,
    MIXERS,
    POSITIONALS,
    TRANSITIONS,
    WIRINGS,
    ArchSpec,
    EmbeddingSpec,
    StageSpec,
    Transition,
)
from blocks.builder import EMBEDDING_ARGS, MIXER_ARGS, TRANSITION_ARGS, did_you_mean, option_problems
from runs.data import DataSpec
from runs.train import TrainConfig
from search.spec.space import Choice, FloatRange, IntRange, Option
from search.spec.yamlio import Document, Issue, Where, join

Check = Callable[[Any], "str | None"]


# -- value checks ------------------------------------------------------------------------


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


LARGEST = 2**31 - 1  # beyond any sane size or count, and beyond what torch's shapes take


def integer(low: int = 1) -> Check:
    word = "a positive integer" if low == 1 else f"an integer >= {low}"

    def check(v):
        if _is_int(v) and v > LARGEST:
            return f"expected {word} up to {LARGEST}, got {v!r}"
        return None if _is_int(v) and v >= low else f"expected {word}, got {v!r}"

    return check


def number(low: float = 0.0, high: float | None = None, *, open_low: bool = True) -> Check:
    def check(v):
        ok = _is_num(v) and (v > low if open_low else v >= low) and (high is None or v < high)
        rng = f"{'>' if open_low else '>='} {low:g}" + (f" and < {high:g}" if high is not None else "")
        return None if ok else f"expected a number {rng}, got {v!r}"

    return check


def one_of(*allowed: str) -> Check:
    def check(v):
        if v in allowed:
            return None
        return f"expected one of {', '.join(allowed)}, got {v!r}{did_you_mean(v, allowed)}"

    return check


def boolean(v: Any) -> str | None:
    return None if isinstance(v, bool) else f"expected true or false, got {v!r}"


def text(v: Any) -> str | None:
    return None if isinstance(v, str) and v else f"expected a non-empty string, got {v!r}"


def shown(v: Any, limit: int = 60) -> str:
    """``repr(v)``, cut short: a refusal stays one readable line."""
    text = repr(v)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}..." + (f" ({len(v)} characters)" if isinstance(v, str) else "")


_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_RESERVED = {"CON", "PRN", "AUX", "NUL", *(f"{d}{i}" for d in ("COM", "LPT") for i in range(10))}  # Windows
NAME_RULE = "1-64 ASCII letters, digits, '_', '-' or '.', starting with a letter or digit, without '..'"


def sweep_name(v: Any) -> str | None:
    """The sweep's name names its files in the store (journal, lock, checkpoints): an
    identifier, never a path."""
    if not isinstance(v, str) or not _NAME.fullmatch(v) or ".." in v or v.endswith("."):
        return f"a sweep name (it names files in the store) is {NAME_RULE}; got {shown(v)}"
    if v.split(".")[0].upper() in _RESERVED:
        return f"{v!r} is a device name on Windows, not a file name; a sweep name names files in the store"
    return None


_BIDI = set("\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")  # marks, overrides, isolates


def _unprintable(v: str) -> str | None:
    """The first control, bidirectional or unencodable (surrogate) character of ``v``."""
    for ch in v:
        if unicodedata.category(ch) in ("Cc", "Cs") or ch in _BIDI:
            return f"U+{ord(ch):04X}"
    return None


def mlflow_name(v: Any, *, registered: bool = False) -> str | None:
    """An MLflow experiment or registered model name: free text, bounded, printable."""
    if not isinstance(v, str) or not v.strip():
        return f"expected a non-empty name, got {shown(v)}"
    if len(v) > 250:
        return f"expected a name of at most 250 characters, got {len(v)}"
    if (bad := _unprintable(v)) is not None:
        return f"a name holds no control or direction-changing characters; {shown(v)} holds {bad}"
    if registered and (any(c in v for c in "/:") or v.startswith("..") or v != v.strip()):
        rule = "a registered model name has no '/' or ':', no leading '..' and no outer spaces (MLflow's rule)"
        return f"{rule}; got {shown(v)}"
    return None


def registered_name(v: Any) -> str | None:
    return mlflow_name(v, registered=True)


def path_text(v: Any) -> str | None:
    """A file or folder name as written in a spec: text the file system can take."""
    if not isinstance(v, str) or not v:
        return f"expected a path, got {shown(v)}"
    if (bad := _unprintable(v)) is not None:
        return f"a path here holds no control characters; {shown(v)} holds {bad}"
    if len(v) > 1024 or any(len(part.encode()) > 255 for part in re.split(r"[/\\]", v)):
        return f"expected a path of at most 1024 characters, each name in it at most 255 bytes; got {shown(v)}"
    return None


def warm_start(v: Any) -> str | None:
    """``{from: SWEEP or SPEC.yaml, take: front | all | N}``: a sweep of this store by its
    name (an identifier), or the spec file of one (a path ending .yaml)."""
    if not isinstance(v, Mapping) or "from" not in v or set(v) - {"from", "take"}:
        return f"expected {{from: SWEEP or SPEC.yaml, take: front | all | N}}, got {shown(v)}"
    source, take = v["from"], v.get("take", "front")
    is_spec = isinstance(source, str) and source.endswith((".yaml", ".yml"))
    if (why := path_text(source) if is_spec else sweep_name(source)) is not None:
        return f"from: {why}"
    if take not in ("front", "all") and not (_is_int(take) and take > 0):
        return f"take: expected front, all or a positive number of trials, got {shown(take)}"
    return None


def optional(check: Check) -> Check:
    return lambda v: None if v is None else check(v)


def models_to_log(v: Any) -> str | None:
    """pareto, all, none, or trial numbers (logged with the front's)."""
    if v in ("pareto", "all", "none") or (isinstance(v, list) and v and all(_is_int(n) and n >= 0 for n in v)):
        return None
    hint = did_you_mean(v, ("pareto", "all", "none")) if isinstance(v, str) else ""
    return f"expected pareto, all, none or a list of trial numbers, got {v!r}{hint}"


def stride(v: Any) -> str | None:
    if isinstance(v, list) and len(v) == 2 and all(_is_int(s) and s >= 1 for s in v) and v != [1, 1]:
        return None
    return f"expected two positive integers [rows, cols], not both 1, got {v!r}"


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


# asha: Optuna's and Tune's own defaults (as before these settings existed); mo_asha: chosen
# by `bench search` on the recorded digits table (BENCHMARKS.md, "Search efficiency").
HALVING_DEFAULTS = {"asha": (1, 4), "mo_asha": (2, 2)}


@dataclass(frozen=True)
class SearchSpec:
    sampler: str = "nsga2"  # bench search: fewest evaluations to 99% of the exact front (BENCHMARKS.md)
    trials: int = 16
    pruner: str = "none"
    seed: int = 0
    timeout: float | None = None
    # asha, mo_asha: the first rung is judged after min_epochs epochs, then every
    # reduction_factor times as many, and 1 in reduction_factor trials goes on past each.
    # None: the pruner's own default (HALVING_DEFAULTS).
    min_epochs: int | None = None
    reduction_factor: int | None = None

    def halving(self) -> tuple[int, int]:
        """(min_epochs, reduction_factor) of this search's pruner."""
        first, eta = HALVING_DEFAULTS.get(self.pruner, (1, 3))
        return self.min_epochs or first, self.reduction_factor or eta

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
        "sampler": Field(one_of("tpe", "nsga2", "gp", "random", "grid")),
        "trials": Field(integer()),
        "pruner": Field(one_of("none", "median", "asha", "hyperband", "mo_asha")),
        "seed": Field(integer(0)),
        "timeout": Field(optional(number())),
        "min_epochs": Field(optional(integer())),
        "reduction_factor": Field(optional(integer(2))),
        "replay": Field(optional(path_text)),
        "warm_start": Field(optional(warm_start)),
    },
    SearchSpec,
)


def address(v: Any) -> str | None:
    if v in ("local", "auto") or (isinstance(v, str) and re.fullmatch(r"[\w.-]+:\d{1,5}", v)):
        return None
    return f"expected local, auto or host:port of a running Ray cluster, got {v!r}"


def fraction(v: Any) -> str | None:
    """GPUs per trial: a fraction lets small models share a GPU; whole GPUs above 1."""
    if _is_num(v) and (0 <= v <= 1 or float(v).is_integer()):
        return None
    return f"expected a fraction in [0, 1] or a whole number, got {v!r}"


BACKEND_FIELDS = with_defaults(
    {
        "kind": Field(one_of("local", "ray")),
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


# -- the checker -------------------------------------------------------------------------


class Checker:
    """Collects located issues while a spec is walked."""

    def __init__(self, docs: list[Document], overridden: Mapping[str, Where] | None = None) -> None:
        self.docs, self.issues, self.has_free_floats = docs, [], False
        self.warnings: list[Issue] = []
        self.overridden = dict(overridden or {})  # key path -> the -o override that set it

    def where(self, path: str, *, key: bool = False) -> Where | None:
        probe = path
        while probe:  # a value set on the command line is not where the spec file writes its key
            if probe in self.overridden:
                return self.overridden[probe]
            probe = probe[: max(probe.rfind("."), probe.rfind("["), 0)]
        probe = path
        while True:
            for doc in reversed(self.docs):
                table = doc.keys if key else doc.values
                if probe in table or probe in doc.keys:
                    return table.get(probe) or doc.keys[probe]
            if not probe:
                return None
            probe = probe[: max(probe.rfind("."), probe.rfind("["), 0)]

    def fail(self, path: str, message: str, *, key: bool = False) -> None:
        issue = Issue(self.where(path, key=key), path, message)
        if issue not in self.issues:
            self.issues.append(issue)

    def section(self, raw: Any, path: str, fields: dict[str, Field]) -> dict:
        """Validate a mapping of fixed fields; defaults filled, unknown keys refused."""
        if not isinstance(raw, Mapping):
            self.fail(path, f"expected a mapping of {', '.join(fields)}; got {raw!r}")
            return {k: f.default for k, f in fields.items()}
        for key in raw:
            if join(path, key) in MOVED:
                self.fail(join(path, key), MOVED[join(path, key)], key=True)
            elif key not in fields:
                hint = did_you_mean(key, fields)
                self.fail(
                    join(path, key), f"unknown key{hint}; {path or 'the spec'} takes {', '.join(fields)}", key=True
                )
        out = {}
        for key, f in fields.items():
            value = raw.get(key, f.default)
            if f.searchable:
                out[key] = self.value(join(path, key), value, f.check)
            elif key in raw and (msg := f.check(value)) is not None:
                self.fail(join(path, key), msg)
                out[key] = f.default
            else:
                out[key] = value
        return out

    def value(self, path: str, raw: Any, check: Check | None) -> Any:
        """A fixed value or a search dimension, every possible value checked."""
        if not (isinstance(raw, Mapping) and raw.keys() & {"choice", "int", "float"}):
            if check is not None and (msg := check(raw)) is not None:
                self.fail(path, msg)
            return raw
        dim = self.dimension(path, raw)
        for v in possible_values(dim):
            if check is not None and (msg := check(v)) is not None:
                self.fail(path, msg)
        return dim

    def dimension(self, path: str, raw: Mapping) -> Any:
        kind = next(k for k in ("choice", "int", "float") if k in raw)
        allowed = {"choice": set(), "int": {"step", "log"}, "float": {"step", "log"}}[kind] | {kind}
        for key in raw:
            if key not in allowed:
                self.fail(join(path, key), f"a {kind} dimension takes {', '.join(sorted(allowed))}", key=True)
        spec = raw[kind]
        if kind == "choice":
            if not isinstance(spec, list) or not spec:
                self.fail(join(path, kind), f"expected a non-empty list of options, got {spec!r}")
                return Choice((Option(None),))
            if any(isinstance(o, (dict, list)) for o in spec):
                self.fail(
                    join(path, kind), "options here are plain values (named blocks such as mixers take {name: {...}})"
                )
            if len({repr(o) for o in spec}) < len(spec):
                self.fail(join(path, kind), "lists an option twice")
            return Choice(tuple(Option(o) for o in spec))
        return self.range(path, kind, raw)

    def range(self, path: str, kind: str, raw: Mapping) -> Any:
        bounds, step, log = raw[kind], raw.get("step"), raw.get("log", False)
        is_type = _is_int if kind == "int" else _is_num
        if not (isinstance(bounds, list) and len(bounds) == 2 and all(is_type(b) for b in bounds)):
            self.fail(join(path, kind), f"expected [low, high] of {kind}s, got {bounds!r}")
            return IntRange(1, 1) if kind == "int" else FloatRange(1.0, 1.0)
        low, high = bounds
        if low > high:
            self.fail(join(path, kind), f"the range [{low}, {high}] is inverted (low > high)")
        elif low == high and kind == "float":
            self.fail(join(path, kind), f"the range [{low}, {high}] is empty; write the value itself")
        if not isinstance(log, bool):
            self.fail(join(path, "log"), f"expected true or false, got {log!r}")
        elif log and low <= 0:
            self.fail(join(path, "log"), f"a log range needs low > 0, got {low}")
        if step is not None and not (is_type(step) and step > 0):
            self.fail(join(path, "step"), f"expected a positive {kind}, got {step!r}")
        elif step is not None and log:
            self.fail(join(path, "step"), "step and log cannot be combined (Optuna samples one or the other)")
        if kind == "int":
            return IntRange(low, high, step or 1, bool(log))
        self.has_free_floats |= step is None
        return FloatRange(float(low), float(high), step, bool(log))


def possible_values(dim: Any) -> list:
    if isinstance(dim, Choice):
        return dim.labels()
    if isinstance(dim, (IntRange, FloatRange)):
        return [dim.low, dim.high]
    return [dim]


# -- named blocks (mixers, embeddings) ---------------------------------------------------


def named_block(c: Checker, path: str, raw: Any, registry: dict, reserved: tuple[str, ...], kind: str) -> Choice:
    """``name`` | ``{name: {options}}`` | ``{choice: [name | {name: {options}}, ...]}``."""
    if isinstance(raw, Mapping) and "choice" in raw:
        for key in raw:
            if key != "choice":
                c.fail(join(path, key), "a choice of blocks takes only 'choice'", key=True)
        items = raw["choice"]
        if not isinstance(items, list) or not items:
            c.fail(join(path, "choice"), f"expected a non-empty list of {kind}s, got {items!r}")
            return Choice(())
        options = [
            _named_option(c, join(join(path, "choice"), i), o, registry, reserved, kind) for i, o in enumerate(items)
        ]
        names = [o.value for o in options if o is not None]
        if len(set(names)) < len(names):
            c.fail(join(path, "choice"), f"lists a {kind} twice; vary its options inside one entry instead")
        return Choice(tuple(o for o in options if o is not None))
    option = _named_option(c, path, raw, registry, reserved, kind)
    return Choice((option,) if option else ())


def _named_option(c: Checker, path: str, raw: Any, registry: dict, reserved, kind: str) -> Option | None:
    if isinstance(raw, str):
        name, opts, opts_path = raw, {}, path
    elif isinstance(raw, Mapping) and len(raw) == 1 and not raw.keys() & {"int", "float"}:
        ((name, opts),) = raw.items()
        opts, opts_path = (opts or {}), join(path, name)
    else:
        c.fail(path, f"expected a {kind} name or {{name: {{options}}}}, got {raw!r}")
        return None
    if name not in registry:
        c.fail(path, f"unknown {kind} {name!r}{did_you_mean(name, registry)}; known: {', '.join(registry)}")
        return None
    if not isinstance(opts, Mapping):
        c.fail(opts_path, f"the options of {name} are a mapping, got {opts!r}")
        return None
    space = {k: c.value(join(opts_path, k), v, None) for k, v in opts.items()}
    for key, dim in space.items():
        for concrete in possible_values(dim):
            for problem in option_problems(opts_path, registry[name], {key: concrete}, reserved):
                c.fail(problem.path, problem.message, key="no option" in problem.message)
    return Option(name, space)


# -- the model and train sections --------------------------------------------------------


def model_space(c: Checker, raw: Any) -> dict:
    if not isinstance(raw, Mapping):
        c.fail("model", f"expected a mapping with stages, got {raw!r}")
        return {}
    # In this order, always: the order of the keys is the order Optuna samples them in.
    fields = {**MODEL_FIELDS, **{k: Field(lambda v: None) for k in ("embedding", "stages")}, **WRITTEN_MODEL_FIELDS}
    space = c.section(raw, "model", fields)
    for key in WRITTEN_MODEL_FIELDS:  # only when written: a space without them keeps its params (and draws)
        if key not in raw:
            space.pop(key, None)
    embedding = raw.get("embedding", EmbeddingSpec.kind)
    space["embedding"] = named_block(c, "model.embedding", embedding, EMBEDDINGS, EMBEDDING_ARGS, "embedding")
    stages = raw.get("stages")
    if not isinstance(stages, list) or not stages:
        c.fail("model.stages", f"expected a non-empty list of stages, got {stages!r}")
        stages = []
    space["stages"] = [_stage_space(c, join("model.stages", i), s) for i, s in enumerate(stages)]
    return space


def _stage_space(c: Checker, path: str, raw: Any) -> dict:
    if not isinstance(raw, Mapping):
        c.fail(path, f"a stage is a mapping with depth, width and mixer; got {raw!r}")
        return {}
    fields = {**STAGE_FIELDS, "mixer": Field(lambda v: None), "transition": Field(lambda v: None)}
    stage = c.section(raw, path, fields)
    if isinstance(raw, Mapping):
        for key in ("depth", "width", "mixer"):
            if key not in raw:
                c.fail(path, f"a stage needs {key}")
    stage["mixer"] = named_block(
        c, join(path, "mixer"), (raw or {}).get("mixer", "attention"), MIXERS, MIXER_ARGS, "mixer"
    )
    stage.pop("transition", None)
    if "transition" in raw:  # only when written: a space without it keeps the params (and draws) it had
        stage["transition"] = _transition(c, path, raw)
    return stage


# The transitions a stage names under ``transition`` (pool and merge have keys of their own).
NAMED_TRANSITIONS = {k: v for k, v in TRANSITIONS.items() if k not in ("pool", "merge")}


def _transition(c: Checker, path: str, raw: Mapping) -> Choice:
    written = raw["transition"]
    if written in ("pool", "merge"):
        spelled = "pool: mean or max (with pool_stride, query_only)" if written == "pool" else "merge: true"
        c.fail(join(path, "transition"), f"{written} is written as the stage's own key: {spelled}")
        return Choice(())
    if raw.get("pool", "none") != "none" or raw.get("merge", False) is not False:
        c.fail(join(path, "transition"), "a stage enters through one transition: drop pool/merge or transition")
    return named_block(c, join(path, "transition"), written, NAMED_TRANSITIONS, TRANSITION_ARGS, "transition")


def train_space(c: Checker, raw: Mapping) -> dict:
    return c.section(raw, "train", TRAIN_FIELDS)


__all__ = ["Checker", "Issue", "model_space", "train_space"]

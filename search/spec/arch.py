"""A sampled model section as a ``blocks.ArchSpec``: ``to_arch`` maps a concrete model
section to the architecture it describes (``from_arch`` writes it back as a spec's
``model`` section), ``spec_path`` maps a path in that architecture
(where ``blocks.check`` locates a problem) back to the spec's key path,
``check_sizes`` refuses, from arithmetic alone, a model space whose largest models could
not be held (or built in reasonable time), and ``check_buildable`` refuses a model space
in which no drawn architecture builds."""

from __future__ import annotations

import math
import random
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from blocks import ArchSpec, EmbeddingSpec, MixerSpec, StageSpec, Transition
from blocks import check as check_arch
from runs import data as datasets
from search.spec.space import Choice, FloatRange, IntRange, sample
from search.spec.yamlio import join

if TYPE_CHECKING:
    from runs.data import Geometry
    from search.spec.checker import Checker


class RandomTrial:
    """A trial that draws uniformly: for checking a space without an Optuna study."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def suggest_categorical(self, name, choices):
        return self.rng.choice(choices)

    def suggest_int(self, name, low, high, *, step=1, log=False):
        return self.rng.randrange(low, high + 1, step)

    def suggest_float(self, name, low, high, *, step=None, log=False):
        return self.rng.uniform(low, high)


def to_arch(model: Mapping, image_size: tuple[int, int], num_classes: int, in_channels: int) -> ArchSpec:
    """A concrete (sampled) model section -> ``ArchSpec``."""
    stages = []
    for s in model["stages"]:
        if s.get("transition") is not None:  # a named transition: pit_pool, conv_embed, ...
            named = s["transition"]
            name, options = (named, {}) if isinstance(named, str) else (named["name"], named["options"])
            transition = Transition(name, options=options)
        elif s.get("merge"):
            transition = Transition("merge")
        elif s.get("pool", "none") != "none":
            transition = Transition("pool", s["pool"], tuple(s.get("pool_stride", (2, 2))), s.get("query_only", False))
        else:
            transition = Transition()
        mixer = MixerSpec(s["mixer"]["name"], s["mixer"]["options"])
        keys = ("mlp_ratio", "dropout", "drop_path", "block")
        stages.append(StageSpec(s["depth"], s["width"], mixer, transition=transition, **{k: s[k] for k in keys}))
    emb = model["embedding"]
    return ArchSpec(
        image_size,
        num_classes,
        tuple(stages),
        in_channels=in_channels,
        embedding=EmbeddingSpec(emb["name"], model["patch_size"], emb["options"]),
        positional=model["positional"],
        head=model["head"],
        norm_eps=model["norm_eps"],
        final_norm=model.get("final_norm", True),
    )


def _named(name: str, options: Mapping) -> str | dict:
    return {name: dict(options)} if options else name


def from_arch(arch: ArchSpec) -> dict:
    """The spec's ``model`` section for ``arch`` (the inverse of ``to_arch``): an imported
    or exported model becomes the base of a search or an ablation (``extends``). The
    image size, classes and channels are the data section's."""
    stages = []
    for s in arch.stages:
        t = s.transition
        stage = {"depth": s.depth, "width": s.width, "mixer": _named(s.mixer.name, s.mixer.options)}
        stage |= {"mlp_ratio": s.mlp_ratio, "dropout": s.dropout, "drop_path": s.drop_path, "block": s.block}
        if t.kind == "merge":
            stage["merge"] = True
        elif t.kind == "pool":
            stage |= {"pool": t.mode, "pool_stride": list(t.stride), "query_only": t.query_only}
        elif t.kind != "none":
            stage["transition"] = _named(t.kind, t.options)
        stages.append(stage)
    emb = arch.embedding
    return {
        "embedding": _named(emb.kind, emb.options),
        "patch_size": emb.patch_size,
        "positional": arch.positional,
        "head": arch.head,
        "norm_eps": arch.norm_eps,
        **({} if arch.final_norm else {"final_norm": False}),
        "stages": stages,
    }


# Builder paths that are spelled differently in the spec.
_SPEC_PATHS = [
    (re.compile(r"^embedding\.patch_size"), "patch_size"),
    (re.compile(r"\.transition\.query_only$"), ".query_only"),
    (re.compile(r"\.transition\.(?!mode$|stride$)\w+$"), ".transition"),  # a named one: pit_pool, conv_embed
    (re.compile(r"\.transition(\.\w+)?$"), ".pool"),
]


def spec_path(builder_path: str) -> str:
    """The spec's key path of a path in an ``ArchSpec`` (where ``blocks.check`` locates a problem)."""
    for pattern, replacement in _SPEC_PATHS:
        builder_path, found = pattern.subn(replacement, builder_path)
        if found:  # one spelling each: a named transition's path is not a pool's too
            break
    return f"model.{builder_path}"


# -- sizes, from arithmetic: before anything is built -------------------------------------

# Beyond anything a sweep here trains (40 GB of float32 weights), whatever the machine.
MAX_PARAMS = 10**10
# Blocks in one model. Each is built on the meta device to check and count it (about 6 ms
# a block, a validate builds several models): depth 20,000 took two minutes, 1,000,000
# over 400 s and 3.5 GB. DeepNet, among the deepest transformers trained, has 1,000.
MAX_BLOCKS = 2048
FLOAT32 = 4  # bytes a parameter


def _top(value: Any) -> tuple[float | None, bool]:
    """(the largest number ``value`` may take, whether it is a dimension); None when it
    holds no number (the schema refuses that)."""
    if isinstance(value, (IntRange, FloatRange)):
        candidates, ranged = [value.low, value.high], True
    elif isinstance(value, Choice):
        candidates, ranged = value.labels(), True
    else:
        candidates, ranged = [value], False
    numbers = [v for v in candidates if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)]
    return (max(numbers) if numbers else None), ranged


@dataclass(frozen=True)
class _Largest:
    """A stage at the largest depth, width and MLP ratio its space allows."""

    index: int
    depth: float
    width: float
    mlp_ratio: float
    ranged: bool  # some of them are the top of a dimension

    @property
    def block_params(self) -> float:
        """A lower bound on one block's parameters, whatever its mixer and wiring: its MLP's
        two Linear layers (an attention block holds about 12 x width^2, this 8 x width^2)."""
        hidden = max(1.0, self.width * self.mlp_ratio)
        return 2 * self.width * hidden + hidden + self.width

    @property
    def params(self) -> float:
        return self.depth * self.block_params

    def __str__(self) -> str:
        at = f"depth {self.depth:,.0f}, width {self.width:,.0f}, mlp_ratio {self.mlp_ratio:g}"
        return f"stage {self.index} (at {at}{', the most its dimensions allow' if self.ranged else ''})"


def _largest(index: int, stage: Any) -> _Largest | None:
    if not isinstance(stage, Mapping):
        return None
    (depth, d), (width, w), (ratio, r) = (_top(stage.get(k)) for k in ("depth", "width", "mlp_ratio"))
    if depth is None or width is None or ratio is None or depth <= 0:
        return None  # refused by the schema, or a stage left out
    return _Largest(index, depth, width, ratio, d or w or r)


def _count(n: float) -> str:
    """A large count in words: ``3.3e10``."""
    return f"{n:.1e}".replace("e+0", "e").replace("e+", "e")


def _amount(n: float) -> str:
    """Bytes in words: ``48.0 TB``."""
    for unit, size in (("EB", 1e18), ("PB", 1e15), ("TB", 1e12), ("GB", 1e9)):
        if n >= size:
            return f"{n / size:,.1f} {unit}"
    return f"{n / 1e6:,.1f} MB"


def _culprit(stage: _Largest, limit: float) -> str:
    """The key that makes ``stage`` too large: its depth, unless one block is already."""
    if stage.block_params <= limit:
        return "depth"
    usual = replace(stage, mlp_ratio=min(stage.mlp_ratio, 4.0))  # ViT's ratio
    return "mlp_ratio" if usual.block_params <= limit else "width"


def size_problems(space: Mapping) -> list[tuple[str, str]]:
    """(key path, message) of a model space whose largest model could not be held or
    built: too many parameters for this machine's memory (or ``MAX_PARAMS``), too many
    blocks. Arithmetic on the space's tops only: nothing is built, a depth of 10^9 costs
    what a depth of 1 does."""
    stages = [s for s in (_largest(i, st) for i, st in enumerate(space.get("stages") or [])) if s is not None]
    if not stages:
        return []
    total, memory = sum(s.params for s in stages), datasets.physical_memory()
    if total > MAX_PARAMS or total * FLOAT32 > memory:
        big = max(stages, key=lambda s: s.params)
        key = _culprit(big, min(MAX_PARAMS, memory / FLOAT32))
        model = f", the model at least {_count(total)}" if total > 1.05 * big.params else ""
        held = f"at least {_count(big.params)} parameters ({_amount(big.params * FLOAT32)} as float32){model}"
        if total * FLOAT32 > memory:
            why = f"this machine has {_amount(memory)} of memory"
        else:
            why = f"a model here holds at most {_count(MAX_PARAMS)} parameters"
        return [(join(f"model.stages[{big.index}]", key), f"{big} would hold {held}; {why}")]
    blocks = sum(s.depth for s in stages)
    if blocks > MAX_BLOCKS:
        deep = max(stages, key=lambda s: s.depth)
        model = "" if deep.depth == blocks else f", the model {blocks:,.0f}"
        return [
            (
                f"model.stages[{deep.index}].depth",
                f"{deep} would be {deep.depth:,.0f} blocks deep{model}; a model here is at most "
                f"{MAX_BLOCKS:,} blocks deep (each is built to check and count it)",
            )
        ]
    return []


def check_sizes(c: Checker, space: Mapping) -> bool:
    """Refuse (in ``c``) a model space whose largest model cannot be held or built; True
    when refused. Before anything is built: building is what takes the time and memory."""
    problems = size_problems(space)
    for path, message in problems:
        c.fail(path, message)
    return bool(problems)


def check_buildable(c: Checker, space: dict, geometry: Geometry, draws: int = 48) -> None:
    """Refuse a model space in which no drawn architecture can be built.

    A space where some combinations are refused is fine (those trials are recorded as
    infeasible, at no training cost); one where all are is a mistake in the spec. Sizes
    are checked first, by arithmetic: no model is built from a space whose top is absurd."""
    if check_sizes(c, space):
        return
    rng = random.Random(0)
    first = None
    for _ in range(draws):
        concrete = sample(space, RandomTrial(rng), "model")
        problems = check_arch(to_arch(concrete, geometry.image_size, geometry.num_classes, geometry.channels))
        if not problems:
            return
        first = first or problems
    for p in first or []:
        c.fail(spec_path(p.path), f"{p.message} (no architecture drawn from this space can be built)")

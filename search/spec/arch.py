"""A sampled model section as a ``blocks.ArchSpec``: ``to_arch`` maps a concrete model
section to the architecture it describes (``from_arch`` writes it back as a spec's
``model`` section), ``spec_path`` maps a path in that architecture
(where ``blocks.check`` locates a problem) back to the spec's key path, and
``check_buildable`` refuses a model space in which no drawn architecture builds."""

from __future__ import annotations

import random
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING

from blocks import ArchSpec, EmbeddingSpec, MixerSpec, StageSpec, Transition
from blocks import check as check_arch
from search.spec.space import sample

if TYPE_CHECKING:
    from runs.data import Geometry
    from search.spec.schema import Checker


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


def check_buildable(c: Checker, space: dict, geometry: Geometry, draws: int = 48) -> None:
    """Refuse a model space in which no drawn architecture can be built.

    A space where some combinations are refused is fine (those trials are recorded as
    infeasible, at no training cost); one where all are is a mistake in the spec."""
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

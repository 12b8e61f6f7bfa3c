"""The model and train sections as search spaces: named blocks (mixers, embeddings,
transitions) with their options, stages, and the train section's settings, every possible
value checked as it is read."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from blocks import EMBEDDINGS, MIXERS, TRANSITIONS, EmbeddingSpec
from blocks.builder import EMBEDDING_ARGS, MIXER_ARGS, TRANSITION_ARGS, did_you_mean, option_problems
from search.spec.checker import Checker, possible_values
from search.spec.schema import MODEL_FIELDS, STAGE_FIELDS, TRAIN_FIELDS, WRITTEN_MODEL_FIELDS, Field
from search.spec.space import Choice, Option
from search.spec.yamlio import join

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

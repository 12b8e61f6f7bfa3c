"""``ArchSpec -> nn.Module``: the only code that reads specs.

Every combination that cannot work is refused before any tensor is made, with a
``Problem(path, message)`` whose message says why and what would work. ``check`` returns
all of them at once (cheaply: components are constructed on the meta device); ``build``
raises ``ArchError`` holding the same list.
"""

from __future__ import annotations

import difflib
import inspect
import math
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

import blocks.mixers  # noqa: F401  (fills MIXERS)
from blocks import embeddings, positional, transitions  # noqa: F401  (fill their registries)
from blocks.model import WIRINGS, Block, Stage, VisionModel
from blocks.registry import EMBEDDINGS, HEADS, MIXERS, POSITIONALS, TRANSITIONS
from blocks.spec import ArchSpec, StageSpec

# Keywords the builder passes itself; a spec may not set them.
MIXER_ARGS = ("dim", "tokens_hw", "prefix", "rope")
EMBEDDING_ARGS = ("in_channels", "dim", "patch_size")
TRANSITION_ARGS = ("dim_in", "dim_out", "prefix")
# Transitions the stage's own keys spell (pool, pool_stride, query_only, merge): no options.
_SPELLED_TRANSITIONS = ("none", "pool", "merge")
_POOL_MODES = ("mean", "max")


@dataclass(frozen=True)
class Problem:
    """One refusal: the key path in the architecture and a sentence."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class ArchError(ValueError):
    """An architecture the builder refuses; ``problems`` lists every reason."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


def did_you_mean(word: object, options) -> str:
    match = difflib.get_close_matches(str(word), [str(o) for o in options], n=1, cutoff=0.6)
    return f" (did you mean {match[0]!r}?)" if match else ""


def _unknown(kind: str, name: object, registry) -> str:
    return f"unknown {kind} {name!r}{did_you_mean(name, registry)}; known: {', '.join(registry)}"


def _type_problem(value: Any, default: Any) -> str | None:
    """A sentence if ``value`` cannot stand where the signature's default stands."""
    if default is None or default is inspect.Parameter.empty:
        return None
    if isinstance(default, bool):
        ok, want = isinstance(value, bool), "true or false"
    elif isinstance(default, int):
        ok, want = isinstance(value, int) and not isinstance(value, bool), "an integer"
    elif isinstance(default, float):
        ok, want = isinstance(value, (int, float)) and not isinstance(value, bool), "a number"
    elif isinstance(default, str):
        ok, want = isinstance(value, str), "a string"
    elif isinstance(default, (tuple, list)):
        ok, want = isinstance(value, (tuple, list)), "a list"
    else:
        return None
    return None if ok else f"expected {want}, got {value!r}"


def option_problems(path: str, cls: type, options, reserved: tuple[str, ...]) -> list[Problem]:
    """Unknown, reserved and mistyped keyword options of a block constructor."""
    params = inspect.signature(cls).parameters
    own = {n: p for n, p in params.items() if p.kind is p.KEYWORD_ONLY and n not in reserved}
    name = getattr(cls, "registry_name", cls.__name__)
    problems = []
    for key, value in options.items():
        if key in reserved:
            problems.append(Problem(f"{path}.{key}", "is set by the builder; remove it"))
        elif key not in own:
            known = ", ".join(own) or "none"
            hint = did_you_mean(key, own)
            problems.append(Problem(f"{path}.{key}", f"{name} has no option {key!r}{hint}; its options: {known}"))
        elif (why := _type_problem(value, own[key].default)) is not None:
            problems.append(Problem(f"{path}.{key}", why))
    return problems


@dataclass(frozen=True)
class _StagePlan:
    index: int
    spec: StageSpec
    dim_in: int
    hw_in: tuple[int, int]
    hw: tuple[int, int]  # the grid inside the stage, after its transition


def _next_grid(t, hw: tuple[int, int], path: str, problems: list[Problem]) -> tuple[int, int]:
    if t.kind == "pool":
        if t.mode not in _POOL_MODES:
            problems.append(Problem(f"{path}.mode", f"pool mode must be mean or max, got {t.mode!r}"))
        if any(not isinstance(s, int) or isinstance(s, bool) or s < 1 for s in t.stride) or t.stride == (1, 1):
            problems.append(Problem(f"{path}.stride", f"needs positive integers, not both 1; got {t.stride}"))
            return hw
        new = (math.ceil(hw[0] / t.stride[0]), math.ceil(hw[1] / t.stride[1]))
        if new == hw:
            problems.append(Problem(path, f"pooling cannot shrink a {hw[0]}x{hw[1]} grid; drop the pool"))
        return new
    if t.kind == "merge":
        if hw[0] % 2 or hw[1] % 2:
            problems.append(Problem(path, f"merge halves the grid and needs even sides, got {hw[0]}x{hw[1]}"))
        return (max(1, hw[0] // 2), max(1, hw[1] // 2))
    out_grid = getattr(TRANSITIONS.get(t.kind), "out_grid", None)
    if out_grid is None or option_problems(path, TRANSITIONS[t.kind], t.options, TRANSITION_ARGS):
        return hw  # unchanged, or refused elsewhere
    new = out_grid(hw, **t.options)
    if min(new) < 1:
        problems.append(Problem(path, f"leaves no tokens of a {hw[0]}x{hw[1]} grid"))
        return hw
    return new


def _stage_problems(arch: ArchSpec, s: StageSpec, path: str) -> list[Problem]:
    problems = []
    for key, value, ok, want in (
        ("depth", s.depth, isinstance(s.depth, int) and s.depth >= 0, "a non-negative integer"),
        ("width", s.width, isinstance(s.width, int) and s.width > 0, "a positive integer"),
        ("mlp_ratio", s.mlp_ratio, isinstance(s.mlp_ratio, (int, float)) and s.mlp_ratio > 0, "a positive number"),
        ("dropout", s.dropout, isinstance(s.dropout, (int, float)) and 0 <= s.dropout < 1, "a number in [0, 1)"),
        ("drop_path", s.drop_path, isinstance(s.drop_path, (int, float)) and 0 <= s.drop_path < 1, "in [0, 1)"),
    ):
        if not ok or isinstance(value, bool):
            problems.append(Problem(f"{path}.{key}", f"expected {want}, got {value!r}"))
    name, t = s.mixer.name, s.transition
    if s.block not in WIRINGS:
        problems.append(Problem(f"{path}.block", f"must be one of {', '.join(WIRINGS)}, got {s.block!r}"))
    if t.kind not in TRANSITIONS:
        problems.append(Problem(f"{path}.transition", _unknown("transition", t.kind, TRANSITIONS)))
    elif t.kind in _SPELLED_TRANSITIONS:
        if t.options:
            problems.append(Problem(f"{path}.transition", f"{t.kind} takes no options here; got {dict(t.options)}"))
    else:
        problems += option_problems(f"{path}.transition", TRANSITIONS[t.kind], t.options, TRANSITION_ARGS)
    if name not in MIXERS:
        problems.append(Problem(f"{path}.mixer", _unknown("mixer", name, MIXERS)))
        return problems
    mixer = MIXERS[name]
    problems += option_problems(f"{path}.mixer", mixer, s.mixer.options, MIXER_ARGS)
    if arch.head == "cls" and not mixer.cls_token:
        problems.append(
            Problem(f"{path}.mixer", f"{name} mixes image tokens only and cannot carry a class token; use head: gap")
        )
    if arch.positional == "rope" and mixer.rope is None:
        able = ", ".join(n for n, c in MIXERS.items() if c.rope)
        problems.append(
            Problem(
                f"{path}.mixer",
                f"positional rope rotates queries and keys so that scores depend on relative positions, "
                f"and {name} has no such queries and keys; use positional learned, sincos or none, "
                f"or a mixer among {able}",
            )
        )
    if t.query_only:
        if t.kind != "pool":
            problems.append(Problem(f"{path}.transition.query_only", "applies to a pool transition only"))
        elif not mixer.query_pool:
            able = ", ".join(n for n, c in MIXERS.items() if c.query_pool)
            problems.append(
                Problem(
                    f"{path}.transition.query_only",
                    f"pool-query-only needs queries of another length than keys and {name} has no "
                    f"such form; use {able}, or pool without query_only",
                )
            )
    return problems


def _input_problems(arch: ArchSpec) -> list[Problem]:
    """``input_mean``/``input_std``: both or neither, one finite number per channel, std > 0."""
    mean, std = arch.input_mean, arch.input_std
    if (mean is None) != (std is None):
        return [Problem("input_std" if std is None else "input_mean", "input_mean and input_std go together")]
    problems = []
    for key, values in (("input_mean", mean), ("input_std", std)):
        if values is None:
            continue
        numbers = isinstance(values, tuple) and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values
        )
        if not numbers or len(values) != arch.in_channels:
            want = f"{arch.in_channels} finite number{'s' if arch.in_channels > 1 else ''}, one per channel"
            problems.append(Problem(key, f"expected {want}, got {values!r}"))
        elif key == "input_std" and min(values) <= 0:
            problems.append(Problem(key, f"must be positive, got {values!r}"))
    return problems


def _plan(arch: ArchSpec) -> tuple[list[Problem], list[_StagePlan]]:
    """Structural checks and the token grid of every active stage."""
    problems: list[Problem] = []
    emb = arch.embedding
    if emb.kind not in EMBEDDINGS:
        problems.append(Problem("embedding", _unknown("embedding", emb.kind, EMBEDDINGS)))
    else:
        problems += option_problems("embedding", EMBEDDINGS[emb.kind], emb.options, EMBEDDING_ARGS)
    if arch.positional not in POSITIONALS:
        problems.append(Problem("positional", _unknown("positional encoding", arch.positional, POSITIONALS)))
    if arch.head not in HEADS:
        problems.append(Problem("head", _unknown("head", arch.head, HEADS)))
    eps = arch.norm_eps
    if not isinstance(eps, (int, float)) or isinstance(eps, bool) or not 0 < eps < 1:
        problems.append(Problem("norm_eps", f"expected a number in (0, 1), got {eps!r}"))
    problems += _input_problems(arch)
    p = emb.patch_size
    if not isinstance(p, int) or isinstance(p, bool) or p < 1:
        problems.append(Problem("embedding.patch_size", f"expected a positive integer, got {p!r}"))
        return problems, []
    H, W = arch.image_size
    if H % p or W % p:
        sizes = [d for d in range(1, min(H, W) + 1) if H % d == 0 and W % d == 0]
        problems.append(
            Problem("embedding.patch_size", f"{p} does not divide the {H}x{W} image; patch sizes that do: {sizes}")
        )
        return problems, []
    active = [(i, s) for i, s in enumerate(arch.stages) if not (isinstance(s.depth, int) and s.depth == 0)]
    if not active:
        problems.append(Problem("stages", "needs at least one stage of depth 1 or more"))
    plans, hw, dim = [], (H // p, W // p), active[0][1].width if active else 0
    for i, s in active:
        path = f"stages[{i}]"
        problems += _stage_problems(arch, s, path)
        new_hw = _next_grid(s.transition, hw, f"{path}.transition", problems)
        plans.append(_StagePlan(i, s, dim, hw, new_hw))
        hw, dim = new_hw, s.width
    return problems, plans


def _attempt(path: str, problems: list[Problem], make):
    """Run a constructor; a ValueError it raises becomes a Problem at ``path``."""
    try:
        return make()
    except ValueError as err:
        problems.append(Problem(path, str(err)))
        return None


def _build_stage(arch: ArchSpec, plan: _StagePlan, problems: list[Problem]) -> Stage | None:
    s, t, prefix = plan.spec, plan.spec.transition, int(arch.head == "cls")
    path = f"stages[{plan.index}]"
    mixer_cls = MIXERS[s.mixer.name]
    rope = {"rope": True} if arch.positional == "rope" and mixer_cls.rope else {}
    blocks = []
    for _ in range(s.depth):
        mixer = _attempt(
            f"{path}.mixer",
            problems,
            lambda: mixer_cls(s.width, tokens_hw=plan.hw, prefix=prefix, **rope, **s.mixer.options),
        )
        if mixer is None:
            return None
        hidden = max(1, round(s.width * s.mlp_ratio))
        block = _attempt(
            path,
            problems,
            lambda mixer=mixer, hidden=hidden: Block(
                s.width, mixer, mlp_hidden=hidden, dropout=s.dropout, drop_path=s.drop_path, wiring=s.block
            ),
        )
        if block is None:
            return None
        blocks.append(block)
    extra = {"mode": t.mode, "stride": t.stride} if t.kind == "pool" else dict(t.options)
    where = f"{path}.transition" + ("" if t.kind in _SPELLED_TRANSITIONS else f".{t.kind}")
    transition = _attempt(where, problems, lambda: TRANSITIONS[t.kind](plan.dim_in, s.width, prefix=prefix, **extra))
    if transition is None:
        return None
    return Stage(transition, blocks, query_only=t.query_only)


def _construct(arch: ArchSpec, plans: list[_StagePlan]) -> tuple[VisionModel | None, list[Problem]]:
    problems: list[Problem] = []
    emb, prefix, width = arch.embedding, int(arch.head == "cls"), plans[0].spec.width
    embed = _attempt(
        "embedding",
        problems,
        lambda: EMBEDDINGS[emb.kind](arch.in_channels, width, patch_size=emb.patch_size, **emb.options),
    )
    grid_of = getattr(embed, "grid_of", None)  # embeddings whose grid is not simply the image over the patch
    if grid_of is not None and (made := grid_of(arch.image_size)) != plans[0].hw_in:
        H, W = arch.image_size
        problems.append(
            Problem(
                "embedding",
                f"makes a {made[0]}x{made[1]} grid of the {H}x{W} image, not the {plans[0].hw_in[0]}x"
                f"{plans[0].hw_in[1]} of patch size {emb.patch_size}; change its kernels, strides or paddings",
            )
        )
    pos = _attempt(
        "positional",
        problems,
        lambda: POSITIONALS[arch.positional](width, tokens_hw=plans[0].hw_in, prefix=prefix),
    )
    stages = [_build_stage(arch, plan, problems) for plan in plans]
    if problems:
        return None, problems
    model = VisionModel(
        embed,
        pos,
        stages,
        width_in=width,
        width_out=plans[-1].spec.width,
        num_classes=arch.num_classes,
        head=arch.head,
        final_norm=arch.final_norm,
        summary=summary(arch),
        input_mean=arch.input_mean,
        input_std=arch.input_std,
    )
    for module in model.modules():  # one epsilon for the whole model, whichever part made the norm
        if isinstance(module, nn.LayerNorm):
            module.eps = arch.norm_eps
    return model, problems


def _init_linear(module: nn.Module) -> None:
    # ViT/timm initialisation: truncated normal weights, zero biases.
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def check(arch: ArchSpec) -> list[Problem]:
    """Every reason ``arch`` cannot be built (empty if it can). Allocates nothing."""
    problems, plans = _plan(arch)
    if problems:
        return problems
    with torch.device("meta"):
        try:
            return _construct(arch, plans)[1]
        except (TypeError, OverflowError, RuntimeError) as err:  # torch refusing a size, even on meta
            return [Problem("model", "cannot be built: " + (str(err).strip().splitlines() or [""])[0])]


def build(arch: ArchSpec, device: torch.device | str | None = None) -> VisionModel:
    """Build ``arch`` (on ``device``; ``"meta"`` gives a shape-only model for counting)."""
    problems, plans = _plan(arch)
    if problems:
        raise ArchError(problems)
    with torch.device(device) if device is not None else nullcontext():
        model, problems = _construct(arch, plans)
        if problems:
            raise ArchError(problems)
        if torch.device(device or "cpu").type != "meta":
            model.apply(_init_linear)
    return model


def token_grids(arch: ArchSpec) -> list[tuple[int, int]]:
    """The token grid inside each active stage (class token not counted)."""
    problems, plans = _plan(arch)
    if problems:
        raise ArchError(problems)
    return [p.hw for p in plans]


def summary(arch: ArchSpec) -> str:
    """One line, e.g. ``conv/2+rope > [fourier x2 @64 post] > pool(mean) > [attention x2 @128] > gap > fc10``
    (a stage's block wiring is named when it is not ``pre``, a head without the final norm
    says so)."""
    emb = f"{arch.embedding.kind}/{arch.embedding.patch_size}"
    parts = [emb if arch.positional == "none" else f"{emb}+{arch.positional}"]
    for s in arch.active_stages:
        t = s.transition
        if t.kind == "pool":
            extra = ("" if t.stride == (2, 2) else f",{t.stride[0]}x{t.stride[1]}") + (",q" if t.query_only else "")
            parts.append(f"pool({t.mode}{extra})")
        elif t.kind != "none":
            parts.append(t.kind + (f"({','.join(f'{k}={v}' for k, v in t.options.items())})" if t.options else ""))
        wiring = "" if s.block == "pre" else f" {s.block}"
        parts.append(f"[{s.mixer.name} x{s.depth} @{s.width}{wiring}]")
    parts += [arch.head if arch.final_norm else f"{arch.head} (no norm)", f"fc{arch.num_classes}"]
    return " > ".join(parts)

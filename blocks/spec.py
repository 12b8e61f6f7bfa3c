"""The concrete architecture: frozen, typed, and the only thing the builder reads.

An ``ArchSpec`` holds primitives only (names, ints, floats, tuples and a read-only
mapping of each mixer's own options), so it can be logged, hashed into a trial id,
compared and rebuilt. Whether a combination *works* is the builder's business
(``blocks.check``); these classes only normalise shapes of values.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import Any


def _freeze(options: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return MappingProxyType(dict(options or {}))


def _floats(values) -> tuple[float, ...] | None:
    if values is None or isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        return values  # None, or left for the builder to refuse
    return tuple(float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v for v in values)


def _pair(value: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    if isinstance(value, int):
        return (value, value)
    return (value[0], value[1])


@dataclass(frozen=True)
class MixerSpec:
    """A registered token mixer and its own keyword options."""

    name: str
    options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "options", _freeze(self.options))

    def __reduce__(self):  # a read-only mapping does not pickle; its dict does (trials' processes)
        return (MixerSpec, (self.name, dict(self.options)))


@dataclass(frozen=True)
class Transition:
    """How tokens enter a stage: unchanged, funnel-pooled, merged by a strided conv, or
    another registered transition (``blocks.registry.TRANSITIONS``) with its ``options``.

    ``kind`` is ``none``, ``pool``, ``merge``, ``pit_pool`` or ``conv_embed``. For ``pool``: ``mode`` is ``mean`` or
    ``max``; ``stride`` is per grid axis, (2, 2) quarters the tokens, (1, 2) halves them
    as Funnel-Transformer does on a sequence; ``query_only`` makes the first block
    attend from pooled queries to the unpooled keys and values.
    """

    kind: str = "none"
    mode: str = "mean"
    stride: tuple[int, int] = (2, 2)
    query_only: bool = False
    options: Mapping[str, Any] = field(default_factory=dict)  # the keyword options of other kinds

    def __post_init__(self) -> None:
        object.__setattr__(self, "stride", _pair(self.stride))
        object.__setattr__(self, "options", _freeze(self.options))

    def __reduce__(self):
        return (Transition, (self.kind, self.mode, self.stride, self.query_only, dict(self.options)))


@dataclass(frozen=True)
class StageSpec:
    """``depth`` blocks of one mixer at one width. A stage of depth 0 is left out.

    ``block`` is how each block wires its mixer and MLP to the residual stream: ``pre``
    (pre-norm, two residuals), ``post`` (post-norm, FNet) or ``shared`` (one residual
    around both, GFNet); see ``blocks.model.Block``."""

    depth: int
    width: int
    mixer: MixerSpec
    mlp_ratio: float = 4.0
    dropout: float = 0.0
    drop_path: float = 0.0
    transition: Transition = field(default_factory=Transition)
    block: str = "pre"


@dataclass(frozen=True)
class EmbeddingSpec:
    """Image -> tokens: ``patch`` (linear), ``conv`` (3x3 stem) or ``overlap`` (strided conv)."""

    kind: str = "patch"
    patch_size: int = 4
    options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "options", _freeze(self.options))

    def __reduce__(self):
        return (EmbeddingSpec, (self.kind, self.patch_size, dict(self.options)))


@dataclass(frozen=True)
class ArchSpec:
    """A whole model: input, embedding, positional encoding, stages, head.

    ``head`` is ``cls`` (a class token), ``gap`` (global average pooling of the final
    tokens) or ``seq_pool`` (CCT's sequence pooling). ``final_norm``: a LayerNorm before
    the head (LeViT and CvT have none). ``norm_eps`` is the epsilon of every LayerNorm in
    the model (torch's 1e-5 by default; timm's ViT, DeiT, Mixer and GFNet use 1e-6).

    ``input_mean`` and ``input_std`` (one number per channel, both or neither) make the
    model normalise its input itself, ``(images - mean) / std``: a model trained on
    normalised data then takes images as they come (in [0, 1]). None: used as given.
    """

    image_size: tuple[int, int]
    num_classes: int
    stages: tuple[StageSpec, ...]
    in_channels: int = 3
    embedding: EmbeddingSpec = field(default_factory=EmbeddingSpec)
    positional: str = "learned"
    head: str = "gap"
    norm_eps: float = 1e-5
    final_norm: bool = True
    input_mean: tuple[float, ...] | None = None
    input_std: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "image_size", _pair(self.image_size))
        object.__setattr__(self, "stages", tuple(self.stages))
        object.__setattr__(self, "input_mean", _floats(self.input_mean))
        object.__setattr__(self, "input_std", _floats(self.input_std))

    @property
    def active_stages(self) -> tuple[StageSpec, ...]:
        return tuple(s for s in self.stages if s.depth > 0)


def to_dict(spec: Any) -> Any:
    """A plain nested dict/list form of any spec (for logging and YAML)."""
    if isinstance(spec, Mapping):
        return {k: to_dict(v) for k, v in spec.items()}
    if isinstance(spec, (tuple, list)):
        return [to_dict(v) for v in spec]
    if hasattr(spec, "__dataclass_fields__"):
        return {f.name: to_dict(getattr(spec, f.name)) for f in fields(spec)}
    return spec


def from_dict(data: Mapping[str, Any]) -> ArchSpec:
    """Inverse of ``to_dict`` for an ``ArchSpec``. Reads the ``arch.yaml`` of models
    exported before the block wiring moved into the stages (a model-wide ``norm``)."""
    data = dict(data)
    legacy = data.pop("norm", None)
    stages = []
    for s in data["stages"]:
        s = dict(s)
        if legacy is not None:
            s.setdefault("block", legacy)
        s["mixer"] = MixerSpec(**s["mixer"])
        s["transition"] = Transition(**s.get("transition", {}))
        stages.append(StageSpec(**s))
    rest = {k: v for k, v in data.items() if k not in ("stages", "embedding")}
    return ArchSpec(stages=tuple(stages), embedding=EmbeddingSpec(**data.get("embedding", {})), **rest)

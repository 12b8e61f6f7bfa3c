"""Plain-dict registries of the building blocks, filled by explicit imports.

Contracts of what each registry holds:

- ``MIXERS[name]``: a ``blocks.mixers._common.Mixer``, ``cls(dim, *, tokens_hw, prefix,
  **own)``; ``forward(x, hw)`` maps ``(B, N, D) -> (B, N, D)``. Its class attributes
  ``rope``, ``cls_token`` and ``query_pool`` state what it can do (see ``Mixer``), and
  ``takes(option)`` whether it has an option such as ``heads``.
- ``EMBEDDINGS[name]``: ``cls(in_channels, dim, *, patch_size, **own)``;
  ``forward(images)`` maps ``(B, C, H, W) -> ((B, N, D), (h, w))``.
- ``POSITIONALS[name]``: ``cls(dim, *, tokens_hw, prefix)``; ``forward(x, hw)`` adds
  (or leaves) position information on ``(B, N, D)``; ``rotary`` says RoPE is applied
  inside the mixers instead.
- ``TRANSITIONS[name]``: ``cls(dim_in, dim_out, *, prefix, **own)``;
  ``forward(x, hw)`` maps ``((B, N, Din), hw) -> ((B, N', Dout), hw')``.
- ``HEADS[name]``: a one-line description (the head is built by the model).

Each class's first docstring line is its one-line description in ``describe()``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

MIXERS: dict[str, type] = {}
EMBEDDINGS: dict[str, type] = {}
POSITIONALS: dict[str, type] = {}
TRANSITIONS: dict[str, type] = {}
HEADS: dict[str, str] = {
    "cls": "a learned class token prepended to the sequence; its final state is classified",
    "gap": "global average pooling of the final tokens (no class token)",
    "seq_pool": "sequence pooling (CCT): the final tokens averaged by a learned softmax score each",
}


def register(registry: dict[str, type], name: str) -> Callable[[T], T]:
    """Class decorator adding ``cls`` to ``registry`` under ``name``; duplicates raise."""

    def add(cls: T) -> T:
        if name in registry:
            raise ValueError(f"{name!r} is registered twice ({registry[name]} and {cls})")
        registry[name] = cls  # type: ignore[assignment]
        cls.registry_name = name  # type: ignore[attr-defined]
        return cls

    return add


def one_line(cls: type | str) -> str:
    if isinstance(cls, str):
        return cls
    return (cls.__doc__ or "").strip().splitlines()[0]


def describe() -> dict[str, dict[str, str]]:
    """Every registered block by kind, with its one-line description."""
    kinds = {
        "mixer": MIXERS,
        "embedding": EMBEDDINGS,
        "positional": POSITIONALS,
        "transition": TRANSITIONS,
        "head": HEADS,
    }
    return {kind: {name: one_line(c) for name, c in reg.items()} for kind, reg in kinds.items()}

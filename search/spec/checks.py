"""What a spec's values may be: the checks its field tables name (``Check``: a value ->
None, or what is wrong with it, one line), and the rules for the names it gives things
(a sweep's name names files; MLflow names and paths are printable, bounded text)."""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Callable, Mapping
from typing import Any

from blocks.builder import did_you_mean

Check = Callable[[Any], "str | None"]


def is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


LARGEST = 2**31 - 1  # beyond any sane size or count, and beyond what torch's shapes take


def integer(low: int = 1) -> Check:
    word = "a positive integer" if low == 1 else f"an integer >= {low}"

    def check(v):
        if is_int(v) and v > LARGEST:
            return f"expected {word} up to {LARGEST}, got {v!r}"
        return None if is_int(v) and v >= low else f"expected {word}, got {v!r}"

    return check


def number(low: float = 0.0, high: float | None = None, *, open_low: bool = True) -> Check:
    def check(v):
        ok = is_num(v) and (v > low if open_low else v >= low) and (high is None or v < high)
        rng = f"{'>' if open_low else '>='} {low:g}" + (f" and < {high:g}" if high is not None else "")
        return None if ok else f"expected a number {rng}, got {v!r}"

    return check


def one_of(*allowed: str) -> Check:
    def check(v):
        if v in allowed:
            return None
        return f"expected one of {', '.join(allowed)}, got {v!r}{did_you_mean(v, allowed)}"

    return check


def registered(registry: Mapping[str, Any]) -> Check:
    """A name in ``registry`` as it is when the spec is checked (a sampler, pruner or
    backend registered after this module was imported is a name too)."""
    return lambda v: one_of(*registry)(v)


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
    if take not in ("front", "all") and not (is_int(take) and take > 0):
        return f"take: expected front, all or a positive number of trials, got {shown(take)}"
    return None


def name_list(v: Any) -> str | None:
    """A list of distinct names (where the section is read, each is checked against what it names)."""
    if not isinstance(v, list) or not all(isinstance(name, str) for name in v):
        return f"expected a list of names ([] for none), got {shown(v)}"
    return None if len(set(v)) == len(v) else f"lists a name twice: {shown(v)}"


def optional(check: Check) -> Check:
    return lambda v: None if v is None else check(v)


def models_to_log(v: Any) -> str | None:
    """pareto, all, none, or trial numbers (logged with the front's)."""
    if v in ("pareto", "all", "none") or (isinstance(v, list) and v and all(is_int(n) and n >= 0 for n in v)):
        return None
    hint = did_you_mean(v, ("pareto", "all", "none")) if isinstance(v, str) else ""
    return f"expected pareto, all, none or a list of trial numbers, got {v!r}{hint}"


def stride(v: Any) -> str | None:
    if isinstance(v, list) and len(v) == 2 and all(is_int(s) and s >= 1 for s in v) and v != [1, 1]:
        return None
    return f"expected two positive integers [rows, cols], not both 1, got {v!r}"


def address(v: Any) -> str | None:
    if v in ("local", "auto") or (isinstance(v, str) and re.fullmatch(r"[\w.-]+:\d{1,5}", v)):
        return None
    return f"expected local, auto or host:port of a running Ray cluster, got {v!r}"


def fraction(v: Any) -> str | None:
    """GPUs per trial: a fraction lets small models share a GPU; whole GPUs above 1."""
    if is_num(v) and (0 <= v <= 1 or float(v).is_integer()):
        return None
    return f"expected a fraction in [0, 1] or a whole number, got {v!r}"

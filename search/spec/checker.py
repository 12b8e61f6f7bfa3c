"""Walking a spec: ``Checker`` collects every located issue while a section's values are
checked against its field table, and reads search dimensions (``choice``, ``int``,
``float``) into ``search.spec.space``'s types."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from blocks.builder import did_you_mean
from search.spec.checks import Check, is_int, is_num
from search.spec.schema import MOVED, Field
from search.spec.space import Choice, FloatRange, IntRange, Option
from search.spec.yamlio import Document, Issue, Where, join


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
        is_type = is_int if kind == "int" else is_num
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

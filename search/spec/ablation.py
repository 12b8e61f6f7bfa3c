"""The design of an ablation study, read with the spec: a fixed base model, factors
with levels, arms and seeds.

An ``ablation:`` section replaces ``search:``::

    ablation:
      factors:
        model.stages[*].mixer: [attention, performer, fourier]   # the first level is the base
        model.embedding: [patch, {conv: {channels: [32, 64]}}]
      design: one-at-a-time        # or factorial
      seeds: 3

Each arm is the base with some factors set to other levels; each arm runs once per seed
as a trial of the sweep (so resume, failure handling and the MLflow layout are the
sweep's). The report (``search.results.stats``) compares every arm with the base, paired by seed.
"""

from __future__ import annotations

import copy
import itertools
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Arm:
    name: str
    levels: Mapping[str, Any]  # factor path -> level (as written)
    model: Mapping[str, Any]  # the arm's model section, as written
    train: Mapping[str, Any]
    refused: str = ""  # why the builder refuses it ("" when it builds)


@dataclass(frozen=True)
class Ablation:
    factors: Mapping[str, tuple]  # path -> levels, the first being the base level
    design: str
    seeds: int
    arms: tuple[Arm, ...]

    @property
    def runnable(self) -> list[int]:
        return [i for i, arm in enumerate(self.arms) if not arm.refused]


def label(level: Any) -> str:
    if isinstance(level, Mapping) and len(level) == 1:
        ((name, options),) = level.items()
        return f"{name}{json.dumps(options, separators=(',', ':'))}" if options else str(name)
    return level if isinstance(level, str) else json.dumps(level, separators=(",", ":"))


_PART = re.compile(r"([^.\[\]]+)|\[(\*|\d+)\]")


def set_path(data: dict, path: str, value: Any) -> bool:
    """Set ``path`` (``stages[*].mixer`` sets every stage) in ``data``; False if absent."""
    parts = [m.group(1) or m.group(2) for m in _PART.finditer(path)]
    nodes = [data]
    for part in parts[:-1]:
        nxt = []
        for node in nodes:
            if part == "*" and isinstance(node, list):
                nxt += node
            elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                nxt.append(node[int(part)])
            elif isinstance(node, dict) and part in node:
                nxt.append(node[part])
            elif isinstance(node, dict) and part not in node and part != "*":
                node[part] = {}
                nxt.append(node[part])
        nodes = nxt
    last = parts[-1]
    for node in nodes:
        if isinstance(node, dict):
            node[last] = copy.deepcopy(value)
        elif isinstance(node, list) and last.isdigit() and int(last) < len(node):
            node[int(last)] = copy.deepcopy(value)
    return bool(nodes)


def path_parts(path: str) -> list[tuple[str, bool]]:
    """``stages[*].mixer`` -> [("stages", False), ("*", True), ("mixer", False)] (True: an index)."""
    return [(m.group(1) or m.group(2), m.group(2) is not None) for m in _PART.finditer(path)]


def absent(section: str, data: Any, path: str) -> str | None:
    """Why ``path`` (``stages[*].mixer``) names nothing that ``set_path`` could set in
    ``data``, the base's ``section``; None when it does. A last key the base leaves out is
    fine: it is a field at its default, and the section's own checks know its name."""
    steps = path_parts(path)
    nodes, at = [data], section
    for i, (part, indexed) in enumerate(steps):
        last, found = i == len(steps) - 1, []
        for node in nodes:
            if isinstance(node, list) and indexed:
                if part == "*" and node and not last:
                    found += node
                elif part.isdigit() and int(part) < len(node):
                    found.append(node[int(part)])
                elif part == "*":
                    return f"{at}[*]: a factor path ends in a key or an index" if node else f"the base's {at} is empty"
                else:
                    return f"the base's {at} has {len(node)} item(s), numbered from 0; there is no [{part}]"
            elif isinstance(node, Mapping) and not indexed:
                if part in node:
                    found.append(node[part])
                elif not last:
                    return f"the base sets no {at}.{part}"
            elif isinstance(node, list):
                return f"the base's {at} is a list: say which items, {at}[*] or {at}[0]"
            elif isinstance(node, Mapping):
                return f"the base's {at} is a mapping, not a list"
            else:
                return f"the base's {at} is {node!r}, which has no {part!r}; vary {at} as a whole"
        nodes, at = found, f"{at}[{part}]" if indexed else f"{at}.{part}"
    return None


def key_paths(data: Any, prefix: str) -> set[str]:
    """Every key path in ``data``, also with ``[*]`` for each index (for did-you-mean)."""
    out: set[str] = set()
    items = data.items() if isinstance(data, Mapping) else enumerate(data) if isinstance(data, list) else ()
    for key, value in items:
        path = f"{prefix}[{key}]" if isinstance(data, list) else f"{prefix}.{key}"
        out |= {path, re.sub(r"\[\d+\]", "[*]", path)} | key_paths(value, path)
    return out


def is_joint(path: str, levels: Any) -> bool:
    """A named factor whose levels each set several key paths at once::

    layout:
      B12: {model.stages[0].depth: 12, model.stages[1].depth: 0}
      B6-6: {model.stages[0].depth: 6, model.stages[1].depth: 6}
    """
    return isinstance(levels, Mapping) and path.split(".", 1)[0] not in ("model", "train")


def _settings(path: str, level: Any) -> dict[str, Any]:
    return dict(level) if isinstance(level, Mapping) and not path.startswith(("model.", "train.")) else {path: level}


def arms(factors: Mapping[str, Any], design: str, model: dict, train: dict) -> list[tuple[str, dict, dict, dict]]:
    """(name, levels, model, train) per arm; the base arm first. A joint factor's levels
    are named (``{label: {path: value, ...}}``); a plain factor's are values."""
    factors = {p: (list(v.items()) if is_joint(p, v) else [(None, x) for x in v]) for p, v in factors.items()}
    base_levels = {path: levels[0] for path, levels in factors.items()}
    if design == "factorial":
        combos = [dict(zip(factors, pick, strict=True)) for pick in itertools.product(*factors.values())]
    else:
        combos = [base_levels] + [
            {**base_levels, path: level} for path, levels in factors.items() for level in levels[1:]
        ]
    out = []
    for levels in combos:
        m, t = copy.deepcopy(model), copy.deepcopy(train)
        for path, (_, level) in levels.items():
            for target, value in _settings(path, level).items():
                section, _, rest = target.partition(".")
                set_path(m if section == "model" else t, rest, value)
        changed = {p: v for p, v in levels.items() if v != base_levels[p]}
        shown = levels if design == "factorial" else changed
        name = ", ".join(_arm_label(p, v) for p, v in shown.items()) or "base"
        out.append((name, {p: (v if n is None else n) for p, (n, v) in levels.items()}, m, t))
    return out


def _arm_label(path: str, level: tuple) -> str:
    name, value = level
    return f"{path}={name}" if name is not None else f"{path.split('.', 1)[1]}={label(value)}"

"""Safe YAML with positions: every value keeps the file, line and column it came from.

Only YAML's standard tags are accepted (``!!python/...`` and custom tags are refused),
duplicate keys are errors rather than last-one-wins, and ``1e-3`` is a float (YAML 1.1,
which PyYAML follows, would read it as a string).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

_STANDARD = "tag:yaml.org,2002:"
_FLOAT = re.compile(r"^[-+]?(?:\d[\d_]*)?(?:\.\d*)?[eE][-+]?\d+$")


class _Loader(yaml.SafeLoader):
    pass


class _FastLoader(getattr(yaml, "CSafeLoader", _Loader)):  # libyaml, where PyYAML was built with it
    pass


# PyYAML's own parser stays for syntax errors: it says what it found ("expected the node
# content, but found '-'") where libyaml only says what it missed.
for _loader in (_Loader, _FastLoader):
    _loader.add_implicit_resolver(f"{_STANDARD}float", _FLOAT, list("-+0123456789."))


@dataclass(frozen=True)
class Where:
    file: str
    line: int
    col: int

    def __str__(self) -> str:  # line 0: not in a file (a command-line override)
        return f"{self.file}:{self.line}:{self.col}" if self.line else self.file


@dataclass(frozen=True)
class Issue:
    """One problem in a spec: where, the key path, and what is wrong."""

    where: Where | None
    path: str
    message: str

    def __str__(self) -> str:
        place = f"{self.where}: " if self.where else ""
        return f"{place}{self.path}: {self.message}" if self.path else f"{place}{self.message}"


def join(path: str, key: object) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else str(key)


class Document:
    """Plain Python data loaded from YAML, plus where each key path was written."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.data: Any = None
        self.keys: dict[str, Where] = {}  # path -> position of its key (or list item)
        self.values: dict[str, Where] = {}  # path -> position of its value
        self.issues: list[Issue] = []
        self._open: set[int] = set()  # nodes being converted: an alias to one is a cycle

    def where(self, path: str, *, key: bool = False) -> Where | None:
        """The most precise known position of ``path`` (falling back to its parents)."""
        table = self.keys if key else self.values
        while path:
            if path in table:
                return table[path]
            if path in self.keys:
                return self.keys[path]
            path = path[: max(path.rfind("."), path.rfind("["), 0)]
        return None

    def _at(self, node: yaml.Node) -> Where:
        return Where(self.file, node.start_mark.line + 1, node.start_mark.column + 1)

    def convert(self, node: yaml.Node, path: str, constructor: yaml.constructor.SafeConstructor) -> Any:
        self.values[path] = self._at(node)
        if not node.tag.startswith(_STANDARD) or node.tag.startswith(f"{_STANDARD}python/"):
            kind = "python tags" if "python/" in node.tag else f"the tag {node.tag!r}"
            self.issues.append(Issue(self._at(node), path, f"{kind} are not allowed: specs are plain data"))
            return None
        if isinstance(node, yaml.ScalarNode):
            try:
                return constructor.construct_object(node)
            except (ValueError, TypeError, yaml.YAMLError) as err:  # e.g. !!float abc
                self.issues.append(Issue(self._at(node), path, f"cannot read {node.value!r} as {node.tag}: {err}"))
                return None
        if id(node) in self._open:
            self.issues.append(Issue(self._at(node), path, "this alias refers to itself (a recursive spec)"))
            return None
        self._open.add(id(node))
        try:
            if isinstance(node, yaml.MappingNode):
                return self._mapping(node, path, constructor)
            items = []
            for i, item in enumerate(node.value):
                self.keys[join(path, i)] = self._at(item)
                items.append(self.convert(item, join(path, i), constructor))
            return items
        finally:
            self._open.discard(id(node))

    def _mapping(self, node: yaml.MappingNode, path: str, constructor) -> dict:
        out: dict = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == f"{_STANDARD}merge":
                self.issues.append(Issue(self._at(key_node), path, "keys must be plain names (no merge keys)"))
                continue
            key = constructor.construct_object(key_node)
            sub = join(path, key)
            if key in out:
                first = self.keys[sub]
                self.issues.append(Issue(self._at(key_node), sub, f"duplicate key (first set at line {first.line})"))
                continue
            self.keys[sub] = self._at(key_node)
            out[key] = self.convert(value_node, sub, constructor)
        return out


def load(path: str | Path, text: str | None = None) -> Document:
    """Parse ``path`` (or ``text`` attributed to it) into a ``Document``; problems,
    including syntax errors, land in ``doc.issues`` instead of being raised."""
    doc = Document(str(path))
    try:
        source = Path(path).read_text() if text is None else text
    except OSError as err:
        doc.issues.append(Issue(None, "", f"{path}: cannot read the spec ({err.strerror})"))
        return doc
    try:
        _parse(doc, source, _FastLoader)
    except yaml.MarkedYAMLError:
        doc.keys.clear()
        doc.values.clear()
        doc.issues.clear()
        try:
            _parse(doc, source, _Loader)
        except yaml.MarkedYAMLError as err:
            mark = err.problem_mark or err.context_mark
            where = Where(doc.file, mark.line + 1, mark.column + 1) if mark else None
            doc.issues.append(Issue(where, "", f"YAML syntax: {err.problem or err.context}"))
    return doc


def _parse(doc: Document, source: str, loader_class: type) -> None:
    loader = loader_class(source)
    try:
        node = loader.get_single_node()
        doc.data = {} if node is None else doc.convert(node, "", loader)
    finally:
        loader.dispose()

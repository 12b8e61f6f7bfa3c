"""Safe YAML with positions: every value keeps the file, line and column it came from.

Only YAML's standard tags are accepted (``!!python/...`` and custom tags are refused),
duplicate keys are errors rather than last-one-wins, and ``1e-3`` is a float (YAML 1.1,
which PyYAML follows, would read it as a string). Aliases may not expand a spec past
``MAX_NODES`` values (a 1 KB "billion laughs" file would otherwise take all memory).
The file itself is read as untrusted (``runs.files``): a regular file of at most
``MAX_BYTES``, never a FIFO, a device or a folder.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from runs.files import UntrustedFile, read_bytes

_STANDARD = "tag:yaml.org,2002:"
_FLOAT = re.compile(r"^[-+]?(?:\d[\d_]*)?(?:\.\d*)?[eE][-+]?\d+$")
MAX_BYTES = 1 << 20  # a real spec is a few KB; /dev/zero or a log renamed .yaml is not read whole
MAX_NODES = 100_000  # values once aliases are expanded; a real spec holds a few hundred
MAX_DEPTH = 64  # levels of nesting; a real spec has under ten
MAX_FLOW_DEPTH = 200  # brackets, checked on the text: libyaml crashes the process past some 20,000
_BRACKETS = re.compile(r"[\[\]{}]")


class _Loader(yaml.SafeLoader):
    """PyYAML's own composer, which also notes where each alias is written (libyaml's
    cannot): an alias resolves to its anchor's node, which carries the anchor's place."""

    def __init__(self, stream) -> None:
        super().__init__(stream)
        self.aliases: dict[tuple[int, object], yaml.Mark] = {}  # (parent node, index or key node) -> mark

    def compose_node(self, parent, index):
        mark = self.peek_event().start_mark if self.check_event(yaml.AliasEvent) else None
        node = super().compose_node(parent, index)
        if mark is not None and parent is not None:
            self.aliases[(id(parent), index if isinstance(index, int) else id(index))] = mark
        return node


class _TooLarge(Exception):
    """A document that would expand too far; ``where`` None: not located yet (libyaml
    does not note where aliases are written)."""

    def __init__(self, message: str = "", where: Where | None = None, path: str = "") -> None:
        super().__init__(message)
        self.where, self.path = where, path


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
        return f"{printable(self.file)}:{self.line}:{self.col}" if self.line else printable(self.file)


def printable(text: str) -> str:
    """``text``, with what a terminal would not show as written (a newline, a NUL, a
    direction mark) escaped: a refusal stays one line that says what is there."""
    return text if text.isprintable() else repr(text)[1:-1]


@dataclass(frozen=True)
class Issue:
    """One problem in a spec: where, the key path, and what is wrong."""

    where: Where | None
    path: str
    message: str

    def __str__(self) -> str:  # one line, whatever a key or a value holds (an -o key may hold a newline)
        place, path, message = f"{self.where}: " if self.where else "", printable(self.path), printable(self.message)
        return f"{place}{path}: {message}" if path else f"{place}{message}"


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
        self.unread: str | None = None  # why the file could not be read at all (one line), if so
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
        source = _read(path) if text is None else text
    except UntrustedFile as err:  # a folder, a FIFO, a device, too large, missing, a NUL in the name
        doc.unread = printable(str(err))
        doc.issues.append(Issue(None, "", doc.unread))
        return doc
    except _NotUtf8 as err:
        doc.issues.append(Issue(Where(doc.file, err.line, err.col), "", str(err)))
        return doc
    deep = _too_deep(source)
    if deep is not None:  # before any parser: libyaml's recursion would crash the process
        where = Where(doc.file, *_line_col(source, deep))
        doc.issues.append(Issue(where, "", f"brackets nested deeper than {MAX_FLOW_DEPTH} levels; a spec needs a few"))
        return doc
    try:
        _parse(doc, source, _FastLoader)
        return doc
    except _TooLarge as err:
        if err.where is not None:  # nesting, located already; aliases need PyYAML's composer
            _reset(doc)
            doc.issues.append(Issue(err.where, err.path, str(err)))
            return doc
    except (yaml.YAMLError, UnicodeEncodeError):
        pass
    # Again with PyYAML's parser: its messages say what it found, and it notes where aliases are.
    _reset(doc)
    try:
        _parse(doc, source, _Loader)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = Where(doc.file, mark.line + 1, mark.column + 1) if mark else None
        doc.issues.append(Issue(where, "", f"YAML syntax: {err.problem or err.context}"))
    except yaml.reader.ReaderError as err:  # a control character, or a lone surrogate from the command line
        where = Where(doc.file, *_line_col(source, err.position))
        doc.issues.append(Issue(where, "", f"YAML: the character #x{err.character:04x} is not allowed"))
    except _TooLarge as err:
        doc.issues.append(Issue(err.where, err.path, str(err)))
    except RecursionError:  # block nesting hundreds of levels deep
        doc.issues.append(Issue(None, "", f"{doc.file}: nested too deeply for a spec"))
    return doc


class _NotUtf8(Exception):
    def __init__(self, err: UnicodeDecodeError, data: bytes) -> None:
        self.line, self.col = _line_col(data, err.start)
        super().__init__(f"the spec is not UTF-8 text (byte 0x{data[err.start]:02x}); save it as UTF-8")


def _read(path: str | Path) -> str:
    data = read_bytes(path, MAX_BYTES, "spec")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise _NotUtf8(err, data) from None


def _too_deep(source: str) -> int | None:
    """Where brackets first nest deeper than MAX_FLOW_DEPTH (quotes not parsed: the bound
    is far above any real spec, whose strings may hold a bracket or two)."""
    if source.count("[") + source.count("{") <= MAX_FLOW_DEPTH:
        return None
    depth = 0
    for match in _BRACKETS.finditer(source):
        depth += 1 if match.group() in "[{" else -1
        if depth > MAX_FLOW_DEPTH:
            return match.start()
    return None


def _line_col(text: str | bytes, position: int) -> tuple[int, int]:
    newline = "\n" if isinstance(text, str) else b"\n"
    before = text[:position]
    return before.count(newline) + 1, position - (before.rfind(newline) + 1) + 1


def _reset(doc: Document) -> None:
    doc.data = None
    for table in (doc.keys, doc.values, doc.issues):
        table.clear()


def _parse(doc: Document, source: str, loader_class: type) -> None:
    loader = loader_class(source)
    try:
        node = loader.get_single_node()
        if node is not None:
            _check_size(doc, node, getattr(loader, "aliases", None))
        doc.data = {} if node is None else doc.convert(node, "", loader)
    finally:
        loader.dispose()


def _children(node: yaml.Node) -> list[tuple[object, yaml.Node]]:
    """(index or key node, child) pairs: what the composer passed as ``index``."""
    if isinstance(node, yaml.MappingNode):
        return [pair for k, v in node.value for pair in ((None, k), (k, v))]
    return list(enumerate(node.value)) if isinstance(node, yaml.SequenceNode) else []


def _measure(root: yaml.Node) -> dict[int, tuple[int, int]]:
    """id(node) -> (values it expands to, its height), on the graph of nodes (an alias is
    a shared node), so nothing is expanded; without recursion (a spec may nest deeply)."""
    found: dict[int, tuple[int, int]] = {}
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        if done:
            below = [found[id(child)] for _, child in _children(node)]
            found[id(node)] = (1 + sum(n for n, _ in below), 1 + max((h for _, h in below), default=0))
        elif id(node) not in found:
            found[id(node)] = (1, 1)  # while being measured: an alias to it is a cycle (refused by convert)
            stack.append((node, True))
            stack.extend((child, False) for _, child in _children(node) if id(child) not in found)
    return found


def _check_size(doc: Document, root: yaml.Node, aliases: dict | None) -> None:
    """Refuse a document that nests deeper than MAX_DEPTH or that aliases expand past
    MAX_NODES values, before anything is expanded."""
    found = _measure(root)
    total, height = found[id(root)]
    if height > MAX_DEPTH:
        node, path = root, ""
        for _ in range(MAX_DEPTH):  # down the deepest branch
            index, node = max(_values(node), key=lambda pair: found[id(pair[1])][1])
            path = join(path, index if isinstance(index, int) else index.value)
        message = f"nested deeper than {MAX_DEPTH} levels (aliases included); a spec needs a handful"
        raise _TooLarge(message, doc._at(node), path)
    if total <= MAX_NODES:
        return
    if aliases is None:  # libyaml: again with PyYAML's composer, which notes where aliases are
        raise _TooLarge()
    biggest = max(_alias_uses(root, "", aliases), default=None, key=lambda use: found[id(use[2])][0])
    if biggest is None:
        raise _TooLarge(f"the spec holds {total:,} values; a spec may hold {MAX_NODES:,}", doc._at(root))
    mark, path, node = biggest
    message = (
        f"this alias expands to {found[id(node)][0]:,} values, the spec to {total:,} "
        f"(at most {MAX_NODES:,}: aliases of aliases?); write the values out"
    )
    raise _TooLarge(message, Where(doc.file, mark.line + 1, mark.column + 1), path)


def _values(node: yaml.Node) -> list[tuple[object, yaml.Node]]:
    return [(index, child) for index, child in _children(node) if index is not None]


def _alias_uses(node: yaml.Node, path: str, aliases: dict, seen: set | None = None):
    """(mark, key path, node) of every alias as written, walking the tree without them."""
    seen = set() if seen is None else seen
    seen.add(id(node))
    for index, child in _values(node):
        sub = join(path, index if isinstance(index, int) else index.value)
        mark = aliases.get((id(node), index if isinstance(index, int) else id(index)))
        if mark is not None:
            yield mark, sub, child
        elif id(child) not in seen:
            yield from _alias_uses(child, sub, aliases, seen)

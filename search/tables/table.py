"""A recorded table: every architecture of a finite space, trained once (or per seed), with
what a sweep would have measured. Replay sweeps and ``bench search`` read results from it
instead of training.

On disk a table is gzip-compressed JSON lines: a header, then one row per architecture.
The header holds the SHA-256 of the row lines, so a corrupted or edited file is refused
on load (``TableError``) instead of silently changing a benchmark::

    {"table": "digits", "format": 1, "sha256": "...", "meta": {...}}
    {"key": "...", "arch": "...", "costs": {"params": ..., "gmacs": ...}, "curve": [...], "train_s": ..., "seed": 0}
"""

from __future__ import annotations

import gzip
import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from runs import files
from search.results import pareto

FORMAT = 1
# Bounds on a table file, within which a FIFO, /dev/zero or a gzip bomb is refused (validate
# reads the table: a bomb's 128 MB add to its 240 MB). The committed digits table holds 136 KB,
# 572 KB unpacked (with its zero-cost proxies); NAS-Bench-201's 15,625 cells would unpack to about 4 MB.
TABLE_BYTES = 32 * files.MB
TABLE_ROWS_BYTES = 128 * files.MB


class TableError(ValueError):
    """A table file that cannot be trusted or read: the message says which and why."""


@dataclass(frozen=True)
class Row:
    """One architecture: its costs known before training (``params``, ``gmacs``, ...), the
    validation accuracy after each epoch (``curve``), and the seconds its training took."""

    key: str  # what identifies the architecture in its space (the sampler's choices, as JSON)
    arch: str  # the one-line layout, for people
    costs: Mapping[str, float]
    curve: tuple[float, ...]
    train_s: float
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "costs", MappingProxyType(dict(self.costs)))
        object.__setattr__(self, "curve", tuple(float(v) for v in self.curve))

    def metrics(self, epoch: int | None = None) -> dict[str, float]:
        """The costs and ``val_accuracy`` after ``epoch`` epochs (the last by default)."""
        done = len(self.curve) if epoch is None else epoch
        return {**self.costs, "val_accuracy": self.curve[done - 1]}

    def as_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "arch": self.arch,
            "costs": dict(self.costs),
            "curve": list(self.curve),
            "train_s": self.train_s,
            "seed": self.seed,
        }


@dataclass(frozen=True)
class Table:
    name: str
    rows: tuple[Row, ...]
    meta: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "meta", MappingProxyType(dict(self.meta)))

    def by_key(self, seed: int | None = 0) -> dict[str, Row]:
        """Rows by key, of one seed (``None``: every row, the last of each key winning)."""
        return {r.key: r for r in self.rows if seed is None or r.seed == seed}


def _check_row(number: int, data: Any) -> Row:
    where = f"row {number}"
    if not isinstance(data, Mapping):
        raise TableError(f"{where}: expected a mapping, got {type(data).__name__}")
    missing = {"key", "arch", "costs", "curve", "train_s"} - data.keys()
    if missing:
        raise TableError(f"{where}: missing {', '.join(sorted(missing))}")
    curve, costs = data["curve"], data["costs"]
    shaped = isinstance(curve, list) and curve and isinstance(costs, Mapping)
    numbers = [*curve, *costs.values(), data["train_s"]] if shaped else [None]
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in numbers):
        raise TableError(f"{where}: curve, costs and train_s must be finite numbers (a non-empty curve)")
    return Row(data["key"], data["arch"], costs, tuple(curve), float(data["train_s"]), int(data.get("seed", 0)))


def _body(rows: Sequence[Row]) -> bytes:
    return b"".join(json.dumps(r.as_dict(), sort_keys=True).encode() + b"\n" for r in rows)


def save(table: Table, path: Path) -> None:
    """Write ``table`` to ``path`` (gzip JSON lines), through a temporary file: a reader
    never sees half a table."""
    body = _body(table.rows)
    digest = hashlib.sha256(body).hexdigest()
    header = {"table": table.name, "format": FORMAT, "sha256": digest, "meta": dict(table.meta)}
    path = Path(path)
    partial = path.with_name(f".{path.name}.partial")
    # No name, mtime 0: the same table gives the same bytes (a committed file changes only with its rows).
    with open(partial, "wb") as raw, gzip.GzipFile(filename="", fileobj=raw, mode="wb", mtime=0) as out:
        out.write(json.dumps(header, sort_keys=True).encode() + b"\n" + body)
    partial.replace(path)


def load(path: Path) -> Table:
    """The table at ``path``; ``TableError`` when it is not a table, is corrupted (gzip's
    check fails) or was edited (its rows no longer hash to the header's SHA-256). Read as an
    untrusted file: a regular one of at most TABLE_BYTES, TABLE_ROWS_BYTES unpacked."""
    path = Path(path)
    try:
        raw = files.gunzip(files.read_bytes(path, TABLE_BYTES, "table"), TABLE_ROWS_BYTES, path, "table")
    except files.UntrustedFile as err:
        raise TableError(str(err)) from None
    first, _, body = raw.partition(b"\n")
    try:
        header = json.loads(first)
    except ValueError:
        raise TableError(f"{path}: the first line is not a table header") from None
    if not isinstance(header, Mapping) or header.get("format") != FORMAT:
        raise TableError(f"{path}: not a format-{FORMAT} archsweep table")
    if hashlib.sha256(body).hexdigest() != header.get("sha256"):
        raise TableError(f"{path}: the rows do not match the header's SHA-256; the table was changed after recording")
    rows = []
    for number, line in enumerate(body.splitlines(), start=1):
        try:
            rows.append(_check_row(number, json.loads(line)))
        except ValueError as err:
            raise TableError(f"{path}: {err}") from None
    return Table(str(header.get("table", path.stem)), tuple(rows), header.get("meta", {}))


def exact_front(table: Table, objectives, seed: int | None = 0) -> list[Row]:
    """The table's true Pareto front over ``objectives`` (final accuracy and costs)."""

    rows = list(table.by_key(seed).values())
    return [rows[i] for i in pareto.nondominated([r.metrics() for r in rows], objectives)]


def nadir(front: Sequence[Row], objectives, margin: float = 0.01) -> list[float]:
    """The reference point for a table's hypervolumes: the exact front's worst value in each
    objective, moved out by ``margin`` of the front's range so that the extreme members
    add volume too (``search.md``: a loose reference makes any search look good)."""
    values = [r.metrics() for r in front]
    point = []
    for o in objectives:
        column = [v[o.metric] for v in values]
        spread = (max(column) - min(column)) or abs(column[0]) or 1.0
        point.append(min(column) - margin * spread if o.direction == "max" else max(column) + margin * spread)
    return point


def seed_noise(table: Table) -> dict[str, float]:
    """How much the seed alone moves a row: over the architectures recorded with more than
    one seed, the absolute differences of their final accuracy from seed 0's (median, 90th
    percentile, largest), in accuracy points (fractions)."""
    first = table.by_key(0)
    gaps = sorted(abs(r.curve[-1] - first[r.key].curve[-1]) for r in table.rows if r.seed != 0 and r.key in first)
    if not gaps:
        return {"architectures": 0}
    return {
        "architectures": len(gaps),
        "median": gaps[len(gaps) // 2],
        "p90": gaps[min(len(gaps) - 1, int(0.9 * len(gaps)))],
        "max": gaps[-1],
    }

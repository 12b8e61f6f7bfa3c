"""NAS-Bench-201's 15,625 cells as a recorded ``Table``, read from the ``analog-nasbench``
package's data file (``analognasbench/data.anb``, a pickle), so that search efficiency can
be measured on a standard space without a download.

A cell is one op on each of six edges of a 4-node DAG (``EDGES``), from five ops (``OPS``).
Each row holds the cell's baseline (digital) CIFAR-10 accuracy as a fraction, the one point
of its ``curve``, and ``cost`` = 9 x #conv3x3 + #conv1x1, its conv weights per channel pair
(``search.md``: the cost behind the tight reference point, accuracy 0.80 and cost 55).

The pickle is read with a restricted unpickler that maps the package's two data classes to
local stand-ins: no code of the package runs (importing it needs ``pkg_resources``, which
this environment does not have), and any other global in the file is refused.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import io
import json
import math
import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from runs import files
from search.tables.table import Row, Table, TableError

PACKAGE = "analog-nasbench"
VERSION = "0.1.3"
# The SHA-256 of analognasbench/data.anb in the 0.1.3 wheel (its RECORD file says the same).
SHA256 = "85f3435b877aa2d36268d55ce07f6ff6d73643d17a840f1941745da5eb80db32"

# The package's key order: edge i->j feeds node j from node i (node 0 the input, 3 the output).
EDGES = ("0->1", "0->2", "0->3", "1->2", "1->3", "2->3")
# NB201's op names, listed at the package's op index. Checked against its data: the cells
# scoring 10% are exactly those that index 1 disconnects, and the best cell is
# (2, 2, 0, 2, 3, 2): conv3x3 everywhere but a skip on 0->3 and a conv1x1 on 1->3.
OPS = ("skip_connect", "none", "nor_conv_3x3", "nor_conv_1x1", "avg_pool_3x3")
COST = "9 * #nor_conv_3x3 + #nor_conv_1x1 (conv weights per input-output channel pair)"
CELLS = len(OPS) ** len(EDGES)  # 15,625


def cell_key(ops: Sequence[str]) -> str:
    """The row key of the cell with ``ops`` on ``EDGES`` (in that order): their JSON list."""
    ops = list(ops)
    if len(ops) != len(EDGES) or any(op not in OPS for op in ops):
        raise ValueError(f"a NAS-Bench-201 cell is {len(EDGES)} ops from {', '.join(OPS)}; got {ops}")
    return json.dumps(ops)


def arch_string(ops: Sequence[str]) -> str:
    """NB201's own string form: each node's inputs as ``op~source``, nodes joined by ``+``."""
    by_edge = dict(zip(EDGES, ops, strict=True))
    nodes = ["|".join(f"{by_edge[f'{i}->{j}']}~{i}" for i in range(j)) for j in (1, 2, 3)]
    return "+".join(f"|{node}|" for node in nodes)


def cost(ops: Sequence[str]) -> int:
    return 9 * list(ops).count("nor_conv_3x3") + list(ops).count("nor_conv_1x1")


# -- reading the pickle -------------------------------------------------------------------


class _Pickled:
    """A stand-in for one of the package's classes: holds the pickled attributes, runs nothing."""

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, dict) or not all(isinstance(k, str) for k in state):
            raise TableError(f"{type(self).__name__}: expected a dict of attributes, got {type(state).__name__}")
        self.__dict__.update(state)


class _Architecture(_Pickled):  # analognasbench.data.Architecture: architecture, baseline_accuracy, ...
    pass


class _DriftMeasurement(_Pickled):  # analognasbench.data.DriftMeasurement: value, uncertainty
    pass


# The only globals data.anb names. Dicts, tuples, ints and floats are pickle opcodes, not globals.
_ALLOWED = {
    ("analognasbench.data", "Architecture"): _Architecture,
    ("analognasbench.data", "DriftMeasurement"): _DriftMeasurement,
}


class _Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> type:
        try:
            return _ALLOWED[module, name]
        except KeyError:
            raise TableError(
                f"refused global {module}.{name}: an AnalogNAS-Bench file names only "
                f"{', '.join('.'.join(g) for g in _ALLOWED)}"
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        raise TableError(f"refused persistent id {pid!r}: an AnalogNAS-Bench file has none")


def data_path() -> Path:
    """Where the installed package keeps data.anb; found without importing the package."""
    spec = importlib.util.find_spec("analognasbench")
    if spec is None or not spec.submodule_search_locations:
        raise TableError(f"{PACKAGE} is not installed: `make setup` installs it (requirements.txt)")
    return Path(next(iter(spec.submodule_search_locations))) / "data.anb"


def _unpickle(path: Path, raw: bytes) -> Any:
    try:
        return _Unpickler(io.BytesIO(raw)).load()
    except TableError as err:
        raise TableError(f"{path}: {err}") from None
    except Exception as err:  # any failure of a malformed stream: EOFError, UnpicklingError, ...
        raise TableError(
            f"{path}: not a readable AnalogNAS-Bench pickle ({type(err).__name__}: {err}); "
            "the file is truncated or corrupted"
        ) from None


def _row(path: Path, key: Any, arch: Any) -> Row:
    fine = (
        isinstance(key, tuple)
        and len(key) == len(EDGES)
        and all(type(i) is int and 0 <= i < len(OPS) for i in key)
        and isinstance(arch, _Architecture)
        and getattr(arch, "architecture", None) == key
    )
    accuracy = getattr(arch, "baseline_accuracy", None)
    if not fine or type(accuracy) is not float or not (math.isfinite(accuracy) and 0 <= accuracy <= 100):
        raise TableError(f"{path}: entry {key!r} is not a cell with a baseline accuracy in percent")
    ops = [OPS[i] for i in key]
    # A fraction, like archsweep's val_accuracy; rounded to drop the division's float noise.
    return Row(cell_key(ops), arch_string(ops), {"cost": cost(ops)}, (round(accuracy / 100, 8),), 0.0, 0)


def load_nb201(path: Path | None = None) -> Table:
    """All 15,625 NB201 cells with their baseline CIFAR-10 accuracy (a fraction) and conv
    cost. ``path`` defaults to the installed package's data.anb, which must be the 0.1.3
    file; ``TableError`` for a missing, corrupted, tampered or wrongly shaped file."""
    installed = path is None
    path = data_path() if installed else Path(path)
    try:
        raw = files.read_bytes(path, 64 * files.MB, "NB201 table")  # data.anb is 5.6 MB
    except files.UntrustedFile as err:
        raise TableError(str(err)) from None
    digest = hashlib.sha256(raw).hexdigest()
    if installed and digest != SHA256:
        raise TableError(f"{path}: SHA-256 {digest} is not that of {PACKAGE} {VERSION}'s data.anb ({SHA256})")
    data = _unpickle(path, raw)
    if not isinstance(data, dict) or len(data) != CELLS:
        size = len(data) if isinstance(data, dict) else type(data).__name__
        raise TableError(f"{path}: expected a dict of the {CELLS} NB201 cells, got {size}")
    # 15,625 distinct valid keys are all the cells; sorted by op indices, (0, 0, 0, 0, 0, 0) first.
    rows = [row for _, row in sorted((key, _row(path, key, arch)) for key, arch in data.items())]
    meta = {
        "source": f"{PACKAGE} {_version() if installed else '(a file given by path)'}: analognasbench/data.anb",
        "path": str(path),
        "sha256": digest,
        "accuracy": "baseline (digital) CIFAR-10 accuracy as a fraction; one point per curve, no times",
        "cost": COST,
        "edges": list(EDGES),
        "ops": list(OPS),
    }
    return Table("nb201", tuple(rows), meta)


def _version() -> str:
    try:
        return importlib.metadata.version(PACKAGE)  # reads the dist-info, runs no package code
    except importlib.metadata.PackageNotFoundError:
        return "unknown version"


# The cell's four routes from input (node 0) to output (node 3), as edge indices in EDGES.
PATHS = ((2,), (0, 4), (1, 5), (0, 3, 5))


def path_features(ops: Sequence[str]) -> list[float]:
    """A cell as its routes from input to output see it (GRAF's kind of features, ICML 2024):
    per route, whether it carries a signal (no 'none' on it) and its ops if it does; how
    many routes carry one, the longest chain of convolutions on one, and the op counts of
    the edges that lie on a live route (an op on a dead edge computes nothing that counts)."""
    out: list[float] = []
    live = [all(ops[e] != "none" for e in path) for path in PATHS]
    for path, alive in zip(PATHS, live, strict=True):
        out.append(float(alive))
        out += [float(alive) * sum(ops[e] == op for e in path) for op in OPS if op != "none"]
    used = {e for path, alive in zip(PATHS, live, strict=True) if alive for e in path}
    convs = [sum(ops[e] in ("nor_conv_3x3", "nor_conv_1x1") for e in p) for p, a in zip(PATHS, live, strict=True) if a]
    out += [float(sum(live)), float(max(convs, default=0))]
    out += [float(sum(ops[e] == op for e in used)) for op in OPS if op != "none"]
    return out

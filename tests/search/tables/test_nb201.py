"""NAS-Bench-201 from the analog-nasbench package: the cells, the op mapping, the exact
front at search.md's reference (accuracy 0.80, cost 55), and the restricted unpickler."""

import json
import os
import pickle
import re
import statistics
import sys

import numpy as np
import pytest

from runs.metrics import Objective
from search.results.pareto import hypervolume_at
from search.tables.nb201 import CELLS, EDGES, SHA256, arch_string, cell_key, data_path, load_nb201
from search.tables.table import Table, TableError, exact_front

OBJECTIVES = (Objective("val_accuracy", "max"), Objective("cost", "min"))
REFERENCE = (0.80, 55.0)
BEST = ["nor_conv_3x3", "nor_conv_3x3", "skip_connect", "nor_conv_3x3", "nor_conv_1x1", "nor_conv_3x3"]


@pytest.fixture(scope="module")
def table():
    return load_nb201()


@pytest.fixture(scope="module")
def front(table):
    # A row that is not the most accurate at its cost is dominated by one that is: keeping
    # only those (~40 rows) gives the same front, without a 15,625-row O(n^2) scan (10 s).
    best = {}
    for r in table.rows:
        best[r.costs["cost"]] = max(best.get(r.costs["cost"], 0.0), r.curve[-1])
    candidates = [r for r in table.rows if r.curve[-1] == best[r.costs["cost"]]]
    return exact_front(Table("candidates", tuple(candidates)), OBJECTIVES)


def test_every_cell_once_and_no_package_code_ran(table):
    assert len(table.rows) == CELLS == 15_625
    assert len({r.key for r in table.rows}) == CELLS
    assert {r.seed for r in table.rows} == {0} and {r.train_s for r in table.rows} == {0.0}
    assert table.meta["sha256"] == SHA256 and "analog-nasbench 0.1.3" in table.meta["source"]
    assert "analognasbench" not in sys.modules  # read as data: the package's code never ran


def test_the_best_cell_and_the_accuracy_distribution(table):
    best = max(table.rows, key=lambda r: r.curve[-1])
    assert best.key == cell_key(BEST)
    assert best.arch == (
        "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_1x1~1|nor_conv_3x3~2|"
    )
    assert best.curve == (0.940664,)  # the package's baseline_accuracy 94.0664 (%), as a fraction
    assert best.metrics() == {"cost": 37, "val_accuracy": 0.940664}
    assert statistics.median(r.curve[-1] for r in table.rows) == pytest.approx(0.904064)


def disconnected(ops):
    """Whether 'none' edges cut the output (node 3) off from the input (node 0)."""
    live = {tuple(map(int, e.split("->"))) for e, op in zip(EDGES, ops, strict=True) if op != "none"}
    reach = {0}
    for node in (1, 2, 3):
        if any((src, node) in live for src in reach):
            reach.add(node)
    return 3 not in reach


def test_the_ten_percent_cells_are_exactly_those_none_disconnects(table):
    # Checks OPS[1] == "none" and the edge order together: another mapping or order gives
    # another set (only reversing the whole graph gives the same one).
    chance = {r.key for r in table.rows if r.curve[-1] == 0.10}
    assert len(chance) == 341
    assert chance == {r.key for r in table.rows if disconnected(json.loads(r.key))}


def test_conv3x3_beats_conv1x1_and_skip_sits_on_the_residual_edge(table):
    rows = table.by_key()
    assert rows[cell_key(["nor_conv_3x3"] * 6)].curve[-1] > rows[cell_key(["nor_conv_1x1"] * 6)].curve[-1]
    top = sorted(table.rows, key=lambda r: -r.curve[-1])[:200]
    on_residual = [json.loads(r.key)[EDGES.index("0->3")] for r in top]
    assert max(set(on_residual), key=on_residual.count) == "skip_connect"  # ResNet-like, as in NB201


def test_cell_key_and_arch_string():
    assert json.loads(cell_key(BEST)) == BEST
    assert cell_key(["none"] * 6) == '["none", "none", "none", "none", "none", "none"]'
    assert arch_string(["none"] * 6) == "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"
    for bad in (BEST[:5], [*BEST[:5], "conv_3x3"]):
        with pytest.raises(ValueError, match="6 ops"):
            cell_key(bad)


def test_the_exact_front_at_the_reference(table, front):
    assert len(front) == 17  # search.md
    inside = [r for r in front if r.curve[-1] > REFERENCE[0] and r.costs["cost"] < REFERENCE[1]]
    assert len(inside) == 17
    hv = hypervolume_at([r.metrics() for r in front], OBJECTIVES, REFERENCE)
    # By hand: a staircase, each member's accuracy above 0.80 times the cost up to the next one.
    steps = sorted((r.costs["cost"], r.curve[-1]) for r in front)
    by_hand = sum((a - 0.80) * (nxt - c) for (c, a), (nxt, _) in zip(steps, [*steps[1:], (55.0, None)], strict=True))
    assert hv == pytest.approx(by_hand) == pytest.approx(7.305988)
    for i in range(len(front)):  # every member adds volume
        rest = [r.metrics() for j, r in enumerate(front) if j != i]
        assert hypervolume_at(rest, OBJECTIVES, REFERENCE) < hv - 1e-9


def test_random_search_falls_short_after_2000_cells(table, front):
    # search.md: random search needs a median of ~12,000 evaluations to reach 99.9%.
    exact = hypervolume_at([r.metrics() for r in front], OBJECTIVES, REFERENCE)
    drawn = np.random.default_rng(0).integers(0, len(table.rows), size=2000)
    ratio = hypervolume_at([table.rows[i].metrics() for i in drawn], OBJECTIVES, REFERENCE) / exact
    assert 0.9 < ratio < 0.999


# -- a file that is not the package's -----------------------------------------------------


class _Touch:
    """Unpickling this would create ``path``: the side effect that must never happen."""

    def __init__(self, how, path):
        self.how, self.path = how, path

    def __reduce__(self):
        if self.how == "os.system":
            return os.system, (f"touch {self.path}",)
        return exec, (f"open({str(self.path)!r}, 'w').close()",)


@pytest.mark.parametrize("how", ["os.system", "builtins.exec"])
def test_a_forbidden_global_is_refused_and_never_runs(tmp_path, how):
    marker = tmp_path / "ran"
    bad = tmp_path / "data.anb"
    bad.write_bytes(pickle.dumps({(0, 0, 0, 0, 0, 0): _Touch(how, marker)}))
    # pickle names os.system by its defining module (posix on Linux).
    name = f"{os.system.__module__}.system" if how == "os.system" else how
    with pytest.raises(TableError, match=re.escape(f"refused global {name}")):
        load_nb201(bad)
    assert not marker.exists()


def test_another_class_of_the_package_is_refused(tmp_path):
    bad = tmp_path / "data.anb"
    # PROTO 2, GLOBAL 'analognasbench.data AnalogNASBench', EMPTY_TUPLE, NEWOBJ, STOP
    bad.write_bytes(b"\x80\x02canalognasbench.data\nAnalogNASBench\n)\x81.")
    with pytest.raises(TableError, match=r"refused global analognasbench\.data\.AnalogNASBench"):
        load_nb201(bad)


def test_a_truncated_or_garbled_file_is_refused(tmp_path):
    real = data_path().read_bytes()
    for name, data in {"truncated": real[: len(real) // 2], "garbled": b"not a pickle at all"}.items():
        bad = tmp_path / f"{name}.anb"
        bad.write_bytes(data)
        with pytest.raises(TableError, match="truncated or corrupted"):
            load_nb201(bad)
    with pytest.raises(TableError, match="no such file"):
        load_nb201(tmp_path / "missing.anb")


def test_a_pickle_of_the_wrong_shape_is_refused(tmp_path):
    cells = [(0, 0, 0, 0, 0, i) for i in range(5)] + [(9, 9, 9, 9, 9, i) for i in range(CELLS - 5)]
    for payload, message in [
        ([1, 2, 3], "expected a dict of the 15625 NB201 cells, got list"),
        ({(9,): 1.0}, "expected a dict of the 15625 NB201 cells, got 1"),
        (dict.fromkeys(cells, 94.0), r"entry \(0, 0, 0, 0, 0, 0\) is not a cell"),
    ]:
        bad = tmp_path / "data.anb"
        bad.write_bytes(pickle.dumps(payload))
        with pytest.raises(TableError, match=message):
            load_nb201(bad)

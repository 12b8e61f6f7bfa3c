"""The table format: what is saved loads back; a corrupted or edited file is refused."""

import gzip
import json
from pathlib import Path

import pytest

from runs.metrics import Objective
from search.results import pareto
from search.tables.table import Row, Table, TableError, exact_front, load, nadir, save

OBJECTIVES = (Objective("val_accuracy", "max"), Objective("gmacs", "min"))


def _table() -> Table:
    rows = (
        Row("a", "small", {"params": 10, "gmacs": 0.1}, (0.5, 0.7), 1.0),
        Row("b", "large", {"params": 90, "gmacs": 0.9}, (0.6, 0.9), 3.0),
        Row("c", "mid, dominated", {"params": 50, "gmacs": 0.5}, (0.4, 0.6), 2.0),
        Row("d", "mid", {"params": 40, "gmacs": 0.4}, (0.7, 0.8), 2.0),
        Row("a", "small, second seed", {"params": 10, "gmacs": 0.1}, (0.5, 0.72), 1.1, seed=1),
    )
    return Table("toy", rows, {"epochs": 2})


def test_a_saved_table_loads_back_equal(tmp_path):
    save(_table(), tmp_path / "t.jsonl.gz")
    assert load(tmp_path / "t.jsonl.gz") == _table()
    save(_table(), tmp_path / "again.jsonl.gz")  # the same rows give the same bytes (committed files)
    assert (tmp_path / "t.jsonl.gz").read_bytes() == (tmp_path / "again.jsonl.gz").read_bytes()


def test_an_edited_row_is_refused(tmp_path):
    path = tmp_path / "t.jsonl.gz"
    save(_table(), path)
    lines = gzip.decompress(path.read_bytes()).decode().splitlines()
    row = json.loads(lines[2])
    row["curve"][-1] = 0.99  # a better result than was recorded
    lines[2] = json.dumps(row, sort_keys=True)
    path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    with pytest.raises(TableError, match="do not match the header's SHA-256; the table was changed"):
        load(path)


def test_a_corrupted_or_foreign_file_is_refused(tmp_path):
    path = tmp_path / "t.jsonl.gz"
    save(_table(), path)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(TableError, match="not a readable gzip file"):  # (tmp_path's name holds "corrupted")
        load(path)
    path.write_bytes(gzip.compress(b'{"hello": 1}\n'))
    with pytest.raises(TableError, match="not a format-1 archsweep table"):
        load(path)
    with pytest.raises(TableError, match=r"missing\.jsonl\.gz: no such file"):
        load(tmp_path / "missing.jsonl.gz")


def test_a_row_with_a_non_finite_value_is_refused(tmp_path):
    bad = Table("bad", (Row("a", "x", {"gmacs": 0.1}, (0.5,), 1.0),))
    path = tmp_path / "t.jsonl.gz"
    save(bad, path)
    text = gzip.decompress(path.read_bytes()).decode().replace("0.5]", "NaN]")
    header, body = text.split("\n", 1)
    import hashlib

    meta = json.loads(header)
    meta["sha256"] = hashlib.sha256(body.encode()).hexdigest()  # a consistent file, a bad value
    path.write_bytes(gzip.compress((json.dumps(meta) + "\n" + body).encode()))
    with pytest.raises(TableError, match="row 1: curve, costs and train_s must be finite numbers"):
        load(path)


def test_the_exact_front_and_its_reference_point():
    table = _table()
    front = exact_front(table, OBJECTIVES)
    assert sorted(r.key for r in front) == ["a", "b", "d"]  # c is dominated by d; seed 1 apart
    reference = nadir(front, OBJECTIVES)
    assert reference[0] < 0.7 and reference[1] > 0.9  # just beyond the worst front member in each
    every = pareto.hypervolume_at([r.metrics() for r in front], OBJECTIVES, reference)
    for left_out in front:  # every front member adds volume at this reference
        rest = [r.metrics() for r in front if r is not left_out]
        assert pareto.hypervolume_at(rest, OBJECTIVES, reference) < every
    # a dominated row adds nothing
    with_c = [r.metrics() for r in table.by_key().values()]
    assert pareto.hypervolume_at(with_c, OBJECTIVES, reference) == pytest.approx(every)


def test_seed_noise_compares_each_repeat_with_its_seed_0_row():
    from search.tables.table import seed_noise

    noise = seed_noise(_table())
    assert noise["architectures"] == 1 and noise["median"] == pytest.approx(0.02) == noise["max"]
    assert seed_noise(Table("one seed", _table().rows[:4])) == {"architectures": 0}


@pytest.mark.parametrize("kind", ["fifo", "/dev/zero", "link to /dev/zero", "folder", "too large", "gzip bomb"])
def test_a_table_that_is_not_a_small_regular_gzip_file_is_refused_unread(tmp_path, kind, monkeypatch):
    import os
    import time
    import zlib

    from search.tables import table

    path = tmp_path / "t.jsonl.gz"
    monkeypatch.setattr(table, "TABLE_BYTES", 1 << 20)
    monkeypatch.setattr(table, "TABLE_ROWS_BYTES", 4 << 20)
    if kind == "fifo":
        os.mkfifo(path)  # never written: a read would wait forever
    elif kind == "folder":
        path.mkdir()
    elif kind == "too large":
        path.write_bytes(bytes(2 << 20))
    elif kind == "gzip bomb":  # 64 MB of zeros in 64 KB
        pack = zlib.compressobj(9, zlib.DEFLATED, 31)
        path.write_bytes(b"".join([pack.compress(bytes(1 << 20)) for _ in range(64)] + [pack.flush()]))
    else:
        path = Path("/dev/zero") if kind == "/dev/zero" else path
        if kind == "link to /dev/zero":
            path.symlink_to("/dev/zero")
    expected = {
        "fifo": "is a FIFO (named pipe), not a table",
        "folder": "is a folder, not a table",
        "too large": "holds 2.0 MB; a table is at most 1.0 MB",
        "gzip bomb": "decompresses to more than 4.0 MB; a table is at most 4.0 MB",
    }
    started = time.perf_counter()
    with pytest.raises(TableError) as err:
        load(path)
    assert time.perf_counter() - started < 5
    assert str(err.value) == f"{path} {expected.get(kind, 'is a character device, not a table')}"

"""The embedded MLflow store: made from the template or by MLflow's migrations, moved, and
surviving its creator being killed."""

import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import pytest

from runs.store import check_intact
from runs.tracking import Tracker, embedded_store

ROOT = Path(__file__).resolve().parents[2]
BUILD = "import sys, pathlib, runs.tracking; runs.tracking.embedded_store(pathlib.Path(sys.argv[1]))"


@pytest.mark.slow
def test_a_store_whose_creator_was_killed_mid_schema_opens_and_takes_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # no template: the schema is built
    store = tmp_path / "store"
    proc = subprocess.Popen([sys.executable, "-c", BUILD, str(store)], cwd=ROOT)
    deadline = time.time() + 60
    while not (store.exists() and any(store.iterdir())):  # the schema is being built (~4 s of migrations)
        assert proc.poll() is None and time.time() < deadline
        time.sleep(0.05)
    time.sleep(1.0)
    proc.send_signal(signal.SIGKILL)
    proc.wait()

    tracker = Tracker(embedded_store(store), "after-a-kill", artifacts=store / "artifacts")
    run_id = tracker.client.create_run(tracker.experiment_id).info.run_id
    assert tracker.client.get_run(run_id).info.status == "RUNNING"
    assert sorted(p.name for p in store.iterdir()) == [".archsweep.lock", "mlflow.db"]  # the side file is gone


@pytest.mark.slow
def test_a_moved_store_is_rewritten_to_where_it_is_and_a_read_only_one_is_read_through_a_copy(tmp_path, monkeypatch):
    from runs import store as stores

    built = tmp_path / "built"
    tracker = Tracker(embedded_store(built), "moved", artifacts=built / "artifacts")
    client = tracker.client
    run = client.create_run(tracker.experiment_id).info.run_id
    tracker.log_text(run, "hello", "note.txt")
    model = client.create_logged_model(tracker.experiment_id, source_run_id=run)
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "weights.txt").write_text("w")
    client.log_model_artifacts(model.model_id, str(tmp_path / "model"))
    client.create_registered_model("moved")
    client.create_model_version("moved", model.artifact_location, run_id=run, model_id=model.model_id)
    store = built.rename(tmp_path / "here")
    here, db = stores.artifacts_uri(store), store / "mlflow.db"
    recorded = _locations(db)
    assert {table for table, _, _ in recorded} == {table for table, _ in stores.LOCATIONS}  # each is exercised

    monkeypatch.setattr(stores, "writable", lambda folder: False)
    with stores.reading(store) as copy:
        assert copy != db and all(value.startswith(here) for _, _, value in _locations(copy))
    assert _locations(db) == recorded  # a store that cannot be written is not
    monkeypatch.undo()

    moved = Tracker(embedded_store(store), "moved")
    assert all(value.startswith(here) for _, _, value in _locations(db))
    assert Path(moved.client.download_artifacts(run, "note.txt", str(tmp_path))).read_text() == "hello"
    moved.log_text(run, "again", "later.txt")
    assert (store / "artifacts" / run / "artifacts" / "later.txt").exists() and not built.exists()


def _locations(db: Path) -> list[tuple[str, str, str]]:
    import sqlite3

    from runs.store import LOCATIONS

    with sqlite3.connect(db) as con:
        return [(t, c, v) for t, c in LOCATIONS for (v,) in con.execute(f"SELECT {c} FROM {t}") if v]


KILLED_MID_WRITE = """
import os, sqlite3, sys
con = sqlite3.connect(sys.argv[1], isolation_level=None)
con.execute("PRAGMA cache_size=1")  # pages spill to the file: the journal is hot
con.execute("BEGIN IMMEDIATE")
for step in range(5000):
    con.execute("INSERT INTO metrics (key, value, timestamp, step, run_uuid) VALUES ('x', 1, 0, ?, 'r')", (step,))
print("mid-write", flush=True)
sys.stdin.read()
"""


@pytest.mark.slow
def test_a_store_whose_writer_was_killed_mid_transaction_is_rolled_back_and_opens(tmp_path):
    """A driver SIGKILLed inside a write to the store leaves a hot journal: the next run
    opens the store (it used to stop with "attempt to write a readonly database", exit 4)
    and finds what was committed, not the half-written transaction."""
    store = tmp_path / "store"
    embedded_store(store)
    db = store / "mlflow.db"
    writer = subprocess.Popen(
        [sys.executable, "-c", KILLED_MID_WRITE, str(db)], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    assert writer.stdout.readline() == b"mid-write\n"
    writer.kill()
    writer.wait()
    assert (store / "mlflow.db-journal").exists()
    check_intact(db)  # it used to raise here
    tracker = Tracker(embedded_store(store), "after-a-kill", artifacts=store / "artifacts")
    run_id = tracker.client.create_run(tracker.experiment_id).info.run_id
    assert tracker.client.get_run(run_id).info.status == "RUNNING"
    with closing(sqlite3.connect(db)) as con:
        assert con.execute("SELECT count(*) FROM metrics").fetchone() == (0,)  # the killed transaction: gone


def _schema(db: Path) -> dict[str, list[str]]:
    """Each table's and index's definition, its lines sorted: MLflow's migrations write a
    table's constraints in an order that differs from one build to the next."""
    with closing(sqlite3.connect(db)) as con:
        rows = con.execute("SELECT name, sql FROM sqlite_master WHERE name != 'marker'").fetchall()
    return {name: sorted(line.strip(" ,") for line in (sql or "").splitlines()) for name, sql in rows}


def _tables(db: Path) -> set[str]:
    with closing(sqlite3.connect(db)) as con:
        return {name for (name,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def _bad_template(template: Path, sound: Path, how: str) -> None:
    """``template``: ``sound`` with a table ``marker`` (which a store copied from it would
    carry), made unusable ``how``."""
    target = template.with_name("target.db") if how == "a link" else template
    target.write_bytes(sound.read_bytes())
    with closing(sqlite3.connect(target)) as con, con:
        con.execute("CREATE TABLE marker (x)")
        if how == "too large":
            con.execute("INSERT INTO marker VALUES (zeroblob(17 * 1048576))")
        if how == "holding a run":
            con.execute("INSERT INTO runs (run_uuid, experiment_id, lifecycle_stage) VALUES ('r', 0, 'active')")
    if how == "a link":
        template.symlink_to(target)
    if how == "damaged":
        data = bytearray(target.read_bytes())
        data[4096:8192] = b"x" * 4096  # a page of the schema's tables overwritten
        target.write_bytes(bytes(data))


@pytest.mark.parametrize("how", [None, "a link", "too large", "holding a run", "damaged"])
def test_a_new_store_is_the_template_rewritten_for_its_place_and_a_bad_template_is_not_used(tmp_path, monkeypatch, how):
    """The first store built by MLflow's migrations leaves the template; the next is a copy
    of it with MLflow's schema, its default experiment's artifacts in its own folder, and
    runs that log. A template that is a link, too large, holding a run or damaged is not
    read: the store is built as before."""
    import importlib.metadata

    from runs import store as stores

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    template = stores.template_path(importlib.metadata.version("mlflow"))
    first = tmp_path / "first"
    embedded_store(first)
    assert template.is_file() and _schema(template) == _schema(first / "mlflow.db")
    template.unlink()
    _bad_template(template, first / "mlflow.db", how or "")

    store = tmp_path / "second"
    tracker = Tracker(embedded_store(store), "second", artifacts=store / "artifacts")
    db = store / "mlflow.db"
    assert ("marker" in _tables(db)) == (how is None)  # the template was copied only when sound
    assert _schema(db) == _schema(first / "mlflow.db")
    default = tracker.client.get_experiment("0")
    assert default.artifact_location == f"{stores.artifacts_uri(store)}/0"
    assert abs(default.creation_time / 1000 - time.time()) < 60
    run_id = tracker.client.create_run(tracker.experiment_id).info.run_id
    tracker.log_text(run_id, "hello", "note.txt")
    assert (store / "artifacts" / run_id / "artifacts" / "note.txt").read_text() == "hello"
    assert len(tracker.client.search_runs(["0", tracker.experiment_id])) == 1
    assert sorted(p.name for p in store.iterdir()) == [".archsweep.lock", "artifacts", "mlflow.db"]

"""The sweep's store as a folder: never deleted outside itself, shared by sweeps started at
once, refused with what to do when half of it is gone or the spec changed, movable,
readable when read-only, and served by ``ui`` that stops with its server."""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil
import pytest
from mlflow.exceptions import MlflowException
from optuna.trial import TrialState

import main
from runs.journal import read_study
from runs.server import free_port, port_taken
from runs.store import LOCATIONS, StoreError
from runs.tracking import Tracker
from search.sweep.preflight import own
from search.sweep.study import state_of
from tests.e2e.conftest import inject, runs_of, wait_for_health, write_spec
from tests.e2e.test_sweep import study

ROOT = Path(__file__).resolve().parents[2]
QUICK = {
    "train": {"epochs": 1, "batch_size": 64, "lr": 0.003},
    "search": {"sampler": "random", "trials": 2, "seed": 0},
}


def tree(folder: Path) -> dict[str, int]:
    """Every file under ``folder`` and its size: what a refusal must leave as it was."""
    return {str(p.relative_to(folder)): p.stat().st_size for p in sorted(folder.rglob("*")) if p.is_file()}


def locations(db: Path) -> list[str]:
    """Every artifact location MLflow recorded in ``db``."""
    with sqlite3.connect(db) as con:
        return [v for table, column in LOCATIONS for (v,) in con.execute(f"SELECT {column} FROM {table}") if v]


def spec_yaml(folder: Path) -> Path:
    """The spec.yaml logged on the sweep's parent run, in the store's artifacts."""
    with sqlite3.connect(folder / "store" / "mlflow.db") as con:
        (run_id,) = con.execute("SELECT run_uuid FROM runs WHERE name = 'tiny'").fetchone()
    return folder / "store" / "artifacts" / run_id / "artifacts" / "spec.yaml"


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A finished sweep (2 trials, both models logged) whose store was moved after it ran:
    its records name a folder that is gone. Tests copy ``store/`` from here."""
    folder = tmp_path_factory.mktemp("finished")
    spec = write_spec(folder, **QUICK, tracking={"dir": "built", "models": "all"})
    before = os.getcwd()
    os.chdir(folder)
    try:
        assert main.main(["run", str(spec)]) == 0
    finally:
        os.chdir(before)
    (folder / "built").rename(folder / "store")
    return folder


@pytest.fixture
def copied(finished, workdir) -> Path:
    """The finished store copied into this test's folder, with the spec it ran."""
    shutil.copytree(finished / "store", workdir / "store")
    write_spec(workdir, **QUICK)
    return workdir


# -- nothing outside the store is deleted ---------------------------------------------------


@pytest.mark.parametrize("link", ["checkpoints", "checkpoints/tiny", "weights"])
def test_a_link_out_of_the_store_is_refused_and_what_it_leads_to_survives(workdir, link, capsys):
    victim = workdir / "victim"
    (victim / "tiny").mkdir(parents=True)
    (victim / "tiny" / "precious.txt").write_text("mine")
    (workdir / "store" / link).parent.mkdir(parents=True)
    target = victim if link.count("/") == 0 else victim / "tiny"
    (workdir / "store" / link).symlink_to(os.path.relpath(target, (workdir / "store" / link).parent))
    code = main.main(["run", str(write_spec(workdir, **QUICK))])
    assert (victim / "tiny" / "precious.txt").read_text() == "mine"
    assert code == 2 and "a sweep deletes only its own" in capsys.readouterr().err
    assert not (workdir / "store" / "mlflow.db").exists()  # refused before anything was written


def test_a_path_with_dots_is_not_the_store_s_own(tmp_path):
    (tmp_path / "store").mkdir()
    with pytest.raises(StoreError):
        own(tmp_path / "store", "checkpoints", "../../victim")
    assert own(tmp_path / "store", "checkpoints", "tiny") == (tmp_path / "store").resolve() / "checkpoints" / "tiny"


# -- two sweeps at once; a store that fails --------------------------------------------------


def test_two_sweeps_started_at_once_on_a_fresh_store_both_complete(workdir):
    one = {**QUICK, "search": {"sampler": "random", "trials": 1, "seed": 0}}
    specs = [write_spec(workdir, **one, name=name) for name in ("alpha", "beta")]
    procs = [
        subprocess.Popen(
            [sys.executable, str(ROOT / "main.py"), "run", str(spec)],
            cwd=workdir,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for spec in specs
    ]
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    for name in ("alpha", "beta"):
        _, parents, children = runs_of(workdir, name)
        assert [p.info.status for p in parents] == ["FINISHED"]
        assert [c.data.tags["archsweep.trial"] for c in children] == ["0"]
        assert {c.data.tags["archsweep.sweep"] for c in children} == {name}
        assert {c.info.status for c in children} == {"FINISHED"}


def test_a_failing_tracking_store_stops_the_sweep_and_the_trial_is_not_counted(workdir, monkeypatch, capsys):
    spec = write_spec(workdir, **{**QUICK, "search": {"sampler": "random", "trials": 1, "seed": 0}})
    real = Tracker.trial_run

    def broken(self, *args, **kwargs):
        monkeypatch.setattr(Tracker, "trial_run", real)  # once
        raise MlflowException("(sqlite3.OperationalError) database is locked")

    monkeypatch.setattr(Tracker, "trial_run", broken)
    assert main.main(["run", str(spec)]) == 4
    assert "database is locked" in capsys.readouterr().err
    trials = study(workdir).trials
    assert [(t.state, "fail_reason" in t.user_attrs) for t in trials] == [(TrialState.FAIL, False)]
    assert [p.info.status for p in runs_of(workdir)[1]] == ["KILLED"]
    assert main.main(["run", str(spec)]) == 0  # the uncounted trial is run again
    assert [t.state for t in study(workdir).trials] == [TrialState.FAIL, TrialState.COMPLETE]
    _, parents, children = runs_of(workdir)
    assert [p.info.status for p in parents] == ["FINISHED"] and [c.info.status for c in children] == ["FINISHED"]


# -- half a store ---------------------------------------------------------------------------


def test_a_sweep_whose_mlflow_db_is_gone_is_refused_and_nothing_is_created(copied, capsys):
    (copied / "store" / "mlflow.db").unlink()
    before = tree(copied)
    assert main.main(["run", str(copied / "tiny.yaml")]) == 2
    err = capsys.readouterr().err
    assert "store/optuna/tiny.journal" in err and "restore mlflow.db" in err and "new name" in err
    assert len(err.strip().splitlines()) == 1
    assert tree(copied) == before


def test_a_sweep_whose_journal_is_gone_is_refused(copied, capsys):
    (copied / "store" / "optuna" / "tiny.journal").unlink()
    assert main.main(["run", str(copied / "tiny.yaml")]) == 2
    err = capsys.readouterr().err
    assert "store/optuna/tiny.journal is gone" in err and "restore the journal" in err and "new name" in err
    assert not (copied / "store" / "optuna" / "tiny.journal").exists()
    _, parents, children = runs_of(copied)
    assert [p.info.status for p in parents] == ["FINISHED"] and len(children) == 2


# -- a changed spec -------------------------------------------------------------------------


def test_a_change_that_makes_results_incomparable_is_refused(copied, capsys):
    """Other training settings (amendments of the space go on: tests/e2e/test_amend.py)."""
    journal = (copied / "store" / "optuna" / "tiny.journal").read_bytes()
    saved = spec_yaml(copied).read_text()
    changed = ["-o", "train.epochs=2", "-o", "model.stages[0].width=8", "-o", "search.trials=5"]
    assert main.main(["run", str(copied / "tiny.yaml"), *changed]) == 2
    err = capsys.readouterr().err
    assert "  train.epochs: 1 -> 2 (a fixed training setting)\n" in err and "incomparable" in err
    assert "search.trials" not in err  # may change: more trials for the same sweep
    assert "new name" in err and "-o name=NEW" in err and "search.warm_start: {from: tiny}" in err
    assert (copied / "store" / "optuna" / "tiny.journal").read_bytes() == journal
    assert spec_yaml(copied).read_text() == saved
    assert [p.info.status for p in runs_of(copied)[1]] == ["FINISHED"]


def test_what_may_change_between_runs_of_a_sweep_is_accepted(copied):
    same = ["-o", "description=again", "-o", "backend.max_concurrent=2", "-o", "tracking.models=none"]
    assert main.main(["run", str(copied / "tiny.yaml"), *same]) == 0
    _, parents, children = runs_of(copied)
    assert len(children) == 2  # nothing ran again
    assert "again" in spec_yaml(copied).read_text()  # the spec as run this time, with its hash
    from search.spec import load

    assert parents[0].data.tags["archsweep.spec_sha"] == load(copied / "tiny.yaml", same[1::2]).sha


def test_the_ray_backend_refuses_a_changed_spec_before_starting_anything(copied):
    from search.spec import load
    from search.sweep.ray.driver import RaySweep

    spec = load(copied / "tiny.yaml", ["backend.kind=ray", "train.epochs=3"])
    sweep = RaySweep(spec)
    with pytest.raises(StoreError, match=r"train.epochs: 1 -> 3"):
        sweep.open()
    sweep.close()
    assert not (copied / "store" / "ray").exists() and not (copied / "store" / "mlflow-server.log").exists()


# -- a moved store --------------------------------------------------------------------------


def test_a_moved_store_exports_and_resumes_where_it_is_now(finished, copied):
    import mlflow.pytorch

    _, _, children = runs_of(copied)
    assert main.main(["export", children[0].info.run_id, "--store", "store", "--out", "model"]) == 0
    assert mlflow.pytorch.load_model(str(copied / "model")) is not None
    spec = write_spec(copied, **QUICK, tracking={"dir": "store", "models": "all"})
    assert main.main(["run", str(spec), "-o", "search.trials=3"]) == 0
    assert not (finished / "built").exists()  # where the store was built: not made again
    _, _, children = runs_of(copied)
    assert len(children) == 3
    here = (copied / "store" / "artifacts").resolve().as_uri()
    assert all(uri.startswith(here) for uri in locations(copied / "store" / "mlflow.db"))


# -- a read-only store ----------------------------------------------------------------------


def _without_dac_override() -> None:
    """In a child of root: drop the capabilities that ignore permission bits (from exec on)."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    for cap in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
        if libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "PR_CAPBSET_DROP")


def _read_only(store: Path) -> dict:
    """Popen arguments for a process to which ``store`` is read-only (also as root)."""
    for path in [store, *store.rglob("*")]:
        path.chmod(path.stat().st_mode & ~0o222)
    return {
        "preexec_fn": _without_dac_override if os.geteuid() == 0 else None,
        "env": {**os.environ, "PYTHONPATH": str(ROOT)},
        "cwd": store.parent,
    }


@pytest.fixture
def read_only(copied):
    """A read-only copy of the moved store: (its folder, Popen arguments for a reader)."""
    store = copied / "store"
    kwargs = _read_only(store)
    probe = f"import os; print(os.access({str(store)!r}, os.W_OK))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, **kwargs)
    if done.stdout.strip() != "False":
        pytest.skip(f"cannot make the store read-only to a process of this user: {done.stderr.strip()[-200:]}")
    yield store, kwargs
    for path in [store, *store.rglob("*")]:
        path.chmod(path.stat().st_mode | 0o200)  # so that pytest can clean up


def test_a_read_only_moved_store_shows_and_exports(read_only):
    store, kwargs = read_only
    before = tree(store)
    with sqlite3.connect(f"{(store / 'mlflow.db').as_uri()}?mode=ro", uri=True) as con:
        (run_id,) = con.execute("SELECT run_uuid FROM runs WHERE name LIKE 't00 %'").fetchone()
    out = store.parent / "model"
    show, export = ["show", "--store", "store"], ["export", run_id, "--store", "store", "--out", str(out)]
    code = (
        f"import os, sys, main; assert not os.access({str(store)!r}, os.W_OK)\n"
        f"sys.exit(main.main({show!r}) or main.main({export!r}))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, **kwargs)
    assert done.returncode == 0, done.stderr
    assert "Pareto front of tiny" in done.stdout and "exported to" in done.stdout
    assert (out / "MLmodel").exists() and (out / "weights.pt").exists()
    assert tree(store) == before


# -- the UI ---------------------------------------------------------------------------------


def test_ui_refuses_a_busy_port(finished, capsys):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main.main(["ui", "--store", str(finished / "store"), "--port", str(port)]) == 2
    assert capsys.readouterr().err.strip() == f"error: port {port} on 127.0.0.1 is in use; choose another with --port N"


def test_ui_serves_a_read_only_store_and_stops_with_its_server_on_sigterm(read_only):
    store, kwargs = read_only
    port = free_port()
    log = store.parent / "ui.log"
    with open(log, "w") as out:
        ui = subprocess.Popen(
            [sys.executable, str(ROOT / "main.py"), "ui", "--store", "store", "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            **kwargs,
        )
    url, server = f"http://127.0.0.1:{port}", []
    try:
        wait_for_health(url, ui, "the UI")
        # main.py probes the server on its own schedule: stop it only once it has told the user.
        deadline = time.time() + 30
        while f"MLflow UI on {url}" not in log.read_text():
            assert time.time() < deadline and ui.poll() is None, log.read_text()
            time.sleep(0.2)
        server = psutil.Process(ui.pid).children(recursive=True)
        request = urllib.request.Request(f"{url}/api/2.0/mlflow/experiments/search", data=b'{"max_results": 10}')
        request.add_header("Content-Type", "application/json")
        found = json.load(urllib.request.urlopen(request, timeout=30))["experiments"]
        ui.send_signal(signal.SIGTERM)  # to main.py alone, as a service manager would
        assert ui.wait(timeout=60) == 0
        assert server and not psutil.wait_procs(server, timeout=30)[1]
        assert not port_taken(port)
        tiny = next(e for e in found if e["name"] == "tiny")
        assert tiny["artifact_location"] == (store / "artifacts").resolve().as_uri()  # where the store is now
    finally:
        for process in [psutil.Process(ui.pid), *server] if ui.poll() is None else server:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.kill()


# -- a store that fails mid-sweep, a damaged database, a server that is not there ----------

REPLAYED = [str(ROOT / "spaces" / "tables" / "digits.yaml"), "-o", "search.replay=digits.jsonl.gz"]


def _replayed_sweep(workdir: Path, trials: int, **popen) -> subprocess.Popen:
    """A replayed digits sweep (no training) in a process of its own, its store ``out``."""
    command = [sys.executable, str(ROOT / "main.py"), "run", *REPLAYED, "-o", f"search.trials={trials}"]
    command += ["-o", f"tracking.dir={workdir / 'out'}", "-o", "search.sampler=random"]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)


def _statuses(db: Path) -> list[str]:
    with sqlite3.connect(db) as con:
        return [status for (status,) in con.execute("SELECT status FROM runs")]


def test_a_store_made_unwritable_mid_sweep_ends_it_with_exit_4_in_one_line(workdir, monkeypatch):
    """The store made read-only mid-trial (by permissions, to a process without root's
    override): Optuna masks the journal's failed write with "Should not reach." (exit 1, a
    traceback, two runs RUNNING before the fix). Now exit 4 and one line; the runs MLflow
    cannot end are ended by the rerun, which resumes."""
    plan = inject(monkeypatch, workdir, [{"trial": 2, "epoch": 0, "kind": "sleep", "seconds": 2}])
    sweep = _replayed_sweep(workdir, 5, preexec_fn=_without_dac_override if os.geteuid() == 0 else None)
    deadline = time.time() + 120
    while not Path(f"{plan}.fired.0").exists():  # trial 2 is running
        assert sweep.poll() is None and time.time() < deadline, sweep.communicate()
        time.sleep(0.1)
    store = workdir / "out"
    locked = [store, *store.rglob("*")]
    for path in locked:
        path.chmod(path.stat().st_mode & ~0o222)
    out, err = sweep.communicate(timeout=120)
    for path in locked:
        path.chmod(path.stat().st_mode | 0o200)
    assert sweep.returncode == 4, out + err
    assert "Traceback" not in out + err and "Should not reach" not in out + err
    assert "error: the sweep's store failed: PermissionError" in err
    monkeypatch.delenv("ARCHSWEEP_FAULTS")
    assert main.main(["run", *REPLAYED, "-o", "search.trials=5", "-o", f"tracking.dir={store}"]) == 0
    assert "RUNNING" not in _statuses(store / "mlflow.db")
    trials = read_study(store, "digits-table").trials
    assert sum(state_of(t) in ("complete", "duplicate") for t in trials) == 5
    assert not (store / "checkpoints").exists()  # a finished sweep leaves no empty folder


def test_a_journal_on_a_full_disk_ends_the_sweep_with_exit_4_and_no_run_left_running(workdir, monkeypatch, capsys):
    """The journal's disk fills while trial 2 is told (a fake failure, in this process: the
    test above makes a real one), MLflow still writable: exit 4 in one line, every run
    ended, and the next run resumes."""
    import errno

    from optuna.storages.journal import JournalFileBackend

    real = JournalFileBackend.append_logs

    def full(self, logs):
        if any(log.get("op_code") == 6 and log.get("trial_id") == 2 for log in logs):  # SET_TRIAL_STATE_VALUES
            raise OSError(errno.ENOSPC, "No space left on device", str(self._file_path))
        return real(self, logs)

    store, argv = workdir / "out", ["run", *REPLAYED, "-o", "search.trials=5", "-o", "search.sampler=random"]
    argv += ["-o", f"tracking.dir={workdir / 'out'}"]
    monkeypatch.setattr(JournalFileBackend, "append_logs", full)
    assert main.main(argv) == 4
    err = capsys.readouterr().err
    assert "error: the sweep's store failed: OSError: [Errno 28] No space left on device" in err
    assert "Should not reach" not in err and "RUNNING" not in _statuses(store / "mlflow.db")
    monkeypatch.setattr(JournalFileBackend, "append_logs", real)
    assert main.main(argv) == 0
    assert "RUNNING" not in _statuses(store / "mlflow.db")
    assert sum(state_of(t) in ("complete", "duplicate") for t in read_study(store, "digits-table").trials) == 5


def _damage_header(db) -> None:
    with open(db, "r+b") as f:  # the header and the first pages: "file is not a database"
        f.write(os.urandom(8192))


def _damage_a_table(db) -> None:
    """The cells of the metrics table, its page header kept: SQLite opens the file and
    answers queries, only its integrity check (quick_check) finds the damage."""
    with sqlite3.connect(db) as con:
        page = con.execute("PRAGMA page_size").fetchone()[0]
        (root,) = con.execute("SELECT rootpage FROM sqlite_master WHERE name = 'metrics'").fetchone()
    with open(db, "r+b") as f:
        f.seek((root - 1) * page + 8)
        f.write(os.urandom(page - 8))


@pytest.mark.parametrize("damage", [_damage_header, _damage_a_table], ids=["header", "table"])
def test_a_damaged_mlflow_db_is_refused_in_one_line_and_left_as_it_was(copied, capsys, damage):
    db = copied / "store" / "mlflow.db"
    damage(db)
    before = tree(copied)
    assert main.main(["run", str(copied / "tiny.yaml")]) == 4
    assert main.main(["show", "--store", str(copied / "store")]) == 4
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "damaged" in line]
    assert len(lines) == 2 and all("restore mlflow.db from a copy" in line for line in lines), err
    assert "Traceback" not in err and tree(copied) == before


def test_a_tracking_server_that_is_not_there_is_said_at_start_with_exit_4(workdir, monkeypatch, capsys):
    from runs import server

    monkeypatch.setattr(server, "SERVER_WAIT_S", 1.0)
    uri = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    started = time.monotonic()
    assert main.main(["run", str(write_spec(workdir, **QUICK)), "-o", f"tracking.uri={uri}"]) == 4
    assert time.monotonic() - started < 30  # MLflow's client alone retries for minutes
    err = capsys.readouterr().err
    assert f"no MLflow tracking server answers at {uri}" in err and "Traceback" not in err
    assert main.main(["show", "--uri", uri]) == 2
    assert f"no MLflow tracking server answers at {uri}" in capsys.readouterr().err


def test_export_says_what_a_parent_run_is_and_refuses_an_out_it_cannot_write(copied, capsys):
    with sqlite3.connect(copied / "store" / "mlflow.db") as con:
        (parent,) = con.execute("SELECT run_uuid FROM runs WHERE name = 'tiny'").fetchone()
        trials = [run for (run,) in con.execute("SELECT run_uuid FROM runs WHERE name LIKE 't0%'")]
    store = ["--store", str(copied / "store")]
    assert main.main(["export", parent, *store, "--out", str(copied / "x")]) == 2
    err = capsys.readouterr().err
    assert f"run {parent} is the parent run of sweep 'tiny'" in err and "tracking.models" not in err
    assert any(run in err for run in trials)  # the front's run ids, to export instead
    assert main.main(["export", trials[0], *store, "--out", "/proc/self/x"]) == 2
    assert "cannot write /proc/self/x" in capsys.readouterr().err


def test_images_that_break_after_validation_are_refused_before_anything_is_written(workdir):
    """validate decodes every image; one that breaks between validate and run (here: it
    becomes a FIFO, which a plain open would wait on forever) is a located refusal of the
    run before its store exists, not a hang or a traceback with the parent run RUNNING."""
    from PIL import Image

    from runs.data import DataError
    from search.spec import load
    from search.sweep.local import LocalSweep

    for label in ("a", "b"):
        (workdir / "images" / label).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (8, 8), (60 * i, 0, 0)).save(workdir / "images" / label / f"{i}.png")
    spec = write_spec(workdir, **QUICK, data={"dataset": "imagefolder", "path": "images", "image_size": 8})
    loaded = load(spec)
    (workdir / "images" / "b" / "2.png").unlink()
    os.mkfifo(workdir / "images" / "b" / "2.png")
    sweep = LocalSweep(loaded)
    with pytest.raises(DataError, match=r"2\.png"):
        sweep.open()
    sweep.close()
    assert not (workdir / "store").exists()

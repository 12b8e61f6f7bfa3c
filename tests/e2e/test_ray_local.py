"""The ray backend with its default address, local: a private Ray runtime on a loopback
node address with token authentication, and a private MLflow server on 127.0.0.1 over
the embedded store. Switching backends is one override."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

import main
import search.sweep.ray.driver  # noqa: F401  sets Ray's environment before ray is imported
from tests.e2e.conftest import runs_of, write_spec

pytestmark = pytest.mark.ray  # every test here starts a Ray runtime
ROOT = Path(__file__).resolve().parents[2]


def _loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%")[0])
    return (getattr(ip, "ipv4_mapped", None) or ip).is_loopback  # ::ffff:127.0.0.2 too


def _refused(address: str, env: dict) -> bool:
    """A Ray client with ``env`` (no token, or a wrong one) is told InvalidAuthToken and
    never connects (it retries, so it is stopped once refused)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    probe = f"import ray; ray.init(address={address!r}, log_to_driver=False); print('CONNECTED', flush=True)"
    proc = subprocess.Popen(
        [sys.executable, "-c", probe], env={**clean, **env}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    seen = ""
    try:
        deadline = time.time() + 90
        while time.time() < deadline and "InvalidAuthToken" not in seen and "CONNECTED" not in seen:
            line = proc.stdout.readline()
            if not line:
                break
            seen += line
    finally:
        proc.kill()
        proc.wait()
    return "InvalidAuthToken" in seen and "CONNECTED" not in seen


def _driver(spec: Path, folder: Path) -> subprocess.Popen:
    """`main.py run SPEC` as from a user's shell: its own process group, stderr in driver.err
    (a file: a full pipe would stall the driver)."""
    return subprocess.Popen(
        [sys.executable, str(ROOT / "main.py"), "run", str(spec)],
        cwd=folder,
        stdout=subprocess.DEVNULL,
        stderr=(folder / "driver.err").open("wb"),
        start_new_session=True,
    )


def _stop(driver: subprocess.Popen) -> None:
    """The driver and whatever its private Ray runtime left behind: they share its process
    group (Ray's processes only block SIGINT). Not `ray stop`, which stops every Ray
    runtime of the user on the machine, a sweep of theirs beside the tests included."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(driver.pid, signal.SIGKILL)
    driver.wait()


def test_nothing_archsweep_starts_is_open_to_other_machines(tmp_path):
    """During a sweep: MLflow listens on 127.0.0.1 only, no dashboard, every connection
    stays on loopback, and Ray's ports (which listen on every interface) refuse a client
    without the cluster's token. Then its Ray runtime dies under it (its raylet killed, as
    a `ray stop` elsewhere would): the driver says so in one line, ends its runs (none
    left RUNNING) and exits 4 (it used to exit 1, or even 0, with nothing said)."""
    spec = write_spec(
        tmp_path,
        name="exposure",
        train={"epochs": 30, "batch_size": 64, "lr": 0.003},
        search={"sampler": "random", "trials": 2, "seed": 0},
        backend={"kind": "ray"},
    )
    driver = _driver(spec, tmp_path)
    db = tmp_path / "store" / "mlflow.db"

    def training() -> bool:
        if not db.exists():
            return False
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
            try:
                return con.execute("select count(*) from runs where status = 'RUNNING'").fetchone()[0] >= 2
            except sqlite3.OperationalError:
                return False

    try:
        deadline = time.time() + 240
        while not training():
            assert time.time() < deadline and driver.poll() is None, "the sweep did not start training"
            time.sleep(0.5)
        family = [*psutil.Process(driver.pid).children(recursive=True), psutil.Process(driver.pid)]
        listening, remote, gcs, raylet = [], [], None, None
        for proc in family:
            try:
                connections = proc.net_connections(kind="inet")
                name = " ".join(proc.cmdline()[:3])[:200]
                raylet = proc if proc.name() == "raylet" else raylet
            except psutil.Error:
                continue
            for c in connections:
                if c.status == psutil.CONN_LISTEN:
                    listening.append((name, c.laddr.ip, c.laddr.port))
                    if "gcs_server" in name:
                        gcs = c.laddr.port
                elif c.raddr:
                    remote.append((name, c.raddr.ip))
        mlflow = [item for item in listening if "uvicorn" in item[0] or "mlflow" in item[0]]  # its server
        assert mlflow and all(ip == "127.0.0.1" for _, ip, _ in mlflow)
        assert not [item for item in listening if item[2] in (8265, 52365)]  # the dashboard is off
        assert remote and all(_loopback(ip) for _, ip in remote), remote
        assert gcs is not None
        for auth in ({"RAY_AUTH_MODE": "disabled"}, {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": "0" * 32}):
            assert _refused(f"127.0.0.2:{gcs}", {**auth, "HOME": str(tmp_path)})
        raylet.kill()
        assert driver.wait(timeout=60) == 4
    finally:
        _stop(driver)
    said = (tmp_path / "driver.err").read_text()
    assert "error: the sweep's Ray runtime stopped (raylet pid " in said, said[-3000:]
    _, parents, children = runs_of(tmp_path, "exposure")
    assert [r.info.status for r in parents] == ["KILLED"] and "KILLED" in {r.info.status for r in children}
    assert "RUNNING" not in {r.info.status for r in children}


def test_ctrl_c_on_ray_is_an_interruption_and_the_next_run_finishes(tmp_path, monkeypatch):
    """Ctrl-C as a terminal sends it (SIGINT to the driver's process group) while a trial
    hangs: exit 130, the parent and that trial's run KILLED, nothing left RUNNING; the next
    run resumes the trial from its checkpoint and ends with exactly the requested trials."""
    from tests.e2e.conftest import inject
    from tests.e2e.test_sweep import study

    monkeypatch.chdir(tmp_path)
    plan = inject(monkeypatch, tmp_path, [{"trial": 2, "epoch": 0, "kind": "hang", "times": 1}])
    spec = write_spec(tmp_path, search={"sampler": "random", "trials": 3, "seed": 0}, backend={"kind": "ray"})
    driver = _driver(spec, tmp_path)
    try:
        deadline = time.time() + 240
        while not Path(f"{plan}.fired.0").exists():
            assert time.time() < deadline and driver.poll() is None, "trial 2 never reached its hang"
            time.sleep(0.2)
        os.killpg(driver.pid, signal.SIGINT)
        assert driver.wait(timeout=120) == 130
    finally:
        _stop(driver)
    _, parents, children = runs_of(tmp_path)
    by_trial = {int(c.data.tags["archsweep.trial"]): c for c in children}
    assert parents[0].info.status == "KILLED"
    assert by_trial[2].info.status == "KILLED" and "RUNNING" not in {c.info.status for c in children}

    assert main.main(["run", str(spec)]) == 0
    assert [t.state.name for t in study(tmp_path).trials] == ["COMPLETE"] * 3
    _, parents, children = runs_of(tmp_path)
    by_trial = {int(c.data.tags["archsweep.trial"]): c for c in children}
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert sorted(by_trial) == [0, 1, 2] and len(children) == 3
    assert {c.info.status for c in children} == {"FINISHED"}
    assert by_trial[2].data.tags["archsweep.resumed_from_epoch"] == "1"


def test_an_ablation_runs_on_ray_with_the_same_arms_seeds_and_report(tmp_path, monkeypatch):
    """A reproduction in smoke mode, ViX Table 4 (PiT's pooling with the class token carried
    through it, the X mixers, the hybrid stem) on Ray: one complete child run per (arm,
    seed) the spec declares, and a report row per arm (the local backend's smoke runs of the
    other reproductions: tests/reproduce/test_specs.py)."""
    import csv
    import io

    from search.spec import load

    monkeypatch.chdir(tmp_path)
    path = ROOT / "spaces" / "reproduce" / "vix_table4.yaml"
    spec = load(path, smoke=True)
    overrides = ["tracking.dir=store", "tracking.models=none", "backend.kind=ray"]
    assert main.main(["run", str(path), "--smoke", *(a for o in overrides for a in ("-o", o))]) == 0
    client, parents, children = runs_of(tmp_path, spec.experiment, "store")
    assert all(c.info.status == "FINISHED" and c.data.tags["archsweep.state"] == "complete" for c in children)
    ran = sorted((c.data.tags["archsweep.arm"], c.data.tags["archsweep.seed"]) for c in children)
    declared = [
        (spec.ablation.arms[i].name, str(seed)) for i in spec.ablation.runnable for seed in range(spec.ablation.seeds)
    ]
    assert ran == sorted(declared) and len(spec.ablation.runnable) == len(spec.ablation.arms) > 1
    text = Path(client.download_artifacts(parents[0].info.run_id, "ablation.csv", str(tmp_path))).read_text()
    assert [r["arm"] for r in csv.DictReader(io.StringIO(text))] == [a.name for a in spec.ablation.arms]


def test_faults_on_ray_are_retried_or_recorded_like_local(tmp_path, monkeypatch):
    """One sweep on the ray backend meets the fault suite's cases: a crash retried from its
    checkpoint, a crash on every attempt, a hang ended by the timeout, and a trial beyond
    its memory cap."""
    from tests.e2e.conftest import inject
    from tests.e2e.test_sweep import study

    monkeypatch.chdir(tmp_path)
    faults = [
        {"trial": 1, "epoch": 1, "kind": "raise", "times": 1},
        {"trial": 2, "kind": "raise"},
        {"trial": 3, "epoch": 0, "kind": "hang"},
    ]
    inject(monkeypatch, tmp_path, faults)
    # An ablation, so trial numbers are fixed: 0-3 the base (width 16), 4-7 width 4096.
    stage = {"depth": 1, "width": 16, "mlp_ratio": 16, "mixer": "fourier"}
    spec = write_spec(
        tmp_path,
        model={"patch_size": 2, "stages": [stage]},
        train={"epochs": 3, "batch_size": 64, "lr": 0.003},
        ablation={"factors": {"model.stages[*].width": [16, 4096]}, "seeds": 4},
        search=None,
        # The limit is on a whole trial: three epochs and their MLflow logging took over 8 s,
        # and then over 20 s, under the suite's load on slow days (the hang waits it out).
        backend={"kind": "ray", "max_failures": 1, "trial_timeout": 45, "memory_per_trial": 0.25},
    )
    assert main.main(["run", str(spec)]) == 3
    trials = {t.number: t for t in study(tmp_path).trials}
    reasons = {n: t.user_attrs.get("fail_reason", "") for n, t in trials.items()}
    assert len(trials) == 8
    assert trials[1].state.name == "COMPLETE", reasons
    assert reasons[2].startswith("InjectedFault: injected fault in trial 2")
    assert reasons[3].startswith("timeout")
    wide = [n for n, t in trials.items() if t.user_attrs["arm"] == 1]
    assert wide == [4, 5, 6, 7] and all(reasons[n].startswith("oom: ") for n in wide), reasons
    _, _, children = runs_of(tmp_path)
    by_trial = {int(c.data.tags["archsweep.trial"]): c for c in children}
    assert len(children) == 8 and "RUNNING" not in {c.info.status for c in children}
    assert by_trial[1].info.status == "FINISHED" and by_trial[1].data.tags["archsweep.resumed_from_epoch"] == "2"
    for n in [2, 3, *wide]:
        assert by_trial[n].info.status == "FAILED" and by_trial[n].data.tags["archsweep.reason"] == reasons[n]
    assert by_trial[0].info.status == "FINISHED"


def test_on_ray_repeats_are_free_and_the_sweep_ends_when_the_space_is_exhausted_as_on_local(
    tmp_path, monkeypatch, capsys
):
    """Replayed (nothing trains): eight architectures, twenty trials asked, one at a time.
    On Ray as locally, the repeats are Tune trials answered free, and the searcher ends the
    experiment (num_samples=-1) once the eighth architecture is tried, with the same
    trials, the same reason said and kept on the parent run. (Run again, nothing is drawn:
    the frontier sampler's test below.) Tune's snapshots of the searcher after its first
    fail here (Tune logs that and goes on): the sweep's trials and runs are all kept."""
    from optuna.trial import TrialState

    from runs.tags import STOPPED_TAG
    from search.sweep.ray.searcher import ArchSearch
    from search.sweep.study import counted, state_of
    from search.tables.table import save
    from tests.e2e.test_mo_asha import _journal
    from tests.made_up import DIGITS_SPEC, digits_table

    monkeypatch.chdir(tmp_path)
    saves, first_save = [], ArchSearch.save

    def only_the_first(searcher, path):  # the copy on disk stays as the experiment began
        if not saves:
            first_save(searcher, path)
        saves.append(path)

    monkeypatch.setattr(ArchSearch, "save", only_the_first)
    save(digits_table()[1], tmp_path / "made-up.jsonl.gz")
    cut = ["model.embedding=patch", "model.patch_size=2", "model.positional=none", "model.stages[0].depth=1"]
    cut += ["model.stages[1].depth=0", "search.sampler=random", "search.trials=20", "backend.max_concurrent=1"]
    cut += [f"search.replay={tmp_path / 'made-up.jsonl.gz'}", "tracking.models=none"]
    why = (
        "the space is exhausted: all 8 architectures were tried; 12 of the requested 20 trials had nothing left to try"
    )
    seen = {}
    for kind in ("local", "ray"):
        overrides = [*cut, f"tracking.dir=store_{kind}", f"backend.kind={kind}"]
        assert main.main(["run", str(DIGITS_SPEC), *(a for o in overrides for a in ("-o", o))]) == 0
        assert f"stopped early: {why}" in capsys.readouterr().out
        trials = _journal(tmp_path, f"store_{kind}", "digits-table").trials
        assert sum(counted(t) for t in trials) == 8 and TrialState.RUNNING not in {t.state for t in trials}
        _, parents, children = runs_of(tmp_path, "digits-table", f"store_{kind}")
        assert parents[0].data.tags[STOPPED_TAG] == why and len(children) == len(trials)
        seen[kind] = [(t.params, state_of(t), t.user_attrs.get("duplicate_of")) for t in trials]
    assert seen["ray"] == seen["local"] and any(state == "duplicate" for _, state, _ in seen["ray"])
    assert len(saves) > 1  # Tune did try to snapshot the searcher again


def test_the_frontier_sampler_on_ray_asks_distinct_architectures_and_its_saved_state_restores(
    tmp_path, monkeypatch, capsys
):
    """Two trials at a time on Ray with archsweep's own sampler (replayed): no architecture
    drawn twice, not even by two concurrent asks, and the space's end said; Tune's saved
    state (the searcher pickled without the sampler's spec-bound parts) restores on the next
    run, which draws nothing and says the space's end again."""
    from search.sweep.study import state_of
    from search.tables.table import save
    from tests.e2e.test_mo_asha import _journal
    from tests.made_up import DIGITS_SPEC, digits_table

    monkeypatch.chdir(tmp_path)
    save(digits_table()[1], tmp_path / "made-up.jsonl.gz")
    cut = ["model.embedding=patch", "model.patch_size=2", "model.positional=none", "model.stages[0].depth=1"]
    cut += ["model.stages[1].depth=0", "search.sampler=frontier", "search.trials=20", "backend.max_concurrent=2"]
    cut += [f"search.replay={tmp_path / 'made-up.jsonl.gz'}", "tracking.models=none", "backend.kind=ray"]
    args = ["run", str(DIGITS_SPEC), *(a for o in cut for a in ("-o", o))]
    assert main.main(args) == 0
    assert "stopped early: the space is exhausted: all 8 architectures were tried" in capsys.readouterr().out
    trials = _journal(tmp_path, "out", "digits-table").trials
    assert len(trials) == 8 == len({t.user_attrs["draw"] for t in trials})
    assert {state_of(t) for t in trials} == {"complete"}
    assert main.main(args) == 0  # Tune's finished experiment restored: nothing drawn
    out = capsys.readouterr().out
    assert "0 of 20 trials to run" in out and "stopped early: the space is exhausted: all 8 architectures" in out
    assert len(_journal(tmp_path, "out", "digits-table").trials) == 8

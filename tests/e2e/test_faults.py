"""The hardening suite: real faults (runs.faults) in real sweeps; every trial must be
accounted for in Optuna and MLflow, nothing may hang, and no process may be left behind."""

import itertools
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from optuna.trial import TrialState

import main
from search.sweep.study import state_of
from tests.e2e.conftest import inject, runs_of, write_spec
from tests.e2e.test_sweep import study

ROOT = Path(__file__).resolve().parents[2]
# lr drawn: sixteen trials of TINY's six architectures would repeat draws, and a repeat is not trained.
THREE_EPOCHS = {"epochs": 3, "batch_size": 64, "lr": {"float": [1e-3, 1e-2], "log": True}}


def sixteen(folder: Path, **changes) -> Path:
    return write_spec(folder, train=THREE_EPOCHS, search={"sampler": "random", "trials": 16, "seed": 0}, **changes)


def steps(client, run_id: str, metric: str = "train_loss") -> list[int]:
    return sorted(m.step for m in client.get_metric_history(run_id, metric))


def test_transient_crashes_are_retried_from_the_checkpoint(workdir, monkeypatch):
    crashing = {3: "raise", 7: "exit", 12: "raise"}  # exit: the process dies, like a segfault
    inject(monkeypatch, workdir, [{"trial": n, "epoch": 1, "kind": k, "times": 1} for n, k in crashing.items()])
    assert main.main(["run", str(sixteen(workdir, backend={"max_failures": 2}))]) == 0
    trials = study(workdir).trials
    assert len(trials) == 16 and all(t.state == TrialState.COMPLETE for t in trials)
    assert {t.number: t.user_attrs["attempts"] for t in trials if t.user_attrs["attempts"] > 1} == dict.fromkeys(
        crashing, 2
    )
    client, parents, children = runs_of(workdir)
    assert len(children) == 16 and all(c.info.status == "FINISHED" for c in children)
    assert sorted(int(c.data.tags["archsweep.trial"]) for c in children) == list(range(16))
    for run in children:
        number = int(run.data.tags["archsweep.trial"])
        # Retries resumed after epoch 2 (its checkpoint), not from scratch; each epoch logged
        # once (step 3 holds the trial's final metrics).
        assert run.data.tags.get("archsweep.resumed_from_epoch") == ("2" if number in crashing else None)
        assert steps(client, run.info.run_id) == [0, 1, 2, 3]
    assert parents[0].info.status == "FINISHED"


def test_persistent_failures_are_recorded_and_the_sweep_says_partial(workdir, monkeypatch):
    plan = inject(monkeypatch, workdir, [{"trial": n, "kind": "raise"} for n in (4, 9)])
    assert main.main(["run", str(sixteen(workdir, backend={"max_failures": 1}))]) == 3
    trials = study(workdir).trials
    failed = {t.number: t.user_attrs["fail_reason"] for t in trials if t.state == TrialState.FAIL}
    # The reason is the last attempt's: the retry resumed after epoch 1 and broke after epoch 2.
    assert failed == {n: f"InjectedFault: injected fault in trial {n}, epoch 2" for n in (4, 9)}
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 14 and len(trials) == 16
    assert [Path(f"{plan}.fired.{i}").read_text() for i in (0, 1)] == ["2", "2"]  # tried, retried once
    _, _, children = runs_of(workdir)
    by_state = {s: [c for c in children if c.info.status == s] for s in ("FINISHED", "FAILED")}
    assert len(by_state["FINISHED"]) == 14 and len(by_state["FAILED"]) == 2 and len(children) == 16
    for run in by_state["FAILED"]:
        assert run.data.tags["archsweep.reason"] == failed[int(run.data.tags["archsweep.trial"])]


def test_a_hung_trial_is_ended_by_its_timeout(workdir, monkeypatch):
    inject(monkeypatch, workdir, [{"trial": 2, "epoch": 0, "kind": "hang"}])
    spec = write_spec(workdir, backend={"trial_timeout": 5})  # a trial here takes well under a second
    started = time.monotonic()
    assert main.main(["run", str(spec)]) == 3
    assert time.monotonic() - started < 120  # the hang did not stall the sweep
    trials = study(workdir).trials
    assert trials[2].state == TrialState.FAIL and trials[2].user_attrs["fail_reason"].startswith("timeout")
    assert trials[2].user_attrs["attempts"] == 1  # a timeout is not retried: it would hang again
    assert [t.state for t in trials[:2] + trials[3:]] == [TrialState.COMPLETE] * 4
    assert not [p for p in psutil.Process().children(recursive=True) if p.name().startswith("archsweep-t")]


def test_a_trial_beyond_its_memory_cap_fails_as_oom_and_the_next_runs(workdir):
    stage = {"depth": 1, "width": {"choice": [8, 4096]}, "mlp_ratio": 16, "mixer": "fourier"}
    spec = write_spec(
        workdir,
        model={"patch_size": 2, "stages": [stage]},
        search={"sampler": "random", "trials": 6, "seed": 1},
        backend={"memory_per_trial": 0.25},  # GiB: the wide MLP's 2 x 268M floats do not fit
    )
    assert main.main(["run", str(spec)]) == 3
    trials = study(workdir).trials
    wide = [t for t in trials if t.params["model.stages.0.width"] == 4096]
    assert wide and all(t.state == TrialState.FAIL for t in wide)
    assert all(t.user_attrs["fail_reason"].startswith("oom: ") for t in wide), [t.user_attrs for t in wide]
    assert all(t.user_attrs["attempts"] == 1 for t in wide)  # not retried: it would not fit again
    narrow = [t for t in trials if t.params["model.stages.0.width"] == 8]
    assert narrow and all(t.state == TrialState.COMPLETE for t in narrow)
    assert max(t.number for t in narrow) > min(t.number for t in wide)  # a trial ran after an oom


def test_several_workers_share_one_study(workdir):
    spec = write_spec(workdir, train=THREE_EPOCHS, search={"sampler": "tpe", "trials": 12, "seed": 0})
    assert main.main(["run", str(spec), "--workers", "3"]) == 0
    trials = study(workdir).trials
    assert len(trials) == 12 and all(t.state == TrialState.COMPLETE for t in trials)
    assert sorted(t.number for t in trials) == list(range(12))
    _, _, children = runs_of(workdir)
    assert sorted(int(c.data.tags["archsweep.trial"]) for c in children) == list(range(12))
    spans = sorted((c.info.start_time, c.info.end_time) for c in children)
    assert any(b[0] < a[1] for a, b in itertools.pairwise(spans))  # trials did overlap


def _children_of(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def test_a_driver_killed_three_times_still_ends_with_exactly_the_requested_trials(workdir):
    spec = write_spec(
        workdir,
        train={"epochs": 12, "batch_size": 32, "lr": 0.003},
        search={"sampler": "random", "trials": 6, "seed": 0},
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    rng = random.Random(7)
    command = [sys.executable, str(ROOT / "main.py"), "run", str(spec)]
    for _ in range(3):
        proc = subprocess.Popen(command, cwd=workdir, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(3, 7))  # a random point: setting up, between trials or inside one
        spawned = _children_of(proc.pid)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        gone, alive = psutil.wait_procs(spawned, timeout=15)
        assert not alive, alive  # the fork server and trials' processes die with their sweep
    assert main.main(["run", str(spec)]) == 0
    trials = study(workdir).trials
    complete = [t for t in trials if state_of(t) == "complete"]  # the budget: distinct architectures
    repeats = [t for t in trials if state_of(t) == "duplicate"]  # answered free, besides (PRUNED to Optuna)
    assert len(complete) == 6 and TrialState.RUNNING not in {t.state for t in trials}
    _, parents, children = runs_of(workdir)
    finished = [c.data.tags["archsweep.trial"] for c in children if c.info.status == "FINISHED"]
    assert len(finished) == 6 + len(repeats) == len(set(finished))
    assert {c.info.status for c in children} <= {"FINISHED", "KILLED"} and len(parents) == 1
    assert parents[0].info.status == "FINISHED"


@pytest.mark.timeout(180)
def test_a_journal_lock_left_by_a_killed_process_does_not_stall_the_next_run(workdir):
    # What a driver SIGKILLed inside an Optuna journal write leaves (an earlier CI run hung
    # here for an hour): Optuna's lock, taken by a real process through the store's
    # relative path, as the sweep used to open it.
    spec = write_spec(workdir, search={"sampler": "random", "trials": 2})
    assert main.main(["run", str(spec)]) == 0
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_JOURNAL_LOCK, "store/optuna/tiny.journal"], cwd=workdir, stdout=subprocess.PIPE
    )
    try:
        assert holder.stdout.readline() == b"held\n"
    finally:
        holder.kill()
        holder.wait()
    assert os.path.islink(workdir / "store" / "optuna" / "tiny.journal.lock")
    assert main.main(["run", str(write_spec(workdir, search={"sampler": "random", "trials": 3}))]) == 0
    assert [t.state for t in study(workdir).trials] == [TrialState.COMPLETE] * 3


HOLD_JOURNAL_LOCK = """
import sys, time
from optuna.storages.journal import JournalFileSymlinkLock
JournalFileSymlinkLock(sys.argv[1]).acquire()
print("held", flush=True)
time.sleep(600)
"""


def test_a_second_process_on_a_running_sweep_is_refused_and_touches_nothing(workdir, capsys):
    spec = write_spec(workdir, train={"epochs": 60, "batch_size": 32}, search={"sampler": "random", "trials": 2})
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    first = subprocess.Popen(
        [sys.executable, str(ROOT / "main.py"), "run", str(spec)],
        cwd=workdir,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        journal = workdir / "store" / "optuna" / "tiny.journal"
        deadline = time.time() + 120
        while not (journal.exists() and [t for t in study(workdir).trials if t.state == TrialState.RUNNING]):
            assert time.time() < deadline and first.poll() is None
            time.sleep(0.2)
        assert main.main(["run", str(spec)]) == 2
        err = capsys.readouterr().err
        assert f"is running in process {first.pid}" in err and "--workers N" in err
        assert main.main(["run", str(spec), "-o", "train.epochs=3"]) == 2  # another spec: workers would not help
        err = capsys.readouterr().err
        assert "with a different spec" in err and "--workers" not in err and "-o name=NEW" in err
        assert study(workdir).trials[0].state == TrialState.RUNNING  # the first sweep's trial was left alone
    finally:
        first.kill()
        first.wait()

"""End-to-end sweeps through ``main.py run`` on real Optuna and MLflow stores."""

import csv
import io
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import optuna
from optuna.trial import TrialState

import main
from search.sweep.study import state_of
from tests.e2e.conftest import inject, runs_of, write_spec

ROOT = Path(__file__).resolve().parents[2]


def study(folder: Path, name: str = "tiny") -> optuna.Study:
    backend = optuna.storages.journal.JournalFileBackend(str(folder / "store" / "optuna" / f"{name}.journal"))
    return optuna.load_study(study_name=name, storage=optuna.storages.JournalStorage(backend))


def non_dominated(points):
    """Brute force, independent of the code under test: (accuracy max, gmacs min)."""
    keep = []
    for i, (a, g) in enumerate(points):
        if not any(a2 >= a and g2 <= g and (a2 > a or g2 < g) for j, (a2, g2) in enumerate(points) if j != i):
            keep.append(i)
    return keep


def test_sweep_logs_parent_children_and_the_true_pareto_front(workdir):
    assert main.main(["run", str(write_spec(workdir))]) == 0
    client, parents, children = runs_of(workdir)
    assert len(parents) == 1 and len(children) == 5
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    assert all(c.data.tags["mlflow.parentRunId"] == parent.info.run_id for c in children)
    assert all(c.info.status == "FINISHED" for c in children)
    assert {c.data.params["model.stages.0.mixer"] for c in children} <= {"fourier", "attention", "global_filter"}
    assert all("archsweep.arch" in c.data.tags and c.info.run_name.startswith("t0") for c in children)
    history = client.get_metric_history(children[0].info.run_id, "val_accuracy")
    assert [m.step for m in history][:2] == [0, 1]  # per-epoch metrics

    points = [(c.data.metrics["val_accuracy"], c.data.metrics["gmacs"]) for c in children]
    expected = {int(children[i].data.tags["archsweep.trial"]) for i in non_dominated(points)}
    path = client.download_artifacts(parent.info.run_id, "pareto.csv", str(workdir))
    front = {int(row["trial"]) for row in csv.DictReader(io.StringIO(Path(path).read_text()))}
    assert front == expected
    tagged = {int(c.data.tags["archsweep.trial"]) for c in children if c.data.tags["archsweep.pareto"] == "true"}
    assert tagged == expected
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"pareto.csv", "pareto.png", "spec.yaml", "trials.csv"} <= artifacts
    assert parent.data.metrics["hypervolume"] > 0


def test_running_again_resumes_to_the_requested_count(workdir):
    """Also with every trial's model logged and registered: once each, across the runs."""
    spec = write_spec(workdir, tracking={"dir": "store", "models": "all", "register": "tiny-models"})
    assert main.main(["run", str(spec), "-o", "search.trials=3"]) == 0
    assert main.main(["run", str(spec)]) == 0  # 5 requested: two more
    assert main.main(["run", str(spec)]) == 0  # nothing left to do
    trials = study(workdir).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 5
    assert study(workdir).metric_names == ["val_accuracy", "gmacs"]  # as Optuna's own tools show them
    # The resumed sampler draws on: not its first draws again (they would be duplicates).
    assert [t.user_attrs["state"] for t in trials] == ["complete"] * 5
    client, parents, children = runs_of(workdir)
    numbers = [c.data.tags["archsweep.trial"] for c in children]
    assert len(parents) == 1 and sorted(numbers) == [str(i) for i in range(5)]
    models = client.search_logged_models([parents[0].info.experiment_id])
    assert sorted(m.source_run_id for m in models) == sorted(c.info.run_id for c in children)
    assert {str(m.status) for m in models} == {"READY"}
    versions = client.search_model_versions("name = 'tiny-models'")
    assert sorted((v.run_id, v.source) for v in versions) == sorted(
        (m.source_run_id, m.artifact_location) for m in models
    )
    assert {c.data.tags["archsweep.model"] for c in children} == {m.model_id for m in models}
    assert not (workdir / "store" / "weights" / "tiny").exists()  # kept only until logged


def test_trials_asked_for_by_number_are_logged_as_models_with_the_front(workdir):
    spec = write_spec(workdir, tracking={"dir": "store", "models": [0, 4]})
    assert main.main(["run", str(spec)]) == 0
    _, _, children = runs_of(workdir)
    front = {int(c.data.tags["archsweep.trial"]) for c in children if c.data.tags.get("archsweep.pareto") == "true"}
    logged = {int(c.data.tags["archsweep.trial"]) for c in children if "archsweep.model" in c.data.tags}
    assert not {0, 4} <= front  # so at least one is logged only because it was asked for
    assert logged == front | {0, 4}


def test_a_failing_trial_is_recorded_and_the_others_complete(workdir, monkeypatch):
    inject(monkeypatch, workdir, [{"trial": 1, "epoch": 0, "kind": "raise"}])
    spec = write_spec(workdir, backend={"max_failures": 0})
    assert main.main(["run", str(spec)]) == 3  # partial: one trial failed
    trials = study(workdir).trials
    reason = "InjectedFault: injected fault in trial 1, epoch 1"
    assert trials[1].state == TrialState.FAIL and trials[1].user_attrs["fail_reason"] == reason
    assert [t.state for t in trials[:1] + trials[2:]] == [TrialState.COMPLETE] * 4
    _, _, children = runs_of(workdir)
    failed = [c for c in children if c.info.status == "FAILED"]
    assert len(failed) == 1 and failed[0].data.tags["archsweep.reason"] == reason


def test_a_nan_loss_fails_its_trial_at_once(workdir):
    spec = write_spec(
        workdir,
        train={"epochs": 5, "optimizer": "sgd", "lr": 1.0e12, "grad_clip": 0, "batch_size": 64},
        search={"sampler": "random", "trials": 2, "seed": 0},
    )
    assert main.main(["run", str(spec)]) == 1  # ran, but no trial completed
    for t in study(workdir).trials:
        assert t.state == TrialState.FAIL
        assert t.user_attrs["fail_reason"].startswith("TrialFailed: non-finite training loss")
        assert "epoch 1," in t.user_attrs["fail_reason"]  # stopped in the first epoch
    _, _, children = runs_of(workdir)
    assert [c.info.status for c in children] == ["FAILED", "FAILED"]


def test_infeasible_trials_cost_no_training(workdir):
    spec = write_spec(workdir, constraints=["params <= 10"], search={"sampler": "random", "trials": 3, "seed": 0})
    assert main.main(["run", str(spec)]) == 1
    trials = study(workdir).trials
    for t in trials:  # no accuracy to report: PRUNED (off Optuna's plots), its violation kept
        assert t.state == TrialState.PRUNED and t.user_attrs["state"] == "infeasible" and t.values is None
        assert t.user_attrs["reason"].startswith("breaks params <= 10")
        assert t.constraints["params <= 10"] > 0 and t.constraints["buildable"] == 0
    assert study(workdir).best_trials == []
    _, _, children = runs_of(workdir)
    for c in children:
        assert c.data.tags["archsweep.state"] == "infeasible"
        assert "params" in c.data.metrics and "train_loss" not in c.data.metrics


def test_ctrl_c_marks_the_running_trial_and_resume_finishes(workdir, monkeypatch):
    plan = inject(monkeypatch, workdir, [{"trial": 2, "epoch": 0, "kind": "hang", "times": 1}])

    def press_ctrl_c_when_trial_2_hangs():
        while not Path(f"{plan}.fired.0").exists():
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGINT)

    spec = write_spec(workdir)
    threading.Thread(target=press_ctrl_c_when_trial_2_hangs, daemon=True).start()
    assert main.main(["run", str(spec)]) == 130
    _, parents, children = runs_of(workdir)
    assert parents[0].info.status == "KILLED"
    assert sorted(c.info.status for c in children) == ["FINISHED", "FINISHED", "KILLED"]
    assert main.main(["run", str(spec)]) == 0
    states = [t.state for t in study(workdir).trials]
    assert states.count(TrialState.COMPLETE) == 5 and states.count(TrialState.FAIL) == 1
    _, parents, children = runs_of(workdir)
    assert parents[0].info.status == "FINISHED" and len(parents) == 1
    assert not [c for c in children if c.info.status == "RUNNING"]


def test_sigkilled_sweep_resumes_without_duplicates(workdir):
    spec = write_spec(
        workdir,
        train={"epochs": 40, "batch_size": 32, "lr": 0.003},
        search={"sampler": "random", "trials": 3, "seed": 0},
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "main.py"), "run", str(spec)],
        cwd=workdir,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    journal = workdir / "store" / "optuna" / "tiny.journal"
    deadline = time.time() + 120
    while time.time() < deadline:  # kill it inside its second trial, once its MLflow run exists
        trials = study(workdir).trials if journal.exists() else []
        if len(trials) >= 2 and "mlflow_run_id" in trials[1].user_attrs:
            break
        time.sleep(0.2)
    time.sleep(0.5)  # into the training epochs
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert study(workdir).trials[-1].state == TrialState.RUNNING
    assert main.main(["run", str(spec)]) == 0
    states = [t.state for t in study(workdir).trials]
    assert states.count(TrialState.COMPLETE) == 3 and TrialState.RUNNING not in states
    _, parents, children = runs_of(workdir)
    numbers = [c.data.tags["archsweep.trial"] for c in children]
    assert len(parents) == 1 and len(numbers) == len(set(numbers))
    assert not [c for c in children if c.info.status == "RUNNING"]
    assert sum(c.info.status == "KILLED" for c in children) == 1


def test_quickstart_reaches_95_percent_on_digits(quickstart):
    """The main job at its full size; its wall time is recorded in BENCHMARKS.md, not
    asserted here."""
    _, _, children = runs_of(quickstart, "quickstart", store="out")
    best = max(c.data.metrics.get("val_accuracy", 0) for c in children)
    assert best >= 0.95, best


def test_ui_serves_the_sweep_store_on_loopback(quickstart_ui):
    """`main.py ui` over the quickstart's store answers MLflow's API on 127.0.0.1."""
    import json
    import urllib.request

    url = f"{quickstart_ui}/ajax-api/2.0/mlflow/experiments/get-by-name?experiment_name=quickstart"
    with urllib.request.urlopen(url, timeout=30) as response:
        assert json.loads(response.read())["experiment"]["name"] == "quickstart"


def test_sweep_logs_to_a_tracking_server(workdir):
    """tracking.uri points at a real `mlflow server` (SQL store) on 127.0.0.1."""
    import socket
    import urllib.request

    from mlflow import MlflowClient

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--backend-store-uri",
            f"sqlite:///{workdir / 'server.db'}",
            "--artifacts-destination",
            str(workdir / "served"),
            "--workers",
            "1",
        ],
        cwd=workdir,
        env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},  # no GenAI job runner
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 90
        while time.time() < deadline:
            try:
                urllib.request.urlopen(f"{uri}/health", timeout=2)
                break
            except OSError:
                time.sleep(0.5)
        spec = write_spec(workdir, search={"sampler": "random", "trials": 2, "seed": 0})
        assert main.main(["run", str(spec), "-o", f"tracking.uri={uri}", "-o", "tracking.models=pareto"]) == 0
        client = MlflowClient(uri)
        runs = client.search_runs([client.get_experiment_by_name("tiny").experiment_id])
        parents = [r for r in runs if r.data.tags["archsweep.trial"] == "parent"]
        assert len(runs) == 3 and len(parents) == 1
        assert {a.path for a in client.list_artifacts(parents[0].info.run_id)} >= {"pareto.csv", "pareto.png"}
        assert not (workdir / "store" / "mlflow.db").exists()  # nothing went to the embedded store
        front = [r for r in runs if r.data.tags.get("archsweep.pareto") == "true"]
        assert front and all(client.get_logged_model(r.data.tags["archsweep.model"]).status == "READY" for r in front)
        assert list((workdir / "served").rglob("weights.pt"))  # the models' files, through the server
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def test_same_spec_and_seed_give_the_same_sweep_bit_for_bit(tmp_path, monkeypatch):
    histories = []
    for name in ("a", "b"):
        folder = tmp_path / name
        folder.mkdir()
        monkeypatch.chdir(folder)
        assert main.main(["run", str(write_spec(folder, search={"sampler": "tpe", "trials": 4, "seed": 7}))]) == 0
        client, _, children = runs_of(folder)
        histories.append(
            {
                c.data.tags["archsweep.trial"]: (
                    c.data.params,
                    [m.value for m in client.get_metric_history(c.info.run_id, "train_loss")],
                )
                for c in children
            }
        )
    assert histories[0] == histories[1]


def _artifact_csv(client, run_id: str, name: str, folder: Path) -> list[dict]:
    return list(csv.DictReader(io.StringIO(Path(client.download_artifacts(run_id, name, str(folder))).read_text())))


def test_a_repeated_draw_is_answered_from_the_earlier_trial_and_every_trial_is_reported(workdir, capsys):
    """Three architectures, seven trials asked: two trained, one refused by a constraint,
    three repeats answered without training (uncounted), and the sweep stops when all
    three were tried, saying so. Without a terminal, a line per trial; at the end, counts
    per state and the reasons; trials.csv holds every trial."""
    mixers = {"choice": ["fourier", "global_filter", {"attention": {"heads": 2}}]}
    stages = [
        {"depth": 1, "width": 8, "mlp_ratio": 2, "mixer": mixers},
        {"depth": 0, "width": 16, "mixer": "fourier"},  # left out: only its depth is logged
    ]
    spec = write_spec(
        workdir,
        model={"patch_size": 2, "stages": stages},
        train={"epochs": 1, "batch_size": 64, "lr": 0.003},
        constraints=["params <= 750"],  # attention (796 parameters) is infeasible
        search={"sampler": "random", "trials": 7, "seed": 3},  # global_filter, attention, twice more, fourier
    )
    assert main.main(["run", str(spec)]) == 0
    trials = study(workdir).trials
    states = [t.user_attrs["state"] for t in trials]
    assert sorted(states) == ["complete"] * 2 + ["duplicate"] * 3 + ["infeasible"], states
    first = {}  # mixer -> the trial that ran it
    for t in trials:
        original = first.setdefault(t.params["model.stages.0.mixer"], t)
        if t is original:
            assert "duplicate_of" not in t.user_attrs
            continue
        assert t.user_attrs["duplicate_of"] == original.number and state_of(t) == "duplicate"
        # PRUNED to Optuna: off its best_trials (the original is there), and TPE draws elsewhere
        assert t.state == TrialState.PRUNED and t.values is None and t.constraints == original.constraints
        assert t.user_attrs["metrics"] == original.user_attrs["metrics"]
    assert sorted(first) == ["attention", "fourier", "global_filter"]

    client, parents, children = runs_of(workdir)
    runs = {int(c.data.tags["archsweep.trial"]): c for c in children}
    assert len(runs) == 6 and {c.info.status for c in children} == {"FINISHED"}
    for t in trials:
        run = runs[t.number]
        # one name in Optuna and MLflow
        assert {k: run.data.params[k] for k in t.params} == {k: str(v) for k, v in t.params.items()}
        assert run.data.params["model.stages.1.depth"] == "0"
        assert not [k for k in run.data.params if k.startswith("model.stages.1.") and not k.endswith("depth")]
        assert run.data.tags["archsweep.state"] == t.user_attrs["state"]
        if "duplicate_of" in t.user_attrs:
            original = runs[t.user_attrs["duplicate_of"]]
            assert run.data.tags["archsweep.duplicate_of"] == str(t.user_attrs["duplicate_of"])
            assert run.data.metrics == original.data.metrics and run.data.params == original.data.params
            assert len(client.get_metric_history(run.info.run_id, "params")) == 1  # the final metrics only
    history = {n: client.get_metric_history(r.info.run_id, "train_loss") for n, r in runs.items()}
    assert sorted(n for n, points in history.items() if 0 in {m.step for m in points}) == [0, 5]  # only two trained

    parent = parents[0]
    front = {int(r["trial"]) for r in _artifact_csv(client, parent.info.run_id, "pareto.csv", workdir)}
    assert front <= {t.number for t in trials if t.user_attrs["state"] == "complete"}
    rows = _artifact_csv(client, parent.info.run_id, "trials.csv", workdir)
    assert [int(r["trial"]) for r in rows] == list(range(6))
    for row, t in zip(rows, trials, strict=True):
        assert row["state"] == t.user_attrs["state"]
        assert row["model.stages.0.mixer"] == t.params["model.stages.0.mixer"]
        assert row["duplicate_of"] == str(t.user_attrs.get("duplicate_of", ""))
    refused = [r for r in rows if r["state"] == "infeasible"]
    assert refused[0]["reason"] == "breaks params <= 750" and refused[0]["params"] == "796.0"
    assert parent.data.metrics["trials_duplicate"] == 3 and parent.data.metrics["trials_infeasible"] == 1

    out = capsys.readouterr().out
    for t in trials:  # a line per trial while the sweep ran, before the final table
        assert -1 < out.find(f"\nt{t.number:02d} {t.user_attrs['state']}") < out.index("Pareto front"), out
    assert "6 trials: 2 complete, 3 duplicate, 1 infeasible" in out
    why = "the space is exhausted: all 3 architectures were tried; 4 of the requested 7 trials had nothing left to try"
    assert f"stopped early: {why}" in out and parent.data.tags["archsweep.stopped"] == why
    assert "1 infeasible: breaks params <= 750 (1)" in out


def test_a_replayed_sweep_counts_distinct_architectures_on_two_workers_and_stops_when_the_space_is_exhausted(
    workdir, capsys
):
    """Replayed from a made-up table (nothing trains): eight architectures, drawn at random,
    redrawn. Seven asked of two workers: seven evaluated, in passes until the repeats
    (answered, uncounted) are made up, none more. Twenty asked: the rest, then the sweep
    stops and says why, in its closing lines and on its parent run; run again, it draws
    nothing."""
    from runs.tags import STOPPED_TAG
    from search.sweep.study import counted
    from search.tables.table import save
    from tests.made_up import DIGITS_SPEC, digits_table

    save(digits_table()[1], workdir / "made-up.jsonl.gz")
    cut = ["model.embedding=patch", "model.patch_size=2", "model.positional=none"]
    cut += ["model.stages[0].depth=1", "model.stages[1].depth=0", "search.sampler=random"]
    cut += [f"search.replay={workdir / 'made-up.jsonl.gz'}", "tracking.dir=store", "tracking.models=none"]
    args = ["run", str(DIGITS_SPEC), *(a for o in cut for a in ("-o", o))]

    assert main.main([*args, "--workers", "2", "-o", "search.trials=7"]) == 0
    trials = study(workdir, "digits-table").trials
    repeats = [t for t in trials if state_of(t) == "duplicate"]
    # Whether a repeat falls in these seven depends on timing: a draw of an architecture
    # still running on the other worker is not answered from it (repeat_of reads finished trials).
    assert sum(counted(t) for t in trials) == 7 and len(trials) == 7 + len(repeats)
    _, parents, _ = runs_of(workdir, "digits-table")
    assert STOPPED_TAG not in parents[0].data.tags
    capsys.readouterr()

    assert main.main([*args, "-o", "search.trials=20"]) == 0
    trials = study(workdir, "digits-table").trials
    tried = {t.user_attrs["draw"] for t in trials if state_of(t) != "duplicate"}
    used = sum(counted(t) for t in trials)
    assert any(state_of(t) == "duplicate" for t in trials)  # 20 asked of 8: repeats, answered
    assert len(tried) == 8 and used < 20 and state_of(trials[-1]) != "duplicate"  # it stopped at the eighth
    why = f"the space is exhausted: all 8 architectures were tried; {20 - used} of the requested 20 trials"
    why += " had nothing left to try"
    assert f"stopped early: {why}" in capsys.readouterr().out
    _, parents, _ = runs_of(workdir, "digits-table")
    assert parents[0].data.tags[STOPPED_TAG] == why

    assert main.main([*args, "-o", "search.trials=20"]) == 0
    out = capsys.readouterr().out
    assert "sweep digits-table: 0 of 20 trials to run" in out and f"stopped early: {why}" in out
    assert len(study(workdir, "digits-table").trials) == len(trials)

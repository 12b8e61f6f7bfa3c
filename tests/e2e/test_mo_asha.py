"""Multi-objective successive halving (``pruner: mo_asha``) in real sweeps, on both backends:
trials pruned at rungs with MLflow saying where and why, the front intact, and the same
decisions on local and on Ray for one worker and one seed (replayed from a table, so that
both backends see the very same accuracies). The same sweeps continue: amended (trained)
and warm-started (replayed), on both backends; and the trained one is the two backends'
comparison on real training (the same draws, accuracies within a few points, front
models that reload, Tune's state readable without archsweep)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

import main
import search.sweep.ray.driver  # noqa: F401  sets Ray's environment before ray is imported
from runs.metrics import Objective
from search.pruners.mo_asha import MOASHA
from search.results import pareto
from search.sweep import pipeline, study
from search.tables.table import save
from tests.e2e.conftest import ROOT, runs_of
from tests.made_up import DIGITS_SPEC, digits_table

BACKENDS = ("local", "ray")


def _journal(folder, store: str, name: str) -> optuna.Study:
    backend = optuna.storages.journal.JournalFileBackend(str(folder / store / "optuna" / f"{name}.journal"))
    return optuna.load_study(study_name=name, storage=optuna.storages.JournalStorage(backend))


def _run(kind: str, spec, overrides: list[str]) -> None:
    args = ["run", str(spec), "-o", f"tracking.dir=store_{kind}", "-o", f"backend.kind={kind}"]
    args += ["-o", "backend.max_concurrent=1"] if kind == "ray" else []
    for o in overrides:
        args += ["-o", o]
    assert main.main(args) == 0


def _check_runs(folder, kind: str, experiment: str, trials: int) -> dict:
    """Every trial's MLflow run ended, pruned ones tagged with their rung and reason; the
    trials by number."""
    _, parents, children = runs_of(folder, experiment, f"store_{kind}")
    assert len(parents) == 1 and len(children) == trials
    assert {r.info.status for r in [*parents, *children]} == {"FINISHED"}
    by_number = {int(r.data.tags["archsweep.trial"]): r for r in children}
    assert len(by_number) == trials  # none duplicated
    for run in children:
        tags = run.data.tags
        if tags["archsweep.state"] == "pruned":
            assert tags["archsweep.reason"].startswith("pruned at rung") and int(tags["archsweep.rung"]) >= 1
        else:
            assert "archsweep.rung" not in tags
    return by_number


@pytest.mark.ray
def test_a_replayed_sweep_prunes_identically_on_local_and_on_ray(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("search.pruners.mo_asha.PROTECT", None)  # halving alone: it prunes at every rung
    spec, table = digits_table()
    save(table, tmp_path / "made-up.jsonl.gz")
    overrides = [f"search.replay={tmp_path / 'made-up.jsonl.gz'}", "search.pruner=mo_asha", "search.trials=24"]
    overrides += ["search.min_epochs=1", "search.reduction_factor=3"]
    seen = {}
    for kind in BACKENDS:
        _run(kind, DIGITS_SPEC, overrides)
        runs = _check_runs(tmp_path, kind, "digits-table", 24)
        journal = _journal(tmp_path, f"store_{kind}", "digits-table")
        seen[kind] = {
            t.number: (
                t.params,
                study.state_of(t),  # pruned at a rung, or a repeat (PRUNED to Optuna too)
                [entry[0] for entry in t.user_attrs.get("rungs", [])],
                t.user_attrs.get("reason", ""),
                runs[t.number].data.tags.get("archsweep.rung"),
            )
            for t in journal.trials
        }
    assert seen["local"] == seen["ray"]
    decisions = list(seen["local"].values())
    assert sum(state == "pruned" for _, state, *_ in decisions) >= 6  # it prunes, at more than one rung
    assert len({tuple(rungs) for _, state, rungs, *_ in decisions if state == "pruned"}) >= 2
    _assert_the_rules_decisions(_journal(tmp_path, "store_local", "digits-table"), table)

    # A sweep warm-started from it, on both backends: its front given to the sampler (not
    # trained, not counted), then the same draws and decisions on each.
    warm = [*overrides[:-1], "search.trials=3", "name=digits-warm", "search.warm_start.from=digits-table"]
    for kind in BACKENDS:
        _run(kind, DIGITS_SPEC, warm)
        journal = _journal(tmp_path, f"store_{kind}", "digits-warm")
        seen[kind] = [(t.params, t.state.name, t.user_attrs.get("warm_from")) for t in journal.trials]
    assert seen["local"] == seen["ray"]
    earlier = _journal(tmp_path, "store_local", "digits-table")
    given = [source for *_, source in seen["local"] if source]
    assert given == [f"digits-table:t{t.number:02d}" for t in earlier.best_trials]
    assert len(seen["local"]) == len(given) + 3


def test_a_resumed_sweep_judges_against_the_rungs_of_its_first_run(tmp_path, monkeypatch):
    """A sweep run to 10 trials, then resumed to 24: the second run's decisions are those
    of one rung book fed every trial in order, the first run's included."""
    monkeypatch.chdir(tmp_path)
    _, table = digits_table()
    save(table, tmp_path / "made-up.jsonl.gz")
    overrides = [f"search.replay={tmp_path / 'made-up.jsonl.gz'}", "search.pruner=mo_asha"]
    overrides += ["search.min_epochs=1", "search.reduction_factor=3"]
    for trials in (10, 24):
        _run("local", DIGITS_SPEC, [*overrides, f"search.trials={trials}"])
    _check_runs(tmp_path, "local", "digits-table", 24)
    _assert_the_rules_decisions(_journal(tmp_path, "store_local", "digits-table"), table)


def _assert_the_rules_decisions(journal: optuna.Study, table) -> None:
    """Fed the table's rows in trial order, every epoch (a continued trial's from the epoch
    after its pruned trial's), a fresh judge of the spec's pruner takes the study's
    decisions."""
    rows = table.by_key()
    judge = MOASHA(directions=["max", "min"], epochs=15, min_epochs=1, reduction_factor=3).judge(
        ["val_accuracy", "gmacs"]
    )
    for t in journal.trials:
        row = rows.get(t.user_attrs.get("draw"))
        if row is None or t.user_attrs.get("state") == "duplicate":
            continue
        continues = t.user_attrs.get("continues")
        start = pipeline.trained_epochs(journal.trials[continues]) if continues is not None else 0
        for epochs in range(start + 1, 16):
            metrics = {"val_accuracy": row.curve[epochs - 1], "gmacs": row.costs["gmacs"]}
            decision = judge.after_epoch(t.number, epochs, metrics, continues)
            if decision is not None and not decision.proceed:
                assert t.state == optuna.trial.TrialState.PRUNED and t.user_attrs["rungs"][-1][0] == epochs
                break
        else:
            assert t.state == optuna.trial.TrialState.COMPLETE


@pytest.mark.ray
def test_a_trained_sweep_prunes_at_rungs_keeps_its_front_and_continues_amended(tmp_path, monkeypatch):
    """Real training on both backends (the quickstart's space on digits at their own 8 x 8
    pixels, not upsampled: pruning is the subject here, not accuracy): trials pruned at
    rungs, the front made of complete trials only and equal to the front of the runs' own
    metrics. Then the sweep continues with an amended space (a removed positional encoding, a new mixer choice, a wider
    learning rate): the earlier trials kept or outside, none trained again. Halving alone
    decides (the forecast's protection, which would keep most of six trials going, is
    tested on replays: tests/search/pruners/test_forecast.py)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("search.pruners.mo_asha.PROTECT", None)
    overrides = [
        "data.image_size=8",
        "search.pruner=mo_asha",
        "search.min_epochs=1",
        "search.reduction_factor=3",
        "search.trials=6",
    ]
    overrides += ["train.epochs=3", "name=moasha"]
    amended = [*overrides[:-3], "search.trials=8", "train.epochs=3", "name=moasha"]
    amended += ["model.positional={choice: [learned, sincos, rope]}", "train.lr={float: [5.0e-4, 5.0e-3], log: true}"]
    amended += ["model.stages[1].mixer={choice: [attention, fourier, global_filter]}"]
    first = {}
    for kind in BACKENDS:
        _run(kind, ROOT / "spaces" / "quickstart.yaml", overrides)
        runs = first[kind] = _check_runs(tmp_path, kind, "quickstart", 6)
        states = [r.data.tags["archsweep.state"] for r in runs.values()]
        assert "pruned" in states and "complete" in states
        _assert_front(tmp_path, kind, runs)
        assert _journal(tmp_path, f"store_{kind}", "moasha").metric_names == ["val_accuracy", "gmacs"]
        _front_models_reload(runs_of(tmp_path, "quickstart", f"store_{kind}")[0], list(runs.values()), tmp_path / kind)
        before = {t.number: t for t in _journal(tmp_path, f"store_{kind}", "moasha").trials}

        if kind == "ray":  # a crash after the study's rebuild and Tune's set-aside, before Ray started
            with monkeypatch.context() as patched:
                patched.setattr("search.sweep.ray.driver.runtime", _crash)
                with pytest.raises(RuntimeError, match="crash"):
                    _run(kind, ROOT / "spaces" / "quickstart.yaml", amended)
        _run(kind, ROOT / "spaces" / "quickstart.yaml", amended)  # ... is undone by running again
        runs = _check_runs(tmp_path, kind, "quickstart", 8)
        after = {t.number: t for t in _journal(tmp_path, f"store_{kind}", "moasha").trials}
        expected = {n for n, t in before.items() if t.params["model.positional"] == "none" and t.state.name != "FAIL"}
        outside = {n for n, r in runs.items() if "archsweep.outside_space" in r.data.tags}
        assert expected and outside == expected == {n for n, t in after.items() if study.state_of(t) == "outside"}
        for n, t in before.items():  # not trained again: the same results and rung records
            assert after[n].user_attrs.get("rungs") == t.user_attrs.get("rungs")
            assert after[n].user_attrs.get("metrics") == t.user_attrs.get("metrics")
            assert runs[n].info.run_id == t.user_attrs["mlflow_run_id"]
        assert all(after[n].params["model.positional"] != "none" for n in (6, 7))
        _assert_front(tmp_path, kind, runs)
    _assert_the_same_kind_of_result(first)
    # Ray's new Tune experiment (trials 6 and 7) opens without archsweep, the earlier one is kept beside it
    isolated = [sys.executable, "-I", "-c", OPEN_TUNE_STATE, str(tmp_path / "store_ray" / "ray" / "moasha")]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    opened = subprocess.run(isolated, cwd="/tmp", env=env, capture_output=True, text=True, timeout=120)
    assert opened.stdout.splitlines() == ["[6, 7] [6, 7]", "8 searcher trials"], opened.stderr[-3000:]
    assert [p.name for p in (tmp_path / "store_ray" / "ray").glob("moasha~*")] == [after_archive(tmp_path)]


def _crash(backend):
    raise RuntimeError("crash")


def after_archive(folder) -> str:
    """The journal's one archive of the amended study (the crashed run's, taken up again):
    the name Ray's earlier experiment took."""
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(folder / "store_ray" / "optuna" / "moasha.journal"))
    )
    (archive,) = [s.study_name for s in optuna.get_all_study_summaries(storage) if "~" in s.study_name]
    return archive


def _assert_the_same_kind_of_result(first: dict) -> None:
    """Same spec, same seed: the same architectures for NSGA-II's first generation (4
    trials, drawn before any result), and accuracies within a few points where both
    backends trained a trial as far (the ray workers train with one thread each, so sums
    round differently)."""
    local, ray = first["local"], first["ray"]
    for number in range(4):
        assert ray[number].data.params == local[number].data.params
        assert ray[number].data.tags["archsweep.arch"] == local[number].data.tags["archsweep.arch"]
    for number, run in local.items():
        same = ray[number].data.tags["archsweep.state"] == run.data.tags["archsweep.state"] == "complete"
        if same and ray[number].data.params == run.data.params:
            assert set(ray[number].data.metrics) == set(run.data.metrics)
            assert abs(ray[number].data.metrics["val_accuracy"] - run.data.metrics["val_accuracy"]) < 0.05


def _front_models_reload(client, children, folder: Path) -> None:
    """Every Pareto trial's logged model, reloaded, gives the logits its trial recorded."""
    import mlflow.artifacts
    import mlflow.pytorch
    import torch

    front = [r for r in children if r.data.tags.get("archsweep.pareto") == "true"]
    assert front and all("archsweep.model" in r.data.tags for r in front)
    for run in front:
        model = client.get_logged_model(run.data.tags["archsweep.model"])
        assert model.source_run_id == run.info.run_id
        model_dir = mlflow.artifacts.download_artifacts(model.artifact_location, dst_path=str(folder / run.info.run_id))
        probe = torch.load(Path(model_dir) / "probe.pt", weights_only=True)
        with torch.no_grad():
            logits = mlflow.pytorch.load_model(model_dir)(probe["x"])
        assert torch.allclose(logits, probe["logits"], rtol=1e-4, atol=1e-5)


# What a user does to look at a finished sweep's Tune state, run where archsweep cannot be
# imported: Tune's experiment state, its tuner.pkl, and the searcher's state.
OPEN_TUNE_STATE = """
import pickle, sys
from pathlib import Path
from ray import tune
try:
    import search
    sys.exit("archsweep is importable here")
except ImportError:
    pass
def trainable(config):
    pass
path = sys.argv[1]
analysis = tune.ExperimentAnalysis(path)
grid = tune.Tuner.restore(path, trainable=trainable).get_results()
searcher = pickle.loads(next(Path(path).glob("searcher-state-*.pkl")).read_bytes())
print(sorted(t.config["number"] for t in analysis.trials), sorted(r.config["number"] for r in grid))
print(len(searcher["_ot_study"].trials), "searcher trials")
"""


def _assert_front(folder, kind: str, runs: dict) -> None:
    """The Pareto tags are the front of the complete trials' own metrics (earlier trials
    outside an amended space included), and Optuna's front those of them inside it."""
    objectives = [Objective("val_accuracy", "max"), Objective("gmacs", "min")]
    complete = [r for r in runs.values() if r.data.tags["archsweep.state"] == "complete"]
    metrics = [r.data.metrics for r in complete]
    front = {complete[i].data.tags["archsweep.trial"] for i in pareto.nondominated(metrics, objectives)}
    marked = {r.data.tags["archsweep.trial"] for r in runs.values() if r.data.tags.get("archsweep.pareto") == "true"}
    assert marked == front
    inside = {n for n in front if "archsweep.outside_space" not in runs[int(n)].data.tags}
    found = _journal(folder, f"store_{kind}", "moasha")
    if inside == front:  # Optuna's own front agrees (it cannot see trials outside the space)
        assert {str(t.number) for t in found.best_trials} == front

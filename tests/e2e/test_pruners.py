"""A pruner of Optuna's kind on the Ray backend: the registry's Tune scheduler
(``Pruner.tune_scheduler``) stops trials of a real sweep, replayed from a table, and the
bookkeeper ends their runs pruned. (Every pruner's decisions as the local backend takes
them are the contract test's, tests/search/pruners, on replays.)"""

from __future__ import annotations

import pytest

import main
import search.sweep.ray.driver  # noqa: F401  sets Ray's environment before ray is imported
from search.tables.table import save
from tests.e2e.conftest import runs_of
from tests.made_up import DIGITS_SPEC, EPOCHS, digits_table

TRIALS = 16


@pytest.mark.ray
def test_asha_on_ray_stops_trials_early_and_their_runs_say_so(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _, table = digits_table()
    save(table, tmp_path / "made-up.jsonl.gz")
    args = ["run", str(DIGITS_SPEC), "-o", "backend.kind=ray", "-o", "backend.max_concurrent=2"]
    overrides = [f"search.replay={tmp_path / 'made-up.jsonl.gz'}", "search.pruner=asha", f"search.trials={TRIALS}"]
    overrides += ["objectives=[{val_accuracy: max}]", "search.sampler=random", "tracking.dir=store"]
    assert main.main([*args, *(a for o in overrides for a in ("-o", o))]) == 0
    client, parents, children = runs_of(tmp_path, "digits-table")
    assert len(parents) == 1 and len(children) == TRIALS
    assert {r.info.status for r in [*parents, *children]} == {"FINISHED"}
    epochs = {  # the epochs each logged (0-based steps; the outcome is logged again at the end)
        r.info.run_id: len({m.step for m in client.get_metric_history(r.info.run_id, "val_accuracy")} - {EPOCHS})
        for r in children
        if r.data.tags["archsweep.state"] in ("pruned", "complete")
    }
    pruned = [r for r in children if r.data.tags["archsweep.state"] == "pruned"]
    assert pruned, "ASHA stopped nothing"
    for run in pruned:  # stopped by Tune's scheduler after an epoch before the last
        assert run.data.tags["archsweep.reason"].startswith("stopped early after epoch")
        assert 1 <= epochs[run.info.run_id] < EPOCHS
    assert all(epochs[r.info.run_id] == EPOCHS for r in children if r.data.tags["archsweep.state"] == "complete")

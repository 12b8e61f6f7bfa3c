"""The real quickstart in several settings, side by side: each sweep trains into a store of
its own (``out/bench/quickstart/<setting>``), then each front is read back from its MLflow
store (``main.py show``'s reading) and their hypervolumes are taken at one reference
point, the joint front's nadir moved out by 1% of its range. A setting is a sampler, with
``+pruner`` for a pruned sweep; the epochs each sweep trained are read from its study
(a continued trial counts only the epochs it trained on top of the pruned one). Each
setting starts from an empty store (until 2026-12-07 a second run resumed the first's).

    .venv/bin/python -m bench.quickstart nsga2 frontier            # two real sweeps: minutes
    .venv/bin/python -m bench.quickstart frontier frontier+mo_asha  # pruned against unpruned
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import optuna

from runs.journal import journal_path, journal_storage
from search.results import review
from search.results.pareto import hypervolume_at, nondominated
from search.sweep import pipeline
from search.sweep.study import state_of

ROOT = Path(__file__).resolve().parents[1]
NAME = "quickstart"


def epochs_trained(store: Path) -> tuple[int, dict[str, int]]:
    """(epochs the sweep trained, its trials by state) from its Optuna journal."""
    study = optuna.load_study(study_name=NAME, storage=journal_storage(journal_path(store, NAME)))
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    total, states = 0, {}
    for t in trials.values():
        state = state_of(t)
        states[state] = states.get(state, 0) + 1
        if state == "complete":
            reached = int(t.user_attrs.get("metrics", {}).get("epochs", 0))
        elif state == "pruned":
            reached = pipeline.trained_epochs(t)
        else:  # answered, refused or failed before training
            continue
        before = trials.get(t.user_attrs.get(pipeline.CONTINUES_ATTR))
        total += reached - (pipeline.trained_epochs(before) if before is not None else 0)
    return total, states


def compare(settings: list[str], out: Path = ROOT / "out" / "bench" / "quickstart") -> list[dict]:
    fronts, rows = {}, []
    for setting in settings:
        if not re.fullmatch(r"[a-z0-9_]+(\+[a-z0-9_]+)?", setting):
            raise SystemExit(f"a setting is a sampler, with +pruner for a pruned sweep (frontier+mo_asha): {setting!r}")
        sampler, _, pruner = setting.partition("+")
        store = out / setting
        # A fresh store: a sweep run again resumes its store, which would keep trials an
        # earlier run (and earlier code) drew. Only the bench's own folder is removed.
        if store.is_dir() and not store.is_symlink():
            shutil.rmtree(store)
        started = time.perf_counter()
        overrides = [f"search.sampler={sampler}", f"search.pruner={pruner or 'none'}", f"tracking.dir={store}"]
        command = [sys.executable, str(ROOT / "main.py"), "run", str(ROOT / "spaces" / "quickstart.yaml")]
        if subprocess.run([*command, *(a for o in overrides for a in ("-o", o))], cwd=ROOT).returncode:
            raise SystemExit(f"the {setting} sweep failed")
        wall = time.perf_counter() - started
        with review.opened(str(store), None) as uri:
            _, objectives, fronts[setting] = review.front(uri, NAME)
        epochs, states = epochs_trained(store)
        rows.append({"setting": setting, "wall_s": wall, "epochs": epochs, "trials": states})
    joint = [r for front in fronts.values() for r in front]
    joint = [joint[i] for i in nondominated(joint, objectives)]
    reference = []
    for o in objectives:
        values = [r[o.metric] for r in joint]
        worst, best = (min(values), max(values)) if o.direction == "max" else (max(values), min(values))
        reference.append(worst - 0.01 * (best - worst))
    whole = hypervolume_at(joint, objectives, reference)
    for row in rows:
        front = fronts[row["setting"]]
        hv = hypervolume_at(front, objectives, reference)
        best = max(r["val_accuracy"] for r in front)
        row |= {"hypervolume": hv, "share_of_joint": hv / whole, "front": len(front), "best_accuracy": best}
        print(row)
    print("reference", reference)
    return rows


if __name__ == "__main__":
    compare(sys.argv[1:] or ["nsga2", "frontier"])

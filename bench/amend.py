"""Amended resume and warm start, measured on the recorded digits table (replayed: nothing
trains): ``python main.py bench amend``.

The earlier sweep searches a narrower space than the table's: no Performer in the first
stage, width 32 only, learned positions only. The amendment adds the mixer (a new
choice), width 64 (a widened choice) and positional none (a new dimension, the earlier
trials having had learned): the table's whole space. Per seed:

- amended: the earlier sweep, then the same study continued by an amended resume
  (``search.sweep.amend``): how many new evaluations until the hypervolume is back at the
  earlier sweep's final one (every earlier trial is compatible, so none), and the curve;
- fresh: a new sweep over the amended space, the baseline: evaluations to reach it;
- warm and cold: a new sweep over the amended space, warm-started with every result of
  the earlier one (``search.sweep.warm``), against one started cold; evaluations until
  the cold sweep's final hypervolume.

Hypervolumes are against the table's exact front and reference point (as ``bench search``).
"""

from __future__ import annotations

import copy
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

from bench.common import Env, pyplot, save_figure, write_csv
from search.results.pareto import hypervolume_at
from search.spec import load as load_spec
from search.sweep import amend, study, warm
from search.sweep.preflight import spec_changes
from search.sweep.replay import replay
from search.tables.table import exact_front, nadir
from search.tables.table import load as load_table

ROOT = Path(__file__).resolve().parents[1]
TABLE_SPEC = ROOT / "spaces" / "tables" / "digits.yaml"
TABLE = ROOT / "spaces" / "tables" / "digits.jsonl.gz"
EARLIER, AFTER, COLD = 60, 60, 150  # evaluations: the earlier sweep, after the amendment, the cold sweep
SEEDS = 10


def _specs(edit=lambda raw: None):
    """(earlier spec, amended spec): the narrower space and the table's own, both changed
    in place by ``edit`` first (a test's other objectives or pruner)."""

    raw = yaml.safe_load(TABLE_SPEC.read_text())
    edit(raw)
    narrow = copy.deepcopy(raw)
    stage = narrow["model"]["stages"][0]
    stage["mixer"]["choice"] = [m for m in stage["mixer"]["choice"] if "performer" not in str(m)]
    stage["width"] = 32
    narrow["model"]["positional"] = "learned"
    with tempfile.TemporaryDirectory() as folder:
        specs = []
        for name, space in (("narrow", narrow), ("table", raw)):
            path = Path(folder) / name / "digits.yaml"
            path.parent.mkdir()
            path.write_text(yaml.safe_dump(space, sort_keys=False))
            specs.append(load_spec(path, check_data=False, check_store=False))
    return tuple(specs)


def _with(spec, seed: int, trials: int):
    from dataclasses import replace

    return replace(spec, search=replace(spec.search, sampler="nsga2", seed=seed, trials=trials))


def _records(result, given: list[dict] = ()) -> list[tuple[int, dict | None]]:
    """(trained, metrics of a complete trial or None) per trial, given results first."""
    return [(0, m) for m in given] + [
        (int(t.epochs > 0), t.metrics if t.state == "complete" else None) for t in result.trials
    ]


def _hv_by_evaluations(records, objectives, ref) -> list[tuple[int, float]]:
    """(evaluations so far, hypervolume) after each trial."""

    out, done, evaluations = [], [], 0
    for trained, metrics in records:
        evaluations += trained
        if metrics is not None:
            done.append(metrics)
        out.append((evaluations, hypervolume_at(done, objectives, ref) if done else 0.0))
    return out


def _reached(curve, target: float) -> float:
    """Evaluations until the hypervolume reached ``target`` (inf if never)."""
    return next((e for e, hv in curve if hv >= target - 1e-12), float("inf"))


def _seed(seed: int, earlier_spec, spec, table, ref, exact) -> dict:
    import optuna

    objectives = spec.objectives
    first = replay(_with(earlier_spec, seed, EARLIER), table)
    before = [t for t in first.study.get_trials(deepcopy=False)]
    earlier_hv = _hv_by_evaluations(_records(first), objectives, ref)[-1][1]
    # amended resume: the same study rebuilt for the amended space, then continued
    amended_spec = _with(spec, seed, EARLIER + AFTER)
    changes = spec_changes(earlier_spec.resolved, amended_spec.resolved)
    plan = amend.plan(earlier_spec.resolved, amended_spec, changes, before)
    storage = first.study._storage
    amend.rebuild(storage, amended_spec, plan, study.directions(amended_spec))
    sampler = study.sampler_for(amended_spec, drawn=len(before))
    into = optuna.load_study(study_name=amended_spec.name, storage=storage, sampler=sampler)
    kept = [t.user_attrs["metrics"] for t in into.get_trials(deepcopy=False) if study.state_of(t) == "complete"]
    continued = replay(amended_spec, table, trials=AFTER, into=into)
    amended = _hv_by_evaluations(_records(continued, kept), objectives, ref)
    fresh = _hv_by_evaluations(_records(replay(_with(spec, seed + 1000, COLD), table)), objectives, ref)
    # warm start against cold, over the amended space
    cold = fresh
    warm_study = study.create(_with(spec, seed + 2000, COLD), optuna.storages.InMemoryStorage())
    warm_study.sampler = study.sampler_for(_with(spec, seed + 2000, COLD))
    given, _, outside = warm.give(warm_study, spec, "earlier", earlier_spec.resolved, before, "all")
    taken = [t.user_attrs["metrics"] for t in warm_study.get_trials(deepcopy=False)]
    warmed = replay(_with(spec, seed + 2000, COLD), table, trials=COLD, into=warm_study)
    warm_curve = _hv_by_evaluations(_records(warmed, taken), objectives, ref)
    cold_final = cold[-1][1]
    curves = {"amended": amended, "fresh": fresh, "warm": warm_curve}
    return curves, {
        "seed": seed,
        "earlier_trials": EARLIER,
        "earlier_hv_ratio": earlier_hv / exact,
        "kept": len(plan.kept),
        "outside": len(plan.outside),
        "amended_evals_to_earlier_hv": _reached(amended, earlier_hv),
        "fresh_evals_to_earlier_hv": _reached(fresh, earlier_hv),
        "amended_hv_ratio_after": amended[-1][1] / exact,
        "fresh_hv_ratio_at_same_evals": _at(fresh, AFTER) / exact,
        "cold_trials": COLD,
        "cold_hv_ratio": cold_final / exact,
        "warm_given": given,
        "warm_evals_to_cold_hv": _reached(warm_curve, cold_final),
    }


def _at(curve, evaluations: int) -> float:
    """The hypervolume after ``evaluations`` evaluations."""
    return max((hv for e, hv in curve if e <= evaluations), default=0.0)


def _plot(curves: list[dict], exact: float, path: Path) -> None:
    """Median hypervolume ratio against new evaluations: amended and warm-started sweeps
    against a fresh one (the fresh sweep is also the cold one)."""

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, style in (("amended", "-"), ("warm", "--"), ("fresh", ":")):
        grid = np.arange(0, (AFTER if name == "amended" else COLD) + 1)  # as far as each ran
        steps = [[max((hv for e, hv in c[name] if e <= x), default=0.0) / exact for x in grid] for c in curves]
        ax.plot(grid, np.median(steps, axis=0), style, label=name)
    ax.set_xlabel("evaluations (trainings) in the new sweep")
    ax.set_ylabel("hypervolume / exact front's (median over seeds)")
    ax.set_title("digits table: amended, warm-started and fresh sweeps")
    ax.legend()
    save_figure(fig, path)


def run(out: Path, *, quick: bool = False, console=None, seeds: int = SEEDS, **_) -> list[dict]:
    """Every seed's row, and the medians, to CSV; the summary rows returned."""
    global EARLIER, AFTER, COLD

    say = console.print if console is not None else print
    if quick:
        EARLIER, AFTER, COLD, seeds = 12, 8, 20, 1
    earlier_spec, spec = _specs()
    table = load_table(TABLE)
    front = exact_front(table, spec.objectives)
    ref = nadir(front, spec.objectives)
    exact = hypervolume_at([r.metrics() for r in front], spec.objectives, ref)
    started = time.perf_counter()
    results = [_seed(seed, earlier_spec, spec, table, ref, exact) for seed in range(seeds)]
    rows = [row for _, row in results]
    _plot([curves for curves, _ in results], exact, out / "amend.png")
    median = {k: float(np.median([r[k] for r in rows])) for k in rows[0] if k != "seed"}
    env = Env.current("cpu", 1)
    write_csv(out / "amend.csv", [*rows, {"seed": "median", **median}], env)
    say(f"bench amend: {seeds} seeds in {time.perf_counter() - started:.0f} s")
    return [{"seed": "median", **{k: round(v, 4) for k, v in median.items()}}]

"""bench search: how much of a table's exact Pareto front each search strategy finds, for
how many evaluations and how much training (``search.md`` gives the conventions).

Every run is a replay (``search.sweep.replay``): the sweep's own samplers, rung book and
outcomes, with results read from a recorded table instead of training. Per table, per
strategy (a sampler, with or without MO-ASHA), per seed, the hypervolume the completed
trials dominate is taken at a fixed reference point and compared with the table's exact
front's: regret = exact - found, as a function of trials, of evaluations (trials that
trained: a repeated draw is answered free) and of cumulative training epochs.

Strategies: the registered samplers (with and without MO-ASHA on digits) and, as peers,
pymoo's SMS-EMOA and NSGA-II (``bench.peers``), all counted in distinct evaluations.

Tables:
- ``digits``: archsweep's own recorded table (``spaces/tables/digits.jsonl.gz``, its space
  ``spaces/tables/digits.yaml``), val_accuracy up and GMACs down, reference point the
  exact front's nadir moved out by 1% of its range (``table.nadir``).
- ``nb201``: NAS-Bench-201's 15,625 cells (analog-nasbench), CIFAR-10 accuracy up and conv
  cost down, reference (0.80, 55) as ``search.md`` states. One accuracy per cell and no
  curve, so MO-ASHA has nothing to prune there and only the samplers are compared; the
  random baseline is also drawn past the budget (plain uniform draws, which is what
  RandomSampler does) to find where it reaches each threshold.
"""

from __future__ import annotations

import math
import multiprocessing
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import replace
from pathlib import Path

import numpy as np
import optuna
from optuna.distributions import CategoricalDistribution

from bench import peers, proxies, surrogate
from bench.common import Env, pyplot, save_figure, write_csv
from runs.metrics import Objective
from search import samplers
from search.pruners.mo_asha import MOASHA
from search.results.pareto import hypervolume_at
from search.samplers import Described, Exact, Knowledge
from search.spec import load as load_spec
from search.spec.space import sample
from search.sweep import budget, study
from search.sweep.pipeline import draw_key
from search.sweep.replay import Halving, replay, replay_cells
from search.tables.nb201 import EDGES, OPS, cell_key, load_nb201, path_features
from search.tables.table import Table, exact_front, nadir, seed_noise
from search.tables.table import load as load_table

ROOT = Path(__file__).resolve().parents[1]
DIGITS_SPEC = ROOT / "spaces" / "tables" / "digits.yaml"
DIGITS_TABLE = ROOT / "spaces" / "tables" / "digits.jsonl.gz"
NB201_REFERENCE = (0.80, 55.0)
THRESHOLDS = (0.90, 0.99, 0.999)
SAMPLERS = ("random", "tpe", "tpe_multivariate", "nsga2", "gp", "frontier", "frontier_ehvi")
# Distinct evaluations per run (a repeated draw is answered free and not counted). GP's ask
# grows with the trials told (a GP fit per ask) and TPE's past a thousand or so; the
# frontier sampler's NB201 targets are at 250 and 800 (its ask is timed at 1,000): they
# get fewer, so that the whole matrix runs in minutes.
BUDGET = {"digits": 250, "nb201": 2000}
# Random search gets more on digits, to see where it reaches each threshold.
SMALLER = {
    ("digits", "gp"): 30,
    ("nb201", "gp"): 30,
    ("nb201", "tpe"): 500,
    ("nb201", "tpe_multivariate"): 500,
    ("nb201", "frontier"): 1000,
    ("nb201", "frontier_ehvi"): 800,
    ("digits", "random"): 1200,
}
PRUNED_ROWS = ("random", "nsga2", "frontier")  # each also with MO-ASHA on digits
ASK_AT = 1000  # the sampler's own time per ask is read over the trials just before this many
REPEATS = 20  # a replay stops after this many repeats in a row (a sweep: budget.REPEATS)
RANDOM_FAR = 40_000  # plain random draws on nb201, for its thresholds past the budget
SEEDS = 10
# MO-ASHA's (min_epochs, reduction_factor): the schema's defaults in the main matrix, and
# these settings beside them, with random search, to show what the defaults rest on.
HALVINGS = ((1, 3), (2, 2), (2, 3), (3, 3))
HALVINGS_TOO = False  # those rows measure MO-ASHA (BENCHMARKS.md, 2026-12-06 first run); off: minutes


def _tables(quick: bool) -> dict:
    """name -> (table, objectives, reference point, exact hypervolume, exact front keys)."""

    out = {}
    spec = load_spec(DIGITS_SPEC)
    digits = load_table(DIGITS_TABLE) if DIGITS_TABLE.exists() else None
    if digits is not None:
        front = exact_front(digits, spec.objectives)
        ref = nadir(front, spec.objectives)
        exact = hypervolume_at([r.metrics() for r in front], spec.objectives, ref)
        out["digits"] = (digits, spec.objectives, ref, exact, {r.key for r in front}, spec)
    nb201 = load_nb201()
    objectives = (Objective("val_accuracy", "max"), Objective("cost", "min"))
    front = exact_front(_best_per_cost(nb201), objectives)
    exact = hypervolume_at([r.metrics() for r in front], objectives, NB201_REFERENCE)
    out["nb201"] = (nb201, objectives, NB201_REFERENCE, exact, {r.key for r in front}, None)
    return out


def _best_per_cost(table):
    """Only rows that are the most accurate at their cost: the same front, found fast."""

    best: dict[float, float] = {}
    for r in table.rows:
        best[r.costs["cost"]] = max(best.get(r.costs["cost"], -1.0), r.curve[-1])
    return Table(table.name, tuple(r for r in table.rows if r.curve[-1] == best[r.costs["cost"]]))


def _default_halving() -> tuple[int, int]:

    return MOASHA.halving


def _replay(name: str, tables: dict, sampler_name: str, halving: tuple | None, seed: int, trials: int):
    """One replayed sweep: its trials (state, epochs trained, metrics, row key)."""

    table, objectives, *_, spec = tables[name]
    if sampler_name in peers.ALGORITHMS:
        choices, key = _encoding(spec)
        records = peers.replay(sampler_name, table.by_key(), choices, key, objectives, seed=seed, evaluations=trials)
        return records, math.nan
    if spec is not None:
        search = replace(spec.search, sampler=sampler_name, seed=seed, trials=trials)
        result = replay(replace(spec, search=search), table, halving=Halving(*halving) if halving else None)
        keys = [t.user_attrs.get("draw") for t in result.study.trials]
    else:
        judge = None
        if halving:  # (NB201 has one point per curve: no rung below its last epoch)
            epochs = max(len(r.curve) for r in table.rows)
            pruner = MOASHA(
                directions=[o.direction for o in objectives],
                epochs=epochs,
                min_epochs=halving[0],
                reduction_factor=halving[1],
            )
            judge = pruner.judge([o.metric for o in objectives])
        kind = samplers.SAMPLERS[sampler_name]
        knowledge = nb201_knowledge() if kind.informed else None
        result = replay_cells(
            table,
            {edge: OPS for edge in EDGES},
            cell_key,
            objectives,
            sampler=kind(seed=seed, trials=trials, knowledge=knowledge).build(),
            trials=trials,
            judge=judge,
        )
        keys = [cell_key([t.params[e] for e in EDGES]) for t in result.study.trials]
    records = [(t.state, t.epochs, t.metrics, k) for t, k in zip(result.trials, keys, strict=True)]
    return records, _ask_ms(result.study)


def _ask_ms(study: optuna.Study) -> float:
    """The median time from ask to tell (the sampler's own work: a replayed trial costs
    microseconds) over the 50 trials before the ``ASK_AT``-th; NaN for a shorter run."""
    trials = study.get_trials(deepcopy=False)
    if len(trials) < ASK_AT:
        return math.nan
    spans = [(t.datetime_complete - t.datetime_start).total_seconds() for t in trials[ASK_AT - 50 : ASK_AT]]
    return 1e3 * float(np.median(spans))


def nb201_knowledge() -> Knowledge:
    """What an informed sampler knows of an NB201 cell before training: its ops (one
    choice per edge), its conv cost (the formula, exact), and its routes from input to
    output as features (``nb201.path_features``)."""

    def ops(params) -> list[str]:
        return [params[e] for e in EDGES]

    def exact(params) -> Exact:
        cell = ops(params)
        return Exact({"cost": 9.0 * cell.count("nor_conv_3x3") + cell.count("nor_conv_1x1")})

    return Knowledge(
        {e: CategoricalDistribution(OPS) for e in EDGES},
        (("val_accuracy", "max"), ("cost", "min")),
        lambda params: Described(cell_key(ops(params)), dict(params)),
        exact,
        new_costs_per_ask=len(OPS) ** len(EDGES),  # a formula: every cell costed at once
        features=lambda params: path_features(ops(params)),
    )


def _encoding(spec) -> tuple[list[int], Callable[[list[int]], str]]:
    """How the peers see a table's space: option counts per dimension, and the row key of
    a vector of option indices (NB201: an op per edge; a spec: its finite grid, each
    vector made into the draw a sweep would make of those parameters)."""
    if spec is None:
        return [len(OPS)] * len(EDGES), lambda x: cell_key([OPS[i] for i in x])
    grid = study.grid_space(spec)

    def key(x: list[int]) -> str:
        fixed = optuna.trial.FixedTrial({name: values[i] for (name, values), i in zip(grid.items(), x, strict=True)})
        return draw_key(sample(spec.model, fixed, "model"), sample(spec.train, fixed, "train"))

    return [len(values) for values in grid.values()], key


def _points(trials: int) -> list[int]:
    """Where a curve is read: about 40 trial counts, log-spaced, the last one included."""
    return sorted({*np.unique(np.geomspace(1, trials, 40).astype(int)).tolist(), trials})


def _curve(records, objectives, ref, exact: float, front_keys: set) -> list[dict]:
    """Hypervolume ratio at each read point and at every trial that moves the front (so
    that what any hypervolume cost is read exactly, not at the next point), with
    evaluations (distinct architectures trained: a continued pruned trial is the same
    evaluation, its epochs are counted) and epochs spent so far."""

    rows, front, epochs, pruned_front, found, trained_keys = [], [], 0, set(), set(), set()
    points, hv = set(_points(len(records))), 0.0
    signs = [-1.0 if o.direction == "max" else 1.0 for o in objectives]
    for i, (state, trained, metrics, key) in enumerate(records, start=1):
        if trained > 0:
            trained_keys.add(key)
        epochs += trained
        moved = False
        if state == "complete":
            found |= {key} & front_keys
            point = tuple(s * metrics[o.metric] for s, o in zip(signs, objectives, strict=True))
            if not any(all(f <= p for f, p in zip(other, point, strict=True)) for other, _ in front):
                front = [(o, m) for o, m in front if not all(p <= f for p, f in zip(point, o, strict=True))]
                front.append((point, metrics))
                hv = hypervolume_at([m for _, m in front], objectives, ref)  # only when the front moves
                moved = True
        elif state == "pruned" and key in front_keys:
            pruned_front.add(key)
        evaluations = len(trained_keys)
        if i in points or moved:
            rows.append(
                {
                    "trials": i,
                    "evaluations": evaluations,
                    "epochs": epochs,
                    "hv_ratio": hv / exact,
                    "regret": exact - hv,
                    "front_found": len(found),
                    "front_pruned": len(pruned_front - found),
                }
            )
    return rows


def _job(args) -> list[dict]:
    import torch

    torch.set_num_threads(1)  # one core per process: GP's fits would oversubscribe the machine
    budget.REPEATS = REPEATS  # GP redraws its best point, a fit per draw: stop it sooner than a sweep
    name, sampler_name, halving, seed, trials, quick = args
    tables = _TABLES.get(quick) or _TABLES.setdefault(quick, _tables(quick))
    _, objectives, ref, exact, front_keys, _ = tables[name]
    started = time.perf_counter()
    records, ask_ms = _replay(name, tables, sampler_name, halving, seed, trials)
    wall = time.perf_counter() - started
    strategy = sampler_name
    if halving:
        strategy += "+mo_asha" + ("" if halving == _default_halving() else f"({halving[0]},{halving[1]})")
    return [
        {"table": name, "strategy": strategy, "seed": seed, **row, "wall_s": wall, "ask_ms": ask_ms}
        for row in _curve(records, objectives, ref, exact, front_keys)
    ]


_TABLES: dict = {}  # per worker process


def _random_far(table, objectives, ref, exact: float, seed: int, draws: int) -> list[dict]:
    """Plain uniform draws over the table (RandomSampler's distribution, without Optuna's
    per-trial cost), far past the bench budget: where random search reaches a threshold."""

    drawn = np.random.default_rng(seed).integers(0, len(table.rows), size=draws)
    rows, seen, kept, before = [], set(), [], 0
    for i in _points(draws):
        for j in drawn[before:i]:
            if j not in seen:
                seen.add(j)
                kept.append(table.rows[j].metrics())
        before = i
        hv = hypervolume_at(kept, objectives, ref)
        rows.append({"trials": i, "evaluations": len(seen), "epochs": len(seen), "hv_ratio": hv / exact})
    return rows


def _reached(curve: list[dict], threshold: float, axis: str) -> float:
    """The first ``axis`` value at which the curve reaches ``threshold`` of the exact HV."""
    for row in curve:
        if row["hv_ratio"] >= threshold - 1e-12:
            return float(row[axis])
    return math.inf


def _quartiles(values) -> tuple[float, float, float]:
    """Quartiles without interpolation (a seed that never reached a threshold is inf)."""
    values = np.asarray(values, dtype=float)
    return tuple(
        float(np.percentile(values, q, method="inverted_cdf")) if len(values) else math.nan for q in (25, 50, 75)
    )


def _summary(curves: dict, far: dict) -> list[dict]:
    """Per table and strategy: medians [IQR] over seeds of what each threshold cost."""
    rows = []
    for (name, strategy), by_seed in sorted(curves.items()):
        last = [c[-1] for c in by_seed.values()]
        row = {"table": name, "strategy": strategy, "seeds": len(by_seed), "trials": last[0]["trials"]}
        for t in THRESHOLDS:
            for axis in ("evaluations", "epochs"):
                reached = [_reached(c, t, axis) for c in by_seed.values()]
                q1, med, q3 = _quartiles(reached)
                row[f"{axis}_to_{t:g}"] = med
                row[f"{axis}_to_{t:g}_iqr"] = f"{q1:g}-{q3:g}"
        for key in ("hv_ratio", "evaluations", "epochs", "front_found", "front_pruned"):
            row[f"final_{key}"] = _quartiles([r[key] for r in last])[1]
        row["max_front_pruned"] = max(r["front_pruned"] for r in last)
        unpruned = curves.get((name, strategy.split("+")[0])) if "+" in strategy else None
        if unpruned:  # epochs to the same seed's unpruned final HV, as a share of the unpruned epochs
            shares = [
                _reached(c, unpruned[seed][-1]["hv_ratio"], "epochs") / unpruned[seed][-1]["epochs"]
                for seed, c in by_seed.items()
                if seed in unpruned
            ]
            q1, med, q3 = _quartiles(shares)
            row["epochs_to_unpruned_hv"], row["epochs_to_unpruned_hv_iqr"] = med, f"{q1:.3g}-{q3:.3g}"
        row["wall_s_per_run"] = _quartiles([c[-1]["wall_s"] for c in by_seed.values()])[1]
        row[f"ask_ms_at_{ASK_AT}"] = _quartiles([c[-1]["ask_ms"] for c in by_seed.values()])[1]
        rows.append(row)
    for name, by_seed in far.items():
        row = {"table": name, "strategy": "random (uniform draws, past the budget)", "seeds": len(by_seed)}
        row["trials"] = by_seed[0][-1]["trials"]
        for t in THRESHOLDS:
            q1, med, q3 = _quartiles([_reached(c, t, "evaluations") for c in by_seed])
            row[f"evaluations_to_{t:g}"], row[f"evaluations_to_{t:g}_iqr"] = med, f"{q1:g}-{q3:g}"
        rows.append(row)
    return rows


def _plot(curves: dict, tables: dict, out: Path) -> None:
    plt = pyplot()
    names = sorted({name for name, _ in curves})
    fig, axes = plt.subplots(len(names), 2, figsize=(12, 4.5 * len(names)), squeeze=False)
    for row, name in enumerate(names):
        ref = tables[name][2]
        for col, axis in enumerate(("evaluations", "epochs")):
            ax = axes[row][col]
            if axis == "epochs" and name == "nb201":
                ax.text(0.5, 0.5, "one accuracy per cell: no epochs, nothing to prune", ha="center", va="center")
                ax.set_axis_off()
                continue
            for (table, strategy), by_seed in sorted(curves.items()):
                if table != name:
                    continue
                grid = np.unique(np.concatenate([[r[axis] for r in c] for c in by_seed.values()]))
                grid = grid[grid > 0]
                regrets = np.array([_step(c, axis, grid) for c in by_seed.values()])
                q1, med, q3 = np.percentile(regrets, [25, 50, 75], axis=0)
                style = "--" if "mo_asha" in strategy else "-"
                (line,) = ax.plot(grid, np.maximum(med, 1e-6), style, label=strategy)
                ax.fill_between(grid, np.maximum(q1, 1e-6), np.maximum(q3, 1e-6), color=line.get_color(), alpha=0.15)
            ax.set(xscale="log", yscale="log", xlabel=axis, ylabel="1 - HV / exact HV")
            ax.set_title(f"{name}: reference {tuple(round(v, 6) for v in ref)}", fontsize=9)
            ax.legend(fontsize=7)
    save_figure(fig, out)


def _surrogate_rows(tables: dict, quick: bool) -> list[dict]:
    """How well the frontier sampler's surrogate ranks unseen architectures, per table."""
    rows = []
    for name, (table, *_, spec) in tables.items():
        if spec is not None:
            rows += surrogate.for_spec(name, table, spec) if not quick else []
        else:
            grid = {edge: list(OPS) for edge in EDGES}
            rows += surrogate.ranking(name, table, nb201_knowledge(), grid, seeds=1 if quick else surrogate.DRAWS)
    return rows


def _step(curve: list[dict], axis: str, grid) -> np.ndarray:
    """The curve's regret ratio (1 - HV/exact) at each grid value, held from its last read."""
    xs = np.array([r[axis] for r in curve], dtype=float)
    ys = np.array([1 - r["hv_ratio"] for r in curve])
    at = np.searchsorted(xs, grid, side="right") - 1
    return np.where(at >= 0, ys[np.clip(at, 0, None)], 1.0)


def run(out: Path, *, quick: bool = False, console=None, workers: int = 2, seeds: int = SEEDS, **_) -> list[dict]:
    """The matrix: tables x samplers x (unpruned, MO-ASHA) x seeds; CSV, PNG, summary rows."""
    say = console.print if console is not None else print
    tables = _tables(quick)
    seeds = 1 if quick else seeds  # --quick: every row once, to show the bench runs (the test)
    jobs = []
    for name in tables:
        for sampler_name in SAMPLERS:
            trials = SMALLER.get((name, sampler_name), BUDGET[name])
            trials = min(trials, 12 if sampler_name in ("gp", "frontier", "frontier_ehvi") else 30) if quick else trials
            pruned = name == "digits" and sampler_name in PRUNED_ROWS
            for halving in (None, _default_halving()) if pruned else (None,):
                jobs += [(name, sampler_name, halving, seed, trials, quick) for seed in range(seeds)]
        for peer in peers.ALGORITHMS:  # budgets in distinct evaluations, as the samplers' trials
            jobs += [(name, peer, None, seed, 30 if quick else BUDGET[name], quick) for seed in range(seeds)]
    if "digits" in tables and not quick and HALVINGS_TOO:
        for halving in set(HALVINGS) - {_default_halving()}:
            jobs += [("digits", "random", halving, seed, SMALLER["digits", "random"], quick) for seed in range(seeds)]
    started = time.perf_counter()
    curves: dict = {}
    # spawn, not fork: a process forked from one with torch's threads running can hang
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        slow = ("frontier", "frontier_ehvi", "gp")
        futures = [pool.submit(_job, job) for job in sorted(jobs, key=lambda j: (j[1] not in slow, -j[4]))]
        for future in as_completed(futures):
            rows = future.result()
            first = rows[0]
            curves.setdefault((first["table"], first["strategy"]), {})[first["seed"]] = rows
            say(f"  {first['table']} {first['strategy']} seed {first['seed']}: {rows[-1]['hv_ratio']:.4f} of the HV")
    far = {}
    if "nb201" in tables:
        table, objectives, ref, exact, *_ = tables["nb201"]
        draws = 3000 if quick else RANDOM_FAR
        far["nb201"] = [_random_far(table, objectives, ref, exact, seed, draws) for seed in range(seeds)]
    curve_rows = [row for by_seed in curves.values() for rows in by_seed.values() for row in rows]

    env = Env.current("cpu", 1)
    write_csv(out / "search_curves.csv", curve_rows, env)
    summary = _summary(curves, far)
    write_csv(out / "search.csv", summary, env)
    _plot(curves, tables, out / "search.png")
    write_csv(out / "search_surrogate.csv", _surrogate_rows(tables, quick), env)
    if "digits" in tables:  # the zero-cost proxies on the digits table: alone, and in the surrogate
        table, *_, spec = tables["digits"]
        write_csv(out / "search_proxies.csv", proxies.correlations(table), env)
        draws = 1 if quick else proxies.SEEDS
        write_csv(out / "search_proxies_predictor.csv", proxies.predictors(table, spec, seeds=draws), env)
    say(f"bench search: {len(jobs)} replayed sweeps in {time.perf_counter() - started:.0f} s on {workers} processes")

    for name, (table, _, ref, exact, front_keys, _) in tables.items():
        say(f"  {name}: reference point {ref}, exact hypervolume {exact:.6g}, {len(front_keys)} front members")
        say(f"  {name}: {len(table.by_key())} architectures; final accuracy seed to seed: {seed_noise(table)}")
    return [
        {k: v for k, v in r.items() if not k.endswith("_iqr") and not k.startswith("epochs_to_0.9")} for r in summary
    ]

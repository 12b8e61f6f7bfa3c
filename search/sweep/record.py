"""Record a table: every distinct architecture of a finite spec space, trained by the real
engine (``runs.trial.run_trial``), its validation accuracy after every epoch, its costs
(with the zero-cost proxies of ``search.proxies``) and its training time. Seeded (each row
names its seed), resumable (rows already recorded are kept in ``OUT.partial`` and skipped)
and parallel (``workers`` processes). ``add_proxies`` scores a recorded table's rows with
the proxies afterwards, without training."""

from __future__ import annotations

import dataclasses
import json
import math
import multiprocessing
import os
import platform
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from blocks import build
from runs import data as datasets
from runs import tracking
from runs.metrics import PROXY_METRICS
from runs.proxies import PROXY_BATCH
from runs.trial import Infeasible, measure_proxies, run_trial
from search.spec import Spec
from search.spec.space import FloatRange, sample
from search.sweep import pipeline
from search.sweep.budget import paths
from search.tables.table import Row, Table, TableError, save
from search.tables.table import load as load_table

# Measured before training; a proxy that is not finite is left out (a row holds numbers).
COSTS = ("params", "gmacs", "latency_ms", "latency_unreliable", "peak_mem_mb", *PROXY_METRICS, "proxy_s")


def enumerate_draws(spec: Spec) -> Iterator[tuple[str, dict, dict]]:
    """(draw key, model section, train section) of every distinct draw of ``spec``'s space,
    in a fixed order; draws that train the same (a left-out stage's values) once."""
    seen: set[str] = set()
    for model, train in paths(lambda walk: (sample(spec.model, walk, "model"), sample(spec.train, walk, "train"))):
        key = pipeline.draw_key(model, train)
        if key not in seen:
            seen.add(key)
            yield key, model, train


def _check_finite(spec: Spec) -> None:
    def walk(value: Any, path: str) -> None:
        if isinstance(value, FloatRange):
            raise TableError(f"{path}: a recorded table needs a finite space, and this is a float range")
        items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
        for k, v in items:
            walk(v, f"{path}.{k}")

    walk(spec.model, "model")
    walk(spec.train, "train")


def _train_one(spec: Spec, key: str, model: dict, train: dict, seed: int, threads: int) -> dict | str:
    """One row's data, trained in a worker process; a string when it cannot be trained."""
    import torch

    torch.set_num_threads(threads)
    data = _DATA.get(seed) or _DATA.setdefault(seed, datasets.load(spec.data, seed=spec.search.seed))
    drawn = pipeline.Draw(0, model, train, seed)
    arch, cfg, line = pipeline.materialise(spec, drawn, data)
    curve: list[float] = []
    started = time.perf_counter()
    try:
        metrics = run_trial(
            arch,
            cfg,
            data,
            seed=seed,
            report=lambda e, m, s: curve.append(m["val_accuracy"]),
            proxies=spec.search.proxies,
        )
    except Infeasible as err:
        return f"{line}: {err}"
    costs = {c: float(metrics[c]) for c in COSTS if c in metrics and math.isfinite(metrics[c])}
    train_s = float(metrics.get("train_time_s", time.perf_counter() - started))
    return Row(key, line, costs, tuple(curve), train_s, seed).as_dict()


_DATA: dict[int, Any] = {}  # the dataset, loaded once per worker process


def record(
    spec: Spec,
    out: Path,
    *,
    seeds: tuple[int, ...] = (0,),
    repeat_every: int = 0,
    workers: int = 1,
    on_row: Callable[[int, int, str], None] = lambda done, total, line: None,
) -> Table:
    """Train every distinct draw of ``spec`` with seed ``seeds[0]``, and every
    ``repeat_every``-th one (0: none) again with each further seed; write the table to
    ``out``. Rows already in ``out.partial`` (an interrupted recording) are kept."""
    _check_finite(spec)
    started, out = time.time(), Path(out)
    partial = out.with_name(out.name + ".partial")
    done = {(r["key"], r["seed"]): r for r in _read_partial(partial)}
    draws = list(enumerate_draws(spec))
    jobs = [(k, m, t, seeds[0]) for k, m, t in draws]
    if repeat_every:
        jobs += [(k, m, t, s) for k, m, t in draws[::repeat_every] for s in seeds[1:]]
    todo = [j for j in jobs if (j[0], j[3]) not in done]
    threads = max(1, (os.cpu_count() or 1) // max(1, workers))
    skipped: list[str] = []
    context = multiprocessing.get_context("spawn")  # no torch state forked into workers
    with open(partial, "a") as log:
        try:
            with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
                futures = [pool.submit(_train_one, spec, k, m, t, s, threads) for k, m, t, s in todo]
                for future in as_completed(futures):
                    result = future.result()
                    if isinstance(result, str):
                        skipped.append(result)
                        continue
                    log.write(json.dumps(result) + "\n")
                    log.flush()  # a row survives whatever happens to the recording after it
                    done[(result["key"], result["seed"])] = result
                    on_row(len(done), len(jobs), result["arch"])
        finally:  # each session's wall time, so that a resumed recording states the sum
            log.write(json.dumps({"session_wall_s": round(time.time() - started, 1)}) + "\n")
    rows = sorted((Row(**r) for r in done.values()), key=lambda r: (r.seed, r.key))
    sessions = [r["session_wall_s"] for r in _read_partial(partial, "session_wall_s")]
    meta = {
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "recorded": time.strftime("%Y-%m-%d"),
        "wall_s": round(sum(sessions), 1),
        "sessions": len(sessions),
        "workers": workers,
        "threads_per_worker": threads,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "versions": _versions(),
        "spec": spec.name,
        "spec_sha": spec.sha,
        "epochs": spec.train.get("epochs"),
        "objectives": [f"{o.metric}:{o.direction}" for o in spec.objectives],
        "proxies": {"names": list(spec.search.proxies), "batch": PROXY_BATCH},
        "not_trained": skipped,
    }
    table = Table(spec.name, tuple(rows), meta)
    save(table, out)
    partial.unlink(missing_ok=True)
    return table


def add_proxies(
    spec: Spec,
    table_path: Path,
    out: Path | None = None,
    on_row: Callable[[int, int, str], None] = lambda done, total, line: None,
) -> Table:
    """The table at ``table_path`` (recorded from ``spec``) with the zero-cost proxies of
    ``spec.search.proxies`` in every row's costs, written to ``out`` (default: in place),
    without training: each row's architecture built as ``run_trial`` builds it for the
    row's seed (``torch.manual_seed(seed)``, then ``build``) and scored on the same batch
    (the first PROXY_BATCH training images of the spec's data). Proxies depend only on the
    weights, not on what ``measure_cost`` leaves in BatchNorm's statistics, so the scores
    are a trial's. Proxies a row held before are replaced; a non-finite one is left out."""
    import torch

    started, table = time.time(), load_table(table_path)
    draws = {key: (model, train) for key, model, train in enumerate_draws(spec)}
    data = datasets.load(spec.data, seed=spec.search.seed)
    rows = []
    for number, row in enumerate(table.rows, start=1):
        if row.key not in draws:
            raise TableError(f"{table_path}: row {number} ({row.arch}) is not a draw of {spec.name}'s space")
        arch, _, line = pipeline.materialise(spec, pipeline.Draw(0, *draws[row.key], row.seed), data)
        if line != row.arch:  # the same draw must build the same layout
            raise TableError(f"{table_path}: row {number} was recorded as {row.arch}; the spec builds {line}")
        torch.manual_seed(row.seed)
        scores = measure_proxies(build(arch, device=data.train_x.device), data, spec.search.proxies)
        kept = {k: v for k, v in row.costs.items() if k not in (*PROXY_METRICS, "proxy_s")}
        costs = kept | {k: v for k, v in scores.items() if math.isfinite(v)}
        rows.append(dataclasses.replace(row, costs=costs))
        on_row(number, len(table.rows), line)
    proxies = {
        "names": list(spec.search.proxies),
        "batch": PROXY_BATCH,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "added": time.strftime("%Y-%m-%d"),
        "wall_s": round(time.time() - started, 1),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
    }
    scored = Table(table.name, tuple(rows), {**table.meta, "proxies": proxies})
    save(scored, Path(out or table_path))
    return scored


def _read_partial(path: Path, kind: str = "key") -> list[dict]:
    """The lines of an interrupted recording that hold ``kind`` (rows, or session times)."""
    if not path.exists():
        return []
    lines = []
    for line in path.read_text().splitlines():
        try:
            lines.append(json.loads(line))
        except ValueError:  # the last line of a recording killed mid-write
            continue
    return [entry for entry in lines if isinstance(entry, dict) and kind in entry]


def _versions() -> dict[str, str]:
    import optuna
    import torch

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "optuna": optuna.__version__,
        "mlflow": tracking.mlflow_version(),
    }

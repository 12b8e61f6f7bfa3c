"""How well the zero-cost proxies (``runs.proxies``) rank a recorded table's architectures,
what they add to the frontier sampler's surrogate, and what they cost a real trial.

- ``correlations``: each proxy, params and GMACs against the final validation accuracy of
  every architecture (one seed's rows): Spearman and Kendall over all of them and within
  10 GMACs bands of equal counts (``bench.surrogate._within``), where cost says nothing;
- ``predictors``: Kendall's tau on the architectures not trained, for #params alone (no
  model: larger ranked better, the sign that correlates positively on the digits table),
  the surrogate on today's features, and the surrogate with the proxies as extra features
  (all, and each alone), trained on 20, 50 and 100 architectures, 10 random splits each
  (the same splits for every predictor);
- ``trial_cost``: ``proxy_s`` against ``train_time_s`` of real trials of a spec.

``python -m bench.proxies`` prints all three as markdown (BENCHMARKS.md, "Zero-cost
proxies"); ``bench search`` takes the rows.
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

import numpy as np
import torch
from scipy.stats import kendalltau, spearmanr

from bench import surrogate
from blocks import build, check
from runs import data as datasets
from runs.metrics import PROXY_METRICS
from runs.proxies import DEFAULT
from runs.trial import measure_proxies, run_trial
from search.spec import load
from search.spec.arch import RandomTrial
from search.spec.space import sample
from search.sweep import pipeline, study
from search.sweep.knowledge import knowledge as spec_knowledge
from search.tables.table import load as load_table

ROOT = Path(__file__).resolve().parents[1]
RANKED = (*PROXY_METRICS, "params", "gmacs")
TRAINED = (20, 50, 100)
SEEDS = 10


def correlations(table, seed: int = 0) -> list[dict]:
    """A row per proxy, params and gmacs: Spearman and Kendall against final accuracy, over
    the rows of ``seed`` that hold it, overall and within 10 GMACs bands."""
    rows = list(table.by_key(seed).values())
    accuracy = np.array([r.curve[-1] for r in rows])
    gmacs = np.array([r.costs["gmacs"] for r in rows])
    out = []
    for name in RANKED:
        score = np.array([r.costs.get(name, np.nan) for r in rows])
        ok = np.isfinite(score)
        s, a, g = score[ok], accuracy[ok], gmacs[ok]
        out.append(
            {
                "table": table.name,
                "score": name,
                "architectures": int(ok.sum()),
                "spearman_all": float(spearmanr(s, a)[0]),
                "kendall_all": float(kendalltau(s, a)[0]),
                "spearman_within_gmacs": surrogate._within(s, a, g, spearmanr),
                "kendall_within_gmacs": surrogate._within(s, a, g),
            }
        )
    return out


def _params_alone(data: list, n: int, seeds: int) -> tuple[list, list]:
    """``surrogate.split_taus`` for +params as the prediction (no model), on its splits."""
    params = np.array([d[0][-1] for d in data])  # the last feature: _architectures' extra "params"
    y, cost = np.array([d[1] for d in data]), np.array([d[2] for d in data])
    overall, within = [], []
    for seed in range(seeds):
        rest = np.random.default_rng(seed).permutation(len(data))[n:]
        overall.append(kendalltau(params[rest], y[rest])[0])
        within.append(surrogate._within(params[rest], y[rest], cost[rest]))
    return overall, within


def predictors(table, spec, trained: tuple[int, ...] = TRAINED, seeds: int = SEEDS) -> list[dict]:
    """Rows of (predictor, trained, kendall_all, kendall_within_cost, gain_all: the mean
    difference from the surrogate without proxies on the same splits, better_splits: on
    how many it is higher): #params alone, the surrogate, the surrogate with every proxy
    and with each proxy alone as features."""
    known, grid = spec_knowledge(spec), study.grid_space(spec)
    settings = {"surrogate": (), "surrogate+proxies": PROXY_METRICS}
    settings |= {f"surrogate+{p}": (p,) for p in PROXY_METRICS}
    walked = surrogate._walked(known, table, grid)
    data = {name: surrogate._architectures(known, table, grid, extra, walked) for name, extra in settings.items()}
    data["+params"] = surrogate._architectures(known, table, grid, ("params",), walked)
    rows = []
    for n in trained:
        taus = {"+params": _params_alone(data["+params"], n, seeds)}
        taus |= {name: surrogate.split_taus(data[name], n, seeds) for name in settings}
        base = np.array(taus["surrogate"][0])
        for name, (overall, within) in taus.items():
            gain = np.array(overall) - base
            rows.append(
                {
                    "table": table.name,
                    "predictor": name,
                    "trained": n,
                    "kendall_all": float(np.mean(overall)),
                    "kendall_within_cost": float(np.mean(within)),
                    "gain_all": float(gain.mean()),
                    "better_splits": f"{int((gain > 0).sum())}/{seeds}",
                }
            )
    return rows


def trial_cost(spec, trials: int = 4, seed: int = 0, names: tuple[str, ...] = PROXY_METRICS) -> list[dict]:
    """``trials`` real trials of random draws of ``spec`` (those the builder takes): the
    seconds the proxies ``names`` took (together in the trial, then the default set and
    each alone on the same model) against training."""
    data, rng, rows = datasets.load(spec.data, seed=spec.search.seed), random.Random(seed), []
    while len(rows) < trials:
        draw = RandomTrial(rng)
        model_cfg, train_cfg = sample(spec.model, draw, "model"), sample(spec.train, draw, "train")
        arch, cfg, line = pipeline.materialise(spec, pipeline.Draw(len(rows), model_cfg, train_cfg, 0), data)
        if check(arch):
            continue
        metrics = run_trial(arch, cfg, data, seed=len(rows), proxies=names)
        torch.manual_seed(len(rows))
        model = build(arch)
        alone = {f"{p}_s": measure_proxies(model, data, [p])["proxy_s"] for p in names}
        default = measure_proxies(model, data, DEFAULT)["proxy_s"]
        rows.append(
            {
                "arch": line,
                "train_time_s": metrics["train_time_s"],
                "proxy_s": metrics["proxy_s"],
                "share_pct": 100 * metrics["proxy_s"] / metrics["train_time_s"],
                "default_s": default,
                "default_pct": 100 * default / metrics["train_time_s"],
            }
            | alone
            | {"val_accuracy": metrics["val_accuracy"]}
        )
    return rows


def _markdown(rows: list[dict]) -> str:
    columns = list(dict.fromkeys(k for r in rows for k in r))
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for r in rows:
        cells = [f"{r[c]:.3f}" if isinstance(r.get(c), float) else str(r.get(c, "")) for c in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--table", default=str(ROOT / "spaces/tables/digits.jsonl.gz"))
    parser.add_argument("--spec", default=str(ROOT / "spaces/tables/digits.yaml"))
    parser.add_argument("--quickstart", type=int, default=4, metavar="N", help="real quickstart trials (0: none)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    table, spec = load_table(Path(args.table)), load(Path(args.spec))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread\n")
    print(_markdown(correlations(table)) + "\n")
    print(_markdown(predictors(table, spec)) + "\n")
    if args.quickstart:
        print(_markdown(trial_cost(load(ROOT / "spaces/quickstart.yaml"), args.quickstart)))


if __name__ == "__main__":
    main()

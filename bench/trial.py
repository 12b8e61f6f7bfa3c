"""The engine's own cost: its training loop against a minimal hand-written loop on the
same model, data and steps; and a sweep's wall time against its trials' training time."""

from __future__ import annotations

import math
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
import yaml

from bench.common import Env, pyplot, save_figure, write_csv
from blocks import ArchSpec, EmbeddingSpec, MixerSpec, StageSpec, build
from runs.data import DataSpec, load
from runs.tags import MODEL_TAG
from runs.train import TrainConfig, train
from search.backends import backend_for
from search.spec import load as load_spec


def _arch() -> ArchSpec:
    stage = StageSpec(2, 64, MixerSpec("fourier"), mlp_ratio=2)
    return ArchSpec((8, 8), 10, (stage,), in_channels=1, embedding=EmbeddingSpec("patch", 2))


def hand_loop(model, data, cfg: TrainConfig, seed: int) -> float:
    """What a person would write: AdamW, warm-up + cosine, clipping, an eval per epoch."""
    g = torch.Generator(device=data.train_x.device).manual_seed(seed)
    decay = [p for p in model.parameters() if p.ndim >= 2]
    rest = [p for p in model.parameters() if p.ndim < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": rest, "weight_decay": 0.0}],
        lr=cfg.lr,
        foreach=True,
    )
    n, bs = len(data.train_x), cfg.batch_size
    steps = math.ceil(n / bs)
    total, warmup = cfg.epochs * steps, steps

    def factor(s):
        return (s + 1) / warmup if s < warmup else 0.5 * (1 + math.cos(math.pi * (s - warmup) / max(1, total - warmup)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
    start = time.perf_counter()
    for _ in range(cfg.epochs):
        model.train()
        order = torch.randperm(n, generator=g, device=data.train_x.device)
        for i in range(steps):
            idx = order[i * bs : (i + 1) * bs]
            loss = F.cross_entropy(model(data.train_x[idx]), data.train_y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            sched.step()
        model.eval()
        with torch.no_grad():
            (model(data.val_x).argmax(1) == data.val_y).float().mean().item()
    return time.perf_counter() - start


def loop_comparison(device: str, repeats: int, epochs: int) -> list[dict]:
    data = load(DataSpec("digits")).to(device)
    cfg = TrainConfig(epochs=epochs, batch_size=64, lr=3e-3)
    engine, hand = [], []
    for _ in range(repeats):  # alternate, so that machine noise hits both alike
        torch.manual_seed(0)
        engine.append(train(build(_arch(), device=device), data, cfg, seed=0)["train_time_s"])
        torch.manual_seed(0)
        hand.append(hand_loop(build(_arch(), device=device), data, cfg, seed=0))
    images = epochs * len(data.train_x)
    e, h = statistics.median(engine), statistics.median(hand)
    return [
        {"loop": "hand-written", "seconds": h, "images_per_s": images / h, "relative_throughput": 1.0},
        {"loop": "archsweep runs.train", "seconds": e, "images_per_s": images / e, "relative_throughput": h / e},
    ]


def sweep_overhead(trials: int, epochs: int, device: str, backend: dict, label: str, models: str = "pareto") -> dict:
    """One short-trial sweep on ``backend``: its set-up, the trials' wall time against the
    sum of their training time, and the wrap-up (``models``: tracking.models)."""

    spec_data = {
        "name": "bench-overhead",
        "data": {"dataset": "digits"},
        "model": {
            "patch_size": 2,
            "stages": [{"depth": 2, "width": {"choice": [32, 64]}, "mlp_ratio": 2, "mixer": "fourier"}],
        },
        "train": {"epochs": epochs, "batch_size": 64, "lr": {"float": [1e-3, 5e-3], "log": True}},
        "search": {"sampler": "random", "trials": trials, "seed": 0},
        "backend": backend,
    }
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "spec.yaml"
        path.write_text(yaml.safe_dump({**spec_data, "tracking": {"dir": str(Path(tmp) / "store"), "models": models}}))
        spec = load_spec(path)
        sweep = backend_for(spec.backend.kind)(spec, device=device)
        try:
            t0 = time.perf_counter()
            sweep.open()
            t1 = time.perf_counter()
            sweep.run()
            t2 = time.perf_counter()
            sweep.finish()
            t3 = time.perf_counter()
            rows, _ = sweep.front_rows()
            found = sweep.tracker.trial_runs(spec.name)
            runs = {r.info.run_id: r.info for r in found}
            logged = sum(MODEL_TAG in r.data.tags for r in found)
        finally:
            sweep.close()
    trained = sum(r["train_time_s"] for r in rows)
    # Per trial: its MLflow run's wall time minus its training (start-up, cost measurement,
    # logging); the median leaves out the one-off wait for a fork server or a Ray worker.
    each = [(runs[r["run_id"]].end_time - runs[r["run_id"]].start_time) / 1e3 - r["train_time_s"] for r in rows]
    return {
        "backend": label,
        "trials": trials,
        "open_s": t1 - t0,
        "trials_wall_s": t2 - t1,
        "sum_train_time_s": trained,
        "overhead_per_trial_s": (t2 - t1 - trained) / trials,
        "median_trial_overhead_s": statistics.median(each),
        "finish_s": t3 - t2,
        "models_logged": logged,
        "total_s": t3 - t0,
    }


def overheads(trials: int, epochs: int, device: str, quick: bool = False) -> list[dict]:
    """Local one and two trials at a time, Ray one trial at a time (2 threads each, like
    local) and two at a time (1 thread each), side by side on the same short trials."""
    rows = [sweep_overhead(trials, epochs, device, {"kind": "local"}, "local")]
    rows.append(sweep_overhead(trials, epochs, device, {"kind": "local", "max_concurrent": 2}, "local, 2 workers"))
    if not quick:  # what logging the trained models adds to finish(): none, then every trial's
        for models in ("none", "all"):
            rows.append(sweep_overhead(trials, epochs, device, {"kind": "local"}, f"local, models: {models}", models))
    try:
        import search.sweep.ray.driver  # noqa: F401 (it sets Ray's environment, then imports ray)
    except ImportError:
        return rows
    if not quick:  # quick: the local rows show the bench runs; Ray's start alone takes 15 s
        serial = {"kind": "ray", "cpus_per_trial": 2, "max_concurrent": 1}
        rows.append(sweep_overhead(trials, epochs, device, serial, "ray, 1 at a time"))
        parallel = {"kind": "ray", "cpus_per_trial": 1, "max_concurrent": 2}
        rows.append(sweep_overhead(trials, epochs, device, parallel, "ray, 2 at a time"))
    for row in rows:
        row["speedup_vs_local"] = rows[0]["trials_wall_s"] / row["trials_wall_s"]
    return rows


def run(out: Path, *, device: str, repeats: int, cap_s: float, quick: bool, console) -> list[dict]:
    loops = loop_comparison(device, repeats=2 if quick else repeats, epochs=1 if quick else 10)
    sweeps = overheads(trials=2 if quick else 12, epochs=1 if quick else 3, device=device, quick=quick)
    overhead = sweeps[0]
    env = Env.current(device, repeats)
    write_csv(out / "trial_loop.csv", loops, env)
    write_csv(out / "trial_overhead.csv", sweeps, env)
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    axes[0].bar([r["loop"] for r in loops], [r["images_per_s"] for r in loops], color=["tab:gray", "tab:blue"])
    axes[0].set_ylabel("training images / s")
    axes[1].bar(
        ["trials' training", "engine overhead"],
        [overhead["sum_train_time_s"], overhead["trials_wall_s"] - overhead["sum_train_time_s"]],
    )
    axes[1].set_ylabel(f"seconds, {overhead['trials']} trials")
    save_figure(fig, out / "trial.png")
    for row in sweeps:
        console.print(f"  {row['backend']}: overhead per trial {row['overhead_per_trial_s']:.3f} s")
    return [*loops, *sweeps]

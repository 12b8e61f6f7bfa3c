"""Costing an architecture before training, as the frontier sampler does for up to 48 new
candidates per ask (``search.sweep.knowledge``): built on the meta device (the builder's
check), then its params and FLOPs counted (``blocks.cost.counted_cost``). Side by side on
the same architectures, in alternating rounds: the FLOP count on the meta device, as it
was, against the count on zeros through the CPU kernels that ``blocks.cost`` now uses for
a small model; every architecture's two counts are compared.

    PYTHONPATH=. .venv/bin/python -m bench.costing                  # 200 quickstart architectures, 3 rounds
    PYTHONPATH=. .venv/bin/python -m bench.costing spaces/hierarchical.yaml --archs 50
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import optuna
import torch

from blocks import ArchSpec, build
from blocks.cost import count_flops, count_params, counted_cost
from runs.data import geometry
from search.spec import load as load_spec
from search.spec.arch import to_arch
from search.spec.space import sample


def architectures(spec_path: str, count: int, seed: int = 0) -> list[ArchSpec]:
    """Up to ``count`` distinct buildable architectures drawn at random from a spec's space."""
    spec = load_spec(spec_path)
    geo = geometry(spec.data)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    seen, out = set(), []
    for _ in range(20 * count):
        model = sample(spec.model, study.ask(), "model")
        key = json.dumps(model, sort_keys=True, default=str)
        if key in seen:
            continue
        seen.add(key)
        arch = to_arch(model, geo.image_size, geo.num_classes, geo.channels)
        try:
            build(arch, device="meta")
        except Exception:  # the builder's refusals: the sampler drops those before counting
            continue
        out.append(arch)
        if len(out) == count:
            break
    return out


def _on_meta(arch: ArchSpec) -> dict[str, float]:
    """The count as it was: params and FLOPs of the meta-device model."""
    meta = build(arch, device="meta")
    flops = count_flops(meta, torch.empty(1, arch.in_channels, *arch.image_size, device="meta"))
    return {"params": float(count_params(meta)[0]), "gflops": flops / 1e9}


def _now(arch: ArchSpec) -> dict[str, float]:
    costs = counted_cost(arch)
    return {"params": costs["params"], "gflops": costs["gflops"]}


def run(spec_path: str, archs: int, rounds: int, say=print) -> dict:
    found = architectures(spec_path, archs)
    times: dict[str, list[float]] = {"meta": [], "cpu": []}
    differ = 0
    for _ in range(rounds):
        for name, count in (("meta", _on_meta), ("cpu", _now)):
            started = time.perf_counter()
            counts = [count(a) for a in found]
            times[name].append((time.perf_counter() - started) / len(found) * 1e3)
            if name == "meta":
                before = counts
        differ += sum(a != b for a, b in zip(before, counts, strict=True))
    row = {
        "spec": spec_path,
        "architectures": len(found),
        "rounds": rounds,
        "meta_ms": statistics.median(times["meta"]),
        "cpu_ms": statistics.median(times["cpu"]),
        "differing_counts": differ,
        "threads": torch.get_num_threads(),
    }
    say(
        f"{spec_path}: {len(found)} architectures, ms per architecture (median of {rounds} rounds): "
        f"meta {row['meta_ms']:.1f}, now {row['cpu_ms']:.1f} ({row['meta_ms'] / row['cpu_ms']:.2f}x); "
        f"{differ} differing counts; each round: meta {_ms(times['meta'])}, now {_ms(times['cpu'])}"
    )
    return row


def _ms(values: list[float]) -> str:
    return ", ".join(f"{v:.1f}" for v in values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("spec", nargs="?", default="spaces/quickstart.yaml")
    parser.add_argument("--archs", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    run(args.spec, args.archs, args.rounds)


if __name__ == "__main__":
    main()

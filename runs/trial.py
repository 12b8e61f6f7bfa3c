"""One trial end to end: refuse, measure, check cost constraints, train."""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Mapping, Sequence

import torch
import yaml

from blocks import ArchSpec, build, check, from_dict, to_dict
from blocks.cost import counted_cost, timed_cost
from runs import proxies as zero_cost
from runs.data import Dataset
from runs.train import TrainConfig, train


class Infeasible(Exception):
    """The architecture is refused by the builder or breaks a cost constraint; no
    training was spent on it. ``violations`` follow Optuna's convention (> 0: broken)."""

    def __init__(self, reason: str, cost: dict[str, float], violations: list[float]) -> None:
        super().__init__(reason)
        self.reason, self.cost, self.violations = reason, cost, violations


def measure_cost(arch: ArchSpec, model: torch.nn.Module, data: Dataset, batch_size: int) -> dict[str, float]:
    """The cost metrics known before training (counted on the meta device, timed on the
    model's own device). Latency comes with its spread over rounds, the share of time its
    thread waited for a core, and ``latency_unreliable`` 1.0 when either is past its limit
    (``blocks.cost.Latency``; the tracker tags such a run ``archsweep.latency_unreliable``).
    Images are shaped as the data's, on its device, batch_size at most its size."""
    counted = counted_cost(arch, model)
    del counted["params_trainable"]  # not a trial metric (runs.metrics.METRICS)
    batch = min(batch_size, len(data.train_x))
    return {**counted, **timed_cost(model, data.train_x.shape[1:], device=data.train_x.device, batch_size=batch)}


def measure_proxies(model: torch.nn.Module, data: Dataset, names: Sequence[str]) -> dict[str, float]:
    """The zero-cost proxies ``names`` (``runs.proxies``) of a freshly built model on the
    first PROXY_BATCH training images (no random draw: a recorded table scores the same
    batch), with ``proxy_s``; nothing when ``names`` is empty. The model and the RNG are
    left as they were."""
    if not names:
        return {}
    images, labels = data.train_x[: zero_cost.PROXY_BATCH], data.train_y[: zero_cost.PROXY_BATCH]
    return zero_cost.measure(model, images, labels, names)


def run_trial(
    arch: ArchSpec,
    cfg: TrainConfig,
    data: Dataset,
    *,
    seed: int,
    constraints: Sequence = (),
    report: Callable[..., None] = lambda epoch, metrics, snapshot: None,
    resume: Mapping | None = None,
    on_cost: Callable[[dict[str, float]], None] = lambda cost: None,
    on_trained: Callable[[dict], None] = lambda record: None,
    proxies: Sequence[str] = zero_cost.DEFAULT,
) -> dict[str, float]:
    """Train ``arch`` and return every per-trial metric; raises ``Infeasible`` before
    any training when the builder refuses it or a cost constraint is broken (the zero-cost
    ``proxies`` count as costs). ``on_trained`` gets the trained model's ``trained_record``
    (to keep for logging)."""
    _refuse_unbuildable(arch, constraints)
    torch.manual_seed(seed)
    model = build(arch, device=data.train_x.device)
    cost = measure_cost(arch, model, data, cfg.batch_size)
    cost |= measure_proxies(model, data, proxies)
    _refuse_over_budget(cost, constraints)
    on_cost(cost)
    metrics = train(model, data, cfg, seed=seed, report=report, resume=resume)
    on_trained(trained_record(arch, model, data))
    return {**cost, **metrics}


def replay_trial(
    arch: ArchSpec,
    row: Mapping,
    *,
    constraints: Sequence = (),
    report: Callable[..., None] = lambda epoch, metrics, snapshot: None,
    on_cost: Callable[[dict[str, float]], None] = lambda cost: None,
    resume: Mapping | None = None,
) -> dict[str, float]:
    """``run_trial`` with the results read from a recorded table's row (``costs``,
    ``curve``, ``train_s``: see ``search.tables``) instead of training: the same refusals,
    cost constraints and per-epoch reports (from the epoch after ``resume``'s), so that a
    sweep's pruner, outcomes and tracking run as they would. Nothing is trained, so no
    model is left to log."""
    _refuse_unbuildable(arch, constraints)
    cost = {k: float(v) for k, v in row["costs"].items()}
    _refuse_over_budget(cost, constraints)
    on_cost(cost)
    first = resume["epoch"] + 1 if resume else 0
    for epoch, accuracy in list(enumerate(row["curve"]))[first:]:
        metrics = {"val_accuracy": float(accuracy)}
        report(epoch, metrics, lambda epoch=epoch, metrics=metrics: {"epoch": epoch, "metrics": metrics})
    curve = row["curve"]
    return {**cost, "val_accuracy": float(curve[-1]), "epochs": float(len(curve)), "train_time_s": row["train_s"]}


def _refuse_unbuildable(arch: ArchSpec, constraints: Sequence) -> None:
    problems = check(arch)
    if problems:
        raise Infeasible("refused by the builder: " + "; ".join(map(str, problems)), {}, [1.0] * len(constraints))


def _refuse_over_budget(cost: dict[str, float], constraints: Sequence) -> None:
    violations = [_violation(c, cost) for c in constraints]
    broken = [str(c) for c, v in zip(constraints, violations, strict=True) if v > 0]
    if broken:
        raise Infeasible("breaks " + ", ".join(broken), cost, violations)


def _violation(constraint, cost: dict[str, float]) -> float:
    """0 for a metric not measured yet; a NaN (a proxy that is not finite) keeps no bound."""
    if constraint.metric not in cost:
        return 0.0
    violation = constraint.violation(cost[constraint.metric])
    return 1.0 if math.isnan(violation) else violation


PROBE_IMAGES = 8


def trained_record(arch: ArchSpec, model: torch.nn.Module, data: Dataset) -> dict:
    """What a trained trial leaves behind: its ``model_record`` probed with the first
    validation images."""
    return model_record(arch, model, data.val_x[:PROBE_IMAGES])


@torch.no_grad()
def model_record(arch: ArchSpec, model: torch.nn.Module, probe: torch.Tensor) -> dict:
    """A model as plain data on the CPU: its architecture, its weights, and a probe: the
    ``probe`` images with the logits this very module gave them (in eval mode), so a model
    logged, exported and reloaded elsewhere can be checked against the original."""
    model.eval()
    logits = model(probe).float()
    return {
        "arch": to_dict(arch),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "probe_x": probe.cpu(),
        "probe_logits": logits.cpu(),
    }


def rebuild(record: dict) -> torch.nn.Module:
    """The trained model of a ``trained_record``, in eval mode on the CPU."""
    model = build(from_dict(record["arch"]))
    model.load_state_dict(record["state_dict"])
    return model.eval()


def model_files(record: Mapping) -> dict[str, bytes]:
    """A ``model_record`` as the files a model is taken away in, by name: ``arch.yaml``
    (the architecture), ``weights.pt`` (the state dict) and ``probe.pt`` (the probe images
    and their logits). A sweep logs them beside each MLflow model (``export`` hands them
    over) and ``import-timm`` writes them."""
    probe = {"x": record["probe_x"], "logits": record["probe_logits"]}
    return {
        "arch.yaml": yaml.safe_dump(record["arch"], sort_keys=False).encode(),
        "weights.pt": _saved(record["state_dict"]),
        "probe.pt": _saved(probe),
    }


def _saved(obj) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()

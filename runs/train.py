"""The training loop of one trial: plain PyTorch over tensors already on the device."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from contextlib import nullcontext
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from runs.data import Dataset, augment


class TrialFailed(RuntimeError):
    """A trial that cannot go on (e.g. a non-finite loss); the message is the reason."""


@dataclass(frozen=True)
class TrainConfig:
    optimizer: str = "adamw"
    lr: float = 1e-3
    weight_decay: float = 0.05
    epochs: int = 10
    batch_size: int = 128
    label_smoothing: float = 0.0
    schedule: str = "cosine"
    warmup_epochs: float = 1  # an int: what a spec that leaves it out gets (and logs, as "1")
    grad_clip: float = 1.0
    momentum: float = 0.9
    amp: bool = True
    crop: int = 0
    flip: bool = False

    @classmethod
    def from_mapping(cls, values: Mapping) -> TrainConfig:
        return cls(**{k: v for k, v in values.items() if k in cls.__dataclass_fields__})


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    # No weight decay on norms, biases, tokens and position tables (1-D or table-like).
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "table" not in n and "cls_token" not in n]
    rest = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "table" not in n and "cls_token" not in n)]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": rest, "weight_decay": 0.0}]
    # foreach: one kernel per step for all tensors (PyTorch picks the per-tensor loop on CPU).
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=True, foreach=True)
    return torch.optim.AdamW(groups, lr=cfg.lr, foreach=True)


def lr_factor(step: int, total: int, warmup: int, schedule: str) -> float:
    """Linear warm-up, then cosine decay to zero (or constant)."""
    if step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int, autocast) -> dict[str, float]:
    model.eval()
    loss = top1 = top5 = 0.0
    for i in range(0, len(x), batch_size):
        with autocast():
            logits = model(x[i : i + batch_size]).float()
        target = y[i : i + batch_size]
        loss += F.cross_entropy(logits, target, reduction="sum").item()
        best = logits.topk(min(5, logits.shape[1]), dim=1).indices
        top1 += (best[:, 0] == target).sum().item()
        top5 += (best == target[:, None]).any(dim=1).sum().item()
    model.train()
    n = len(x)
    return {"val_loss": loss / n, "val_accuracy": top1 / n, "val_top5": top5 / n}


def train(
    model: nn.Module,
    data: Dataset,
    cfg: TrainConfig,
    *,
    seed: int,
    report: Callable[..., None] = lambda epoch, metrics, snapshot: None,
    resume: Mapping | None = None,
) -> dict[str, float]:
    """Train ``model`` on ``data`` (both on one device); ``report(epoch, metrics, snapshot)``
    after every epoch (it may raise to stop the trial, e.g. when a pruner says so).
    ``snapshot()`` returns the training state after that epoch; passed back as ``resume``
    it continues from the next epoch (a retried trial picks up its last checkpoint)."""
    device = data.train_x.device
    generator = torch.Generator(device=device).manual_seed(seed)
    use_amp = cfg.amp and device.type == "cuda"

    def autocast():
        return torch.autocast("cuda", dtype=torch.bfloat16) if use_amp else nullcontext()

    optimizer = make_optimizer(model, cfg)
    n = len(data.train_x)
    steps = math.ceil(n / cfg.batch_size)
    total, warmup = cfg.epochs * steps, round(cfg.warmup_epochs * steps)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, total, warmup, cfg.schedule))
    model.train()
    first, seen, metrics, before = 0, 0, {}, 0.0
    if resume is not None:
        model.load_state_dict(resume["model"])
        optimizer.load_state_dict(resume["optimizer"])
        schedule.load_state_dict(resume["schedule"])
        generator.set_state(resume["generator"].to(generator.get_state().device))
        first, seen, metrics, before = resume["epoch"] + 1, resume["seen"], resume["metrics"], resume["elapsed"]
    start = time.perf_counter()
    for epoch in range(first, cfg.epochs):
        order = torch.randperm(n, generator=generator, device=device)
        running = torch.zeros((), device=device)
        for step in range(steps):
            idx = order[step * cfg.batch_size : (step + 1) * cfg.batch_size]
            x = augment(data.train_x[idx], crop=cfg.crop, flip=cfg.flip, generator=generator)
            with autocast():
                loss = F.cross_entropy(model(x).float(), data.train_y[idx], label_smoothing=cfg.label_smoothing)
            if not torch.isfinite(loss):  # stop at once: every later step would be wasted
                raise TrialFailed(f"non-finite training loss ({loss.item()}) in epoch {epoch + 1}, step {step + 1}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip:
                nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()
            schedule.step()
            running += loss.detach() * len(idx)
            seen += len(idx)
        train_loss = running.item() / n
        metrics = {"train_loss": train_loss, **evaluate(model, data.val_x, data.val_y, 512, autocast)}

        def snapshot(epoch=epoch, seen=seen, metrics=metrics) -> dict:
            return {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "schedule": schedule.state_dict(),
                "generator": generator.get_state(),
                "epoch": epoch,
                "seen": seen,
                "metrics": metrics,
                "elapsed": before + time.perf_counter() - start,
            }

        report(epoch, metrics, snapshot)
    elapsed = before + time.perf_counter() - start
    return {**metrics, "train_time_s": elapsed, "throughput": seen / elapsed, "epochs": float(cfg.epochs)}

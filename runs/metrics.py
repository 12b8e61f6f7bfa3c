"""The metrics a trial reports, which way each is better, and the two things a spec
says about them: objectives (what to optimise) and constraints (bounds a trial must keep)."""

from __future__ import annotations

from dataclasses import dataclass

METRICS = {  # name -> the direction that is better
    "val_accuracy": "max",
    "val_top5": "max",
    "val_loss": "min",
    "train_loss": "min",
    "params": "min",
    "gmacs": "min",
    "gflops": "min",
    "latency_ms": "min",
    "latency_spread": "min",
    "throughput": "max",
    "peak_mem_mb": "min",
    "train_time_s": "min",
    "epochs": "max",
    # zero-cost proxies (runs.proxies), scored on the freshly built model: higher ranks higher
    "naswot": "max",
    "jacob_cov": "max",
    "synflow": "max",  # its natural log
    "snip": "max",
    "grad_norm": "max",
    "proxy_s": "min",  # the seconds the proxies took
}
COST_METRICS = ("params", "gmacs", "gflops", "latency_ms", "peak_mem_mb")  # known before training
PROXY_METRICS = ("naswot", "jacob_cov", "synflow", "snip", "grad_norm")  # known before training too


@dataclass(frozen=True)
class Objective:
    metric: str
    direction: str  # "max" | "min"


@dataclass(frozen=True)
class Constraint:
    metric: str
    op: str
    bound: float

    def violation(self, value: float) -> float:
        """<= 0 when satisfied (Optuna's constraints_func convention)."""
        return value - self.bound if self.op in ("<=", "<") else self.bound - value

    def __str__(self) -> str:
        return f"{self.metric} {self.op} {self.bound:g}"

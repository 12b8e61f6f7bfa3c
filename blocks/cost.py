"""What a model costs: parameters, MACs and FLOPs with FFTs counted, latency, training memory.

Counting (``params``, ``flops``) runs on the meta device: no weights are allocated and
no arithmetic is done, so a 1080x1080 attention model is counted as fast as a tiny one.
Timing and memory run real steps on the model's own device.
"""

from __future__ import annotations

import math
import statistics
import time
import weakref
from collections.abc import Callable, Iterable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from blocks.builder import build
from blocks.spec import ArchSpec

aten = torch.ops.aten


# -- parameters --------------------------------------------------------------------------


def count_params(model: nn.Module) -> tuple[int, int]:
    """``(total, trainable)`` parameter counts: every tensor that training updates."""
    params = list(model.parameters())
    return sum(p.numel() for p in params), sum(p.numel() for p in params if p.requires_grad)


def count_layer_params(model: nn.Module) -> int:
    """Parameters named ``weight`` or ``bias`` on their own module, nothing else.

    This is how per-layer summaries (torchsummary, and so the Vision X-formers tables)
    count: a class token, a position table, a Linformer sequence projection or a GFNet
    filter are free-standing parameters and are left out.
    """
    total = 0
    for module in model.modules():
        for name in ("weight", "bias"):
            p = module._parameters.get(name)
            total += p.numel() if p is not None else 0
    return total


# -- FLOPs -------------------------------------------------------------------------------
# FlopCounterMode counts matmuls, convolutions and the CUDA attention kernels; it counts
# FFTs, complex products and the CPU flash-attention kernel as zero. The formulas below
# fill those gaps: 5 n log2 n per complex n-point transform and half that for a real one
# (FFTW's benchFFT convention), 6 flops per complex product.


def _transform_size(shape: torch.Size, dims: Iterable[int]) -> tuple[int, int]:
    n = math.prod(shape[d] for d in dims)
    return n, math.prod(shape) // max(n, 1)


def _fft_flops(n: int, batch: int, per_point: float) -> int:
    return int(per_point * n * math.log2(n) * batch) if n > 1 else 0


def _fft_r2c(x, dim, *args, out_val=None, **kwargs) -> int:
    return _fft_flops(*_transform_size(x.shape, dim), 2.5)


def _fft_c2r(x, dim, *args, out_val=None, **kwargs) -> int:
    return _fft_flops(*_transform_size(out_val.shape, dim), 2.5)


def _fft_c2c(x, dim, *args, out_val=None, **kwargs) -> int:
    return _fft_flops(*_transform_size(x.shape, dim), 5.0)


def _complex_mul(a, b, *args, out_val=None, **kwargs) -> int:
    complex_inputs = sum(isinstance(t, torch.Tensor) and t.is_complex() for t in (a, b))
    return {0: 0, 1: 2, 2: 6}[complex_inputs] * out_val.numel()


def _cpu_sdpa(q, k, v, *args, out_val=None, **kwargs) -> int:
    return sdpa_flop_count(q.shape, k.shape, v.shape)


FLOP_FORMULAS = {
    aten._fft_r2c: _fft_r2c,
    aten._fft_c2r: _fft_c2r,
    aten._fft_c2c: _fft_c2c,
    aten.mul: _complex_mul,
    aten._scaled_dot_product_flash_attention_for_cpu: _cpu_sdpa,
}
for _formula in FLOP_FORMULAS.values():
    _formula._get_raw = True  # give the formulas tensors (for dtypes), not shapes


def count_flops(model: nn.Module, images: torch.Tensor) -> int:
    """Forward FLOPs of ``model(images)`` (2 per multiply-accumulate, FFTs counted)."""
    with torch.no_grad(), FlopCounterMode(display=False, custom_mapping=FLOP_FORMULAS) as counter:
        model(images)
    return counter.get_total_flops()


def gmacs_of(flops: float) -> float:
    """Giga multiply-accumulates from a FLOP count: a MAC is two FLOPs (a multiply and an
    add). GFNet's published "GFLOPs" are these GMACs."""
    return flops / 2e9


# Counting runs the model once. On the meta device every op runs a Python meta kernel (a
# quickstart model: 53 ms); on the CPU, zeros through C++ kernels take 15 ms and count the
# same FLOPs, since the formulas read shapes only (tests/blocks/test_cost.py holds the two
# equal for every mixer). A model this small is counted on the CPU (the frontier sampler
# costs up to 48 new architectures per ask); a larger one, a paper's preset at 224 pixels,
# on the meta device, where nothing is allocated.
CPU_COUNT_PARAMS = 4_000_000
CPU_COUNT_PIXELS = 32 * 32


def flops_per_image(arch: ArchSpec, meta: nn.Module | None = None) -> int:
    """Forward FLOPs for one image of ``arch``, from ``meta`` (``arch`` built on the meta
    device; built here when None), which a small model leaves moved to the CPU with its
    uninitialised weights zeroed: a caller passes one it does not use again."""
    meta = build(arch, device="meta") if meta is None else meta
    h, w = arch.image_size
    if h * w > CPU_COUNT_PIXELS or count_params(meta)[0] > CPU_COUNT_PARAMS:
        return count_flops(meta, torch.empty(1, arch.in_channels, h, w, device="meta"))
    model = meta.to_empty(device="cpu")  # no initialisation: the global random state is left as it was
    with torch.no_grad():
        for tensor in (*model.parameters(), *model.buffers()):
            tensor.zero_()
    return count_flops(model, torch.zeros(1, arch.in_channels, h, w))


# -- latency -----------------------------------------------------------------------------


# A latency is flagged unreliable when either limit is passed: the machine was busy while it
# was timed, and the figure may be the load's rather than the model's.
LATENCY_SPREAD_LIMIT = 0.5  # the rounds' medians differ by more than this, relative to the least
LATENCY_WAIT_LIMIT = 0.5  # the timing thread waited for a core this share of the quietest round


@dataclass(frozen=True)
class Latency:
    """A forward latency timed in rounds. ``ms``: the least of the rounds' medians (load
    on the machine only ever adds time, so the quietest round is the model's own cost);
    ``spread``: the relative range of the rounds' medians, ``(max - min) / min``;
    ``wait``: the share of that quietest round's time the timing thread spent off the CPU
    (waiting for a core: steady load, which slows every round alike); ``rounds``: the
    medians."""

    ms: float
    spread: float
    wait: float
    rounds: tuple[float, ...]

    @property
    def unreliable(self) -> bool:
        return self.spread > LATENCY_SPREAD_LIMIT or self.wait > LATENCY_WAIT_LIMIT


def estimate_latency(rounds: Sequence[Sequence[tuple[float, float]]]) -> Latency:
    """The estimate from per-run ``(wall, cpu)`` times (ms) grouped in rounds. A spike in a
    few runs of a round leaves its median alone; a round spoilt throughout loses to a
    quieter one and shows in the spread."""
    walls = [statistics.median(wall for wall, _ in r) for r in rounds]
    cpus = [statistics.median(cpu for _, cpu in r) for r in rounds]
    quiet = min(range(len(walls)), key=walls.__getitem__)
    low = walls[quiet]
    if low <= 0:
        return Latency(low, math.inf, 0.0, tuple(walls))
    return Latency(low, (max(walls) - low) / low, max(0.0, 1 - cpus[quiet] / low), tuple(walls))


def _timed_forward(model: nn.Module, images: torch.Tensor) -> Callable[[], tuple[float, float]]:
    """One forward pass of ``images``: (wall, cpu) ms. On CUDA both are the kernels' time
    (events, synchronised); on the CPU, the cpu time is the calling thread's own."""

    def once() -> tuple[float, float]:
        if images.is_cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            model(images)
            end.record()
            torch.cuda.synchronize()
            ms = start.elapsed_time(end)
            return ms, ms
        wall, cpu = time.perf_counter(), time.thread_time()
        model(images)
        return (time.perf_counter() - wall) * 1e3, (time.thread_time() - cpu) * 1e3

    return once


@contextmanager
def _threads(n: int | None):
    before = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def measure_latency(
    model: nn.Module,
    images: torch.Tensor,
    *,
    rounds: int = 5,
    repeats: int = 5,
    warmup: int = 2,
    threads: int | None = 1,
    timer: Callable[[], tuple[float, float]] | None = None,
) -> Latency:
    """Forward latency (eval, inference mode) from ``rounds`` rounds of ``repeats`` timed
    runs, after ``warmup`` untimed ones (cuDNN autotuning, cuFFT plans). On the CPU it is
    timed on ``threads`` threads (None: as set): one by default, so that the figure does
    not depend on how many trials share the machine, all of a thread's time is its own to
    count, and no thread of a parallel region waits on another that load keeps off a core
    (which made small models time hundreds of times slower). ``timer`` runs and times one
    forward pass (default: ``model(images)``; tests give a fake one)."""
    was_training = model.training
    model.eval()
    once = timer or _timed_forward(model, images)
    try:
        with torch.inference_mode(), _threads(None if images.is_cuda else threads):
            for _ in range(warmup):
                once()
            times = [[once() for _ in range(repeats)] for _ in range(rounds)]
    finally:
        model.train(was_training)
    return estimate_latency(times)


def latency_ms(model: nn.Module, images: torch.Tensor, *, repeats: int = 20, warmup: int = 5) -> float:
    """Median forward latency in ms of ``repeats`` runs on the threads as set (one round of
    ``measure_latency``)."""
    return measure_latency(model, images, rounds=1, repeats=repeats, warmup=warmup, threads=None).ms


# -- memory ------------------------------------------------------------------------------


class LiveTensorBytes(TorchDispatchMode):
    """Tracks the bytes of tensor storages that ops create while the mode is active.

    Each new storage is counted once (views and in-place results share their input's
    storage) and uncounted when Python frees it, so ``peak`` is the high-water mark of
    live tensor memory: the quantity CUDA's ``max_memory_allocated`` reports, without
    the caching allocator's rounding. Scratch space inside a kernel is not seen.
    """

    def __init__(self, existing: Iterable[torch.Tensor] = ()) -> None:
        super().__init__()
        self._live: dict[int, int] = {}
        self.live = 0
        for t in existing:
            self._add(t)
        self.base = self.peak = self.live

    def _add(self, t: torch.Tensor) -> None:
        storage = t.untyped_storage()
        key, size = storage.data_ptr(), storage.nbytes()
        if size == 0 or key in self._live:
            return
        self._live[key] = size
        self.live += size
        weakref.finalize(storage, self._free, key)

    def _free(self, key: int) -> None:
        self.live -= self._live.pop(key, 0)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor):
                self._add(t)
        self.peak = max(self.peak, self.live)
        return out


def _train_step(model: nn.Module, images: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
    logits = model(images)
    loss = F.cross_entropy(logits.float(), torch.zeros(len(images), dtype=torch.long, device=images.device))
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def peak_memory_mb(model: nn.Module, images: torch.Tensor) -> float:
    """Peak memory (MiB) of one AdamW training step on ``images``: weights, gradients,
    optimizer state, activations kept for backward and temporaries.

    CUDA: ``max_memory_allocated`` around the step. CPU: ``LiveTensorBytes`` (same
    quantity, counted from the tensors themselves, since the CPU allocator keeps no
    statistics). A first step creates the optimizer state, the second is measured;
    the learning rate is 0, so the weights are left as they were.
    """
    was_training = model.training
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.0)
    _train_step(model, images, optimizer)
    if images.is_cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        _train_step(model, images, optimizer)
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated()
    else:
        state = [t for s in optimizer.state.values() for t in s.values() if isinstance(t, torch.Tensor)]
        with LiveTensorBytes([*model.parameters(), *model.buffers(), *state, images]) as tracker:
            _train_step(model, images, optimizer)
        peak = tracker.peak
    model.train(was_training)
    return peak / 2**20


def activation_memory_mb(model: nn.Module, images: torch.Tensor) -> float:
    """MiB that a training-mode forward pass keeps alive for backward (its activations):
    the peak of live tensor bytes during forward and loss, above the weights, counted
    as ``peak_memory_mb`` counts (CUDA allocator statistics or ``LiveTensorBytes``)."""
    was_training = model.training
    model.train()
    labels = torch.zeros(len(images), dtype=torch.long, device=images.device)
    if images.is_cuda:
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        loss = F.cross_entropy(model(images).float(), labels)
        torch.cuda.synchronize()
        extra = torch.cuda.max_memory_allocated() - base
    else:
        with LiveTensorBytes([*model.parameters(), *model.buffers(), images, labels]) as tracker:
            loss = F.cross_entropy(model(images).float(), labels)
        extra = tracker.peak - tracker.base
    del loss
    model.train(was_training)
    return extra / 2**20


def train_step_ms(model: nn.Module, images: torch.Tensor, *, repeats: int = 5, warmup: int = 1) -> float:
    """Median wall time of one AdamW training step (forward, backward, update) in ms,
    synchronised on CUDA. The learning rate is 0, so the weights are left as they were."""
    was_training = model.training
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.0, foreach=True)
    times = []
    for i in range(warmup + repeats):
        if images.is_cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        _train_step(model, images, optimizer)
        if images.is_cuda:
            torch.cuda.synchronize()
        if i >= warmup:
            times.append((time.perf_counter() - t0) * 1e3)
    model.train(was_training)
    return statistics.median(times)


# -- everything at once ------------------------------------------------------------------


def counted_cost(arch: ArchSpec, model: nn.Module | None = None, *, meta: nn.Module | None = None) -> dict[str, float]:
    """The cost metrics known without running anything: params and params_trainable (of
    ``model``, or of ``arch`` built on the meta device), gflops and gmacs per image.
    ``meta``: ``arch`` already built on the meta device (building is a fifth of the time),
    which the count may move to the CPU (``flops_per_image``)."""
    meta = build(arch, device="meta") if meta is None else meta
    total, trainable = count_params(meta if model is None else model)
    flops = flops_per_image(arch, meta)
    return {
        "params": float(total),
        "params_trainable": float(trainable),
        "gflops": flops / 1e9,
        "gmacs": gmacs_of(flops),
    }


def timed_cost(
    model: nn.Module,
    image_shape: Sequence[int],
    *,
    device: torch.device | str,
    batch_size: int,
    repeats: int = 5,
    threads: int | None = 1,
) -> dict[str, float]:
    """The cost metrics measured by running ``model`` on random ``(C, H, W)`` images on
    ``device``: latency_ms at batch 1 (``measure_latency``'s rounds of ``repeats`` runs
    on ``threads``) with its latency_spread, latency_wait and latency_unreliable (1.0
    when the machine was too busy, see ``Latency``), then peak_mem_mb of a training step
    at ``batch_size``."""
    images = torch.randn(1, *image_shape, device=device)
    latency = measure_latency(model, images, repeats=repeats, threads=threads)
    return {
        "latency_ms": latency.ms,
        "latency_spread": latency.spread,
        "latency_wait": latency.wait,
        "latency_unreliable": float(latency.unreliable),
        "peak_mem_mb": peak_memory_mb(model, torch.randn(batch_size, *image_shape, device=device)),
    }


def measure(
    arch: ArchSpec,
    *,
    device: torch.device | str = "cpu",
    batch_size: int = 32,
    repeats: int = 5,
    timing: bool = True,
) -> dict[str, float]:
    """The cost table's metrics of ``arch`` (``main.py cost``): ``counted_cost``, and with
    ``timing`` the latency_ms, latency_spread and peak_mem_mb of ``timed_cost`` on a model
    built on ``device`` (on the threads as set)."""
    out = counted_cost(arch)
    if timing:
        model = build(arch, device=device)
        shape = (arch.in_channels, *arch.image_size)
        timed = timed_cost(model, shape, device=device, batch_size=batch_size, repeats=repeats, threads=None)
        out.update({k: timed[k] for k in ("latency_ms", "latency_spread", "peak_mem_mb")})
    return out

"""Zero-cost proxies: scores of a freshly built model from one batch, before any training,
that rank architectures without training them (Abdelfattah et al. 2021, "Zero-Cost Proxies
for Lightweight NAS"; NAS-Bench-Suite-Zero). Each is the paper's equation:

- ``naswot``: Mellor et al. 2021, "Neural Architecture Search without Training": log|K_H|,
  K_H[i, j] = N_A - Hamming(c_i, c_j), c_i image i's binary code (pre-activation > 0) over
  every activation unit of the network;
- ``jacob_cov``: Mellor et al. (v1): the eigenvalues of the correlation of the per-image
  input Jacobians, -sum(log(eig + k) + 1 / (eig + k)), k = 1e-5;
- ``synflow``: Tanaka et al. 2020, "Pruning neural networks without any data by
  iteratively conserving synaptic flow": **the natural log** of sum |theta * dR/dtheta|,
  R the summed output of the network with |theta| for theta on an all-ones image (in
  float64); it spans tens of orders of magnitude across architectures;
- ``snip``: Lee et al. 2019: sum |theta * dL/dtheta| of the batch's cross-entropy loss;
- ``grad_norm``: the L2 norm of that gradient, over all parameters at once.

Each runs on a deep copy of the model inside a forked, freshly seeded RNG: the model, its
buffers (BatchNorm's running statistics) and the global RNG are left exactly as they were,
so a trial trains the same with and without proxies, and a score does not depend on what
ran before it. A non-finite score is NaN, never an exception.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

PROXY_BATCH = 64  # images a trial's proxies see: the first of its training split
JACOB_K = 1e-5  # Mellor et al.'s regulariser of the correlation's eigenvalues

# The activations whose input signs are NASWOT's codes. As functions, not modules: nn.GELU
# and nn.ReLU call them, and so do the mixers that apply F.gelu themselves (LeViT, SGConv).
_ACTIVATIONS = {F.gelu, F.relu, torch.relu, F.hardswish, F.silu, F.leaky_relu, F.elu}


@contextmanager
def isolated(model: nn.Module) -> Iterator[nn.Module]:
    """A deep copy of ``model`` without gradients, in an RNG forked from the global one and
    seeded with 0 (dropout, drop path): whatever a proxy does to the copy or the RNG stays
    inside, and the same model gives the same score whatever ran before."""
    device = next(iter([*model.parameters(), *model.buffers()]), torch.empty(0)).device
    cuda = device.type == "cuda"
    with torch.random.fork_rng(devices=[device] if cuda else []):
        torch.default_generator.manual_seed(0)
        if cuda:  # only the model's device: fork_rng restores no other
            with torch.cuda.device(device):
                torch.cuda.manual_seed(0)
        net = copy.deepcopy(model)
        net.zero_grad(set_to_none=True)  # measure_cost's training step may have left some
        yield net


class _Codes(TorchFunctionMode):
    """NASWOT's kernel, summed over every activation call of a forward pass: a unit's code
    is 1 where its input is > 0, and K += c c^T + (1 - c)(1 - c)^T counts, per pair of
    images, the units on which they agree (N_A minus their Hamming distance)."""

    def __init__(self, batch: int) -> None:
        super().__init__()
        self.batch, self.units = batch, 0
        self.kernel = torch.zeros(batch, batch, dtype=torch.float64)  # (B, B)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        x = args[0] if args else None
        if func in _ACTIVATIONS and isinstance(x, torch.Tensor) and x.dim() > 1 and len(x) == self.batch:
            code = (x > 0).flatten(1).float()  # (B, units); integers exact in float32 up to 2^24
            agree = code @ code.T + (1 - code) @ (1 - code).T  # (B, B)
            self.kernel += agree.double().cpu()
            self.units += code.shape[1]
        return func(*args, **(kwargs or {}))


@torch.no_grad()
def naswot(model: nn.Module, images: torch.Tensor, labels: torch.Tensor | None = None) -> float:
    """log|K_H| over the activation units of a training-mode forward pass of ``images``
    (B, C, H, W); -inf (NaN here) when two images share a code everywhere."""
    with isolated(model) as net:
        codes = _Codes(len(images))
        with codes:
            net.train()(images)
        sign, logdet = torch.linalg.slogdet(codes.kernel)
        return logdet.item() if sign > 0 and codes.units else math.nan


def jacob_cov(model: nn.Module, images: torch.Tensor, labels: torch.Tensor | None = None) -> float:
    """-sum(log(eig + k) + 1/(eig + k)) of the eigenvalues of the (B, B) correlation of the
    images' Jacobians d(sum of logits)/d(image), as Mellor et al.'s v1 computes them."""
    with isolated(model) as net:
        net.train().requires_grad_(False)  # only the input's gradient is needed
        x = images.detach().clone().requires_grad_(True)
        net(x).sum().backward()
        jacobians = x.grad.flatten(1).double()  # (B, C*H*W)
        corr = torch.corrcoef(jacobians)  # (B, B); NaN where an image's Jacobian is constant
        if not torch.isfinite(corr).all():
            return math.nan
        eig = torch.linalg.eigvalsh(corr)  # (B,)
        return -(torch.log(eig + JACOB_K) + 1 / (eig + JACOB_K)).sum().item()


def _without_batchnorm(net: nn.Module) -> None:
    """BatchNorm layers replaced by identities, as the reference's synflow builds its copy
    of the network without them (zero-cost-nas ``bn=False``): with one all-ones image the
    batch statistics would normalise the signal away."""
    for parent in list(net.modules()):
        for name, child in parent.named_children():
            if isinstance(child, nn.modules.batchnorm._BatchNorm):
                setattr(parent, name, nn.Identity())


def synflow(model: nn.Module, images: torch.Tensor, labels: torch.Tensor | None = None) -> float:
    """The natural log of sum |theta * dR/dtheta|, R = sum of the logits of the network
    with every weight and buffer replaced by its absolute value on one all-ones image of
    ``images``' shape; in float64 (float32 where the model cannot run in it), eval mode
    (no dropout), BatchNorm left out."""
    with isolated(model) as net:
        _without_batchnorm(net)
        net.eval()
        with torch.no_grad():
            for t in net.state_dict().values():
                if t.is_floating_point():
                    t.abs_()
        for dtype in (torch.float64, torch.float32):
            try:
                net.to(dtype)
                ones = torch.ones(1, *images.shape[1:], dtype=dtype, device=images.device)  # (1, C, H, W)
                net(ones).sum().backward()
                break
            except RuntimeError:  # an op without a float64 kernel on this device
                net.zero_grad(set_to_none=True)
        saliency = [(p * p.grad).abs().sum() for p in net.parameters() if p.grad is not None]
        total = torch.stack(saliency).sum().item() if saliency else 0.0
        return math.log(total) if total > 0 else math.nan  # 0: no flow reaches the output


def loss_gradient(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> list[tuple[torch.Tensor, ...]]:
    """(theta, dL/dtheta) of every parameter the training-mode cross-entropy of the batch
    reaches: what snip and grad_norm are made of."""
    with isolated(model) as net:
        params = [p for p in net.train().parameters() if p.requires_grad]
        logits = net(images)  # (B, classes); at least float32, as training takes it
        loss = F.cross_entropy(logits.to(torch.promote_types(logits.dtype, torch.float32)), labels)
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        return [(p.detach(), g) for p, g in zip(params, grads, strict=True) if g is not None]


def snip_of(pairs: Sequence[tuple[torch.Tensor, ...]]) -> float:
    return torch.stack([(p * g).abs().sum() for p, g in pairs]).sum().item() if pairs else math.nan


def grad_norm_of(pairs: Sequence[tuple[torch.Tensor, ...]]) -> float:
    return torch.stack([g.square().sum() for _, g in pairs]).sum().sqrt().item() if pairs else math.nan


def snip(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    """sum |theta * dL/dtheta| of the batch's cross-entropy loss (SNIP's saliency, summed)."""
    return snip_of(loss_gradient(model, images, labels))


def grad_norm(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    """||dL/dtheta||_2 of the batch's cross-entropy loss, all parameters as one vector."""
    return grad_norm_of(loss_gradient(model, images, labels))


PROXIES: dict[str, Callable[..., float]] = {
    "naswot": naswot,
    "jacob_cov": jacob_cov,
    "synflow": synflow,
    "snip": snip,
    "grad_norm": grad_norm,
}
_FROM_LOSS = {"snip": snip_of, "grad_norm": grad_norm_of}  # one backward pass serves both
# Computed on every trial unless search.proxies says otherwise: the two that earn their
# cost on the digits table (BENCHMARKS.md, "Zero-cost proxies"): naswot ranks best within
# a GMACs band, synflow best over all architectures, in about 6 ms. jacob_cov, snip and
# grad_norm rank worse (grad_norm the wrong way) and none helps the surrogate as a feature.
DEFAULT = ("naswot", "synflow")


def _finite(value: float) -> float:
    return value if math.isfinite(value) else math.nan


def measure(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, names: Sequence[str] = DEFAULT
) -> dict[str, float]:
    """The proxies ``names`` of ``model`` on the batch ``images`` (B, C, H, W), ``labels``
    (B,), by name (NaN where a score is not finite), and ``proxy_s``: the seconds spent."""
    started = time.perf_counter()
    scores = {n: PROXIES[n](model, images, labels) for n in names if n not in _FROM_LOSS}
    if _FROM_LOSS.keys() & set(names):
        pairs = loss_gradient(model, images, labels)
        scores |= {n: _FROM_LOSS[n](pairs) for n in names if n in _FROM_LOSS}
    return {**{n: _finite(scores[n]) for n in names}, "proxy_s": time.perf_counter() - started}

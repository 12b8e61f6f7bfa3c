"""Cost measurement against hand-derived formulas and the papers' published counts."""

import math

import pytest
import torch

from blocks import ArchSpec, EmbeddingSpec, MixerSpec, StageSpec, build, presets
from blocks.cost import (
    LiveTensorBytes,
    count_flops,
    count_layer_params,
    count_params,
    flops_per_image,
    latency_ms,
    measure,
    peak_memory_mb,
)
from blocks.model import Block
from blocks.registry import MIXERS
from tests.blocks.helpers import small_arch

N, D, HIDDEN = 64, 32, 128


def _block(name, **opts):
    mixer = MIXERS[name](D, tokens_hw=(8, 8), **opts)
    return Block(D, mixer, mlp_hidden=HIDDEN)


def _mlp_flops():
    return 2 * (2 * N * D * HIDDEN)


@pytest.mark.parametrize("device", ["cpu", "meta"])
def test_attention_block_flops_match_hand_formula(device):
    heads, head_dim = 4, 8
    with torch.device(device):
        block = _block("attention", heads=heads, head_dim=head_dim)
        x = torch.empty(1, N, D) if device == "meta" else torch.randn(1, N, D)
    inner = heads * head_dim
    hand = 2 * (N * D * 3 * inner)  # q, k, v projections
    hand += 2 * (N * N * inner) * 2  # q k^T and attn v
    hand += 2 * (N * inner * D)  # output projection
    hand += _mlp_flops()
    counted = count_flops(lambda t: block(t, (8, 8)), x)
    assert abs(counted - hand) / hand < 0.01, (counted, hand)


@pytest.mark.parametrize("device", ["cpu", "meta"])
def test_global_filter_block_flops_match_hand_formula(device):
    h = w = 8
    with torch.device(device):
        block = _block("global_filter")
        x = torch.empty(1, N, D) if device == "meta" else torch.randn(1, N, D)
    fft = 2.5 * h * w * math.log2(h * w) * D  # one real 2-D transform per channel
    hand = 2 * fft + 6 * h * (w // 2 + 1) * D + _mlp_flops()  # rfft2, irfft2, complex product
    counted = count_flops(lambda t: block(t, (h, w)), x)
    assert abs(counted - hand) / hand < 0.01, (counted, hand)


def test_fourier_mixing_is_counted_not_zero():
    block = _block("fourier")
    counted = count_flops(lambda t: block(t, (8, 8)), torch.randn(1, N, D))
    fft = 5 * N * D * math.log2(N * D)  # complex 2-D transform over (tokens, hidden)
    assert abs(counted - (fft + _mlp_flops())) / (fft + _mlp_flops()) < 0.01


@pytest.mark.parametrize("name", sorted(MIXERS))
def test_meta_count_equals_real_count(name):
    arch = small_arch(name)
    real = count_flops(build(arch), torch.randn(1, 3, 16, 16))
    assert flops_per_image(arch) == real > 0


VIX_TABLES = {  # (mixer, hybrid): parameters as Tables 1 and 2 print them
    ("attention", False): 530_442,
    ("fourier", False): 267_786,
    ("attention", True): 623_178,
    ("fourier", True): 360_522,
    ("performer", False): 531_978,
    ("linformer", False): 415_754,
    ("nystrom", False): 530_970,
    ("performer", True): 624_714,
    ("linformer", True): 508_490,
    ("nystrom", True): 623_706,
}


@pytest.mark.parametrize(("key", "expected"), VIX_TABLES.items(), ids=lambda v: str(v))
def test_vision_xformers_parameter_counts_match_tables_1_and_2(key, expected):
    mixer, hybrid = key
    model = build(presets.vix(mixer, hybrid=hybrid), device="meta")
    assert count_layer_params(model) == expected
    total, trainable = count_params(model)
    free = 128 + 1025 * 128  # class token and position table, which the tables leave out
    if mixer == "linformer":
        free += 1025 * 256 * 4  # one shared (tokens, k) projection per layer
    assert total == trainable == expected + free


def test_vix_rope_variants_keep_the_parameter_count():
    """Table 5: RoPE adds no parameters (and removes the position table)."""
    for mixer in ("attention", "performer", "nystrom"):
        rope = build(presets.vix(mixer, positional="rope"), device="meta")
        assert count_layer_params(rope) == VIX_TABLES[(mixer, False)]


def test_gfnet_xs_matches_published_size_and_flops():
    arch = presets.gfnet("xs")
    params = count_params(build(arch, device="meta"))[0]
    gmacs = flops_per_image(arch) / 2e9
    assert abs(params / 16e6 - 1) < 0.05, params
    assert abs(gmacs / 2.9 - 1) < 0.05, gmacs


def test_live_tensor_bytes_tracks_peak_of_live_storages():
    mib = 2**20
    with LiveTensorBytes() as tracker:
        a = torch.ones(mib // 4)  # 1 MiB
        b = a * 2  # 2 MiB live
        c = b.view(-1)[: mib // 8]  # a view: no new storage
        del a
        d = b + 1  # 2 MiB live again, peak stays 2
        b.add_(1)  # in place: no new storage
    assert tracker.peak == 2 * mib
    assert tracker.live == 2 * mib
    del c, d


def test_peak_memory_grows_with_batch_and_leaves_weights_unchanged():
    model = build(small_arch("attention"))
    before = [p.detach().clone() for p in model.parameters()]
    small = peak_memory_mb(model, torch.randn(4, 3, 16, 16))
    large = peak_memory_mb(model, torch.randn(64, 3, 16, 16))
    weights = sum(p.numel() * 4 for p in model.parameters()) / 2**20
    assert large > small > 4 * weights  # weights, gradients and two AdamW moments at least
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_activation_memory_grows_with_tokens():
    def arch(mixer, size):
        stage = StageSpec(1, 32, MixerSpec(mixer))
        return ArchSpec((size, size), 5, (stage,), embedding=EmbeddingSpec("patch", 1))

    for mixer in ("attention", "fourier"):
        mem = [peak_memory_mb(build(arch(mixer, s)), torch.randn(2, 3, s, s)) for s in (16, 32)]
        assert mem[1] / mem[0] > 3.5, (mixer, mem)  # 4x the tokens; CPU SDPA is flash, so not N^2


def test_latency_is_a_positive_median_and_restores_mode():
    model = build(small_arch("fourier")).train()
    ms = latency_ms(model, torch.randn(1, 3, 16, 16), repeats=5, warmup=1)
    assert ms > 0 and model.training


def test_measure_reports_every_cost_metric():
    out = measure(small_arch("global_filter"), batch_size=4, repeats=3)
    assert set(out) == {"params", "params_trainable", "gmacs", "gflops", "latency_ms", "peak_mem_mb"}
    assert out["gflops"] == pytest.approx(2 * out["gmacs"])
    assert all(v > 0 for v in out.values())

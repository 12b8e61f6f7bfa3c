"""Cost measurement against hand-derived formulas and the papers' published counts."""

import math
from dataclasses import replace

import pytest
import torch

from blocks import ArchSpec, EmbeddingSpec, MixerSpec, StageSpec, build, cost, presets
from blocks.cost import (
    LATENCY_SPREAD_LIMIT,
    LATENCY_WAIT_LIMIT,
    LiveTensorBytes,
    count_flops,
    count_layer_params,
    count_params,
    flops_per_image,
    gmacs_of,
    latency_ms,
    measure,
    measure_latency,
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
def test_meta_count_equals_real_count(name, monkeypatch):
    arch = small_arch(name)
    real = count_flops(build(arch), torch.randn(1, 3, 16, 16))
    on_cpu = flops_per_image(arch)  # small enough: zeros through the CPU kernels
    monkeypatch.setattr(cost, "CPU_COUNT_PIXELS", 0)
    assert flops_per_image(arch) == on_cpu == real > 0  # and on the meta device


def test_a_count_leaves_the_random_state_and_a_large_model_on_the_meta_device():
    state = torch.get_rng_state()
    flops_per_image(small_arch("attention"))
    assert torch.equal(torch.get_rng_state(), state)  # a trial seeds, counts, then builds its model
    large = replace(small_arch("attention"), image_size=(64, 64))
    meta = build(large, device="meta")
    assert flops_per_image(large, meta) > 0 and next(meta.parameters()).is_meta


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
        free += 1025 * 64 * 4  # one shared (tokens, k) projection per layer
    assert total == trainable == expected + free


def test_vix_rope_variants_keep_the_parameter_count():
    """Table 5: RoPE adds no parameters (and removes the position table)."""
    for mixer in ("attention", "performer", "nystrom"):
        rope = build(presets.vix(mixer, positional="rope"), device="meta")
        assert count_layer_params(rope) == VIX_TABLES[(mixer, False)]


@pytest.mark.parametrize("name", presets.PRESETS)
def test_every_preset_has_its_sources_exact_count(name):
    """The numbers in PUBLISHED are copied from the sources (the ViX tables, the official
    GFNet models, timm's models), never computed here."""
    arch, published = presets.PRESETS[name](), presets.PUBLISHED[name]
    model = build(arch, device="meta")
    measured = count_layer_params(model) if published.layer else count_params(model)[0]
    assert measured - published.params == published.difference  # 0 but where a note explains it
    assert bool(published.difference) == bool(published.note)
    if published.gmacs is not None:  # the papers round their GFLOPs (multiply-adds) to one decimal
        assert round(gmacs_of(flops_per_image(arch)), 1) == published.gmacs


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


def _fake_timer(times, cpu_share=1.0):
    """A timing source: one forward pass after another, ``times`` (ms) of wall time, of
    which the timing thread had ``cpu_share`` on a core."""
    it = iter(times)

    def once():
        wall = next(it)
        return wall, wall * cpu_share

    return once


def _latency(times, rounds=5, repeats=5, cpu_share=1.0):
    model = build(small_arch("fourier"))
    timer = _fake_timer(times, cpu_share)
    return measure_latency(model, torch.zeros(1), rounds=rounds, repeats=repeats, warmup=2, timer=timer)


def test_latency_spikes_in_some_runs_leave_the_estimate_alone():
    """Load makes single runs 500x slower: two runs in every round, the warm-up too. No
    round's median moves, and the rounds agree."""
    quiet = [1.0 + 0.01 * (i % 7) for i in range(27)]
    spiked = [t * 500 if i < 2 or i % 5 in (1, 3) else t for i, t in enumerate(quiet)]
    latency = _latency(spiked)
    assert latency.ms == pytest.approx(1.0, rel=0.05) and not latency.unreliable
    assert latency.spread < 0.1 and len(latency.rounds) == 5


def test_latency_rounds_that_disagree_are_flagged_and_the_quiet_one_counts():
    """A busy machine through three of five rounds: the estimate is the quiet rounds',
    and the spread says the measurement cannot be trusted."""
    quiet = [2.0 + 0.02 * (i % 3) for i in range(27)]
    busy = [t * 500 if 2 + 5 <= i < 2 + 20 else t for i, t in enumerate(quiet)]
    latency = _latency(busy)
    assert latency.ms == pytest.approx(2.0, rel=0.05)
    assert latency.spread > 100 and latency.unreliable and LATENCY_SPREAD_LIMIT < 100
    assert _latency(busy, rounds=1, repeats=25).ms == pytest.approx(1000, rel=0.05)  # a plain median: 500x
    assert not _latency(quiet).unreliable
    assert _latency([1.0] * 7 + [1.4] * 5 + [1.0] * 15).spread == pytest.approx(0.4)  # (max - min) / min


def test_latency_under_steady_load_is_flagged_by_the_time_its_thread_waited():
    """Load that slows every round alike leaves the rounds in agreement; the timing
    thread's own CPU time shows that it spent most of each run waiting for a core."""
    steady = [50.0 + 0.1 * (i % 3) for i in range(27)]
    latency = _latency(steady, cpu_share=0.2)
    assert latency.spread < 0.01 and latency.wait == pytest.approx(0.8, abs=0.01) and latency.unreliable
    assert _latency(steady, cpu_share=0.9).wait == pytest.approx(0.1, abs=0.01)
    assert not _latency(steady, cpu_share=0.9).unreliable


def test_latency_of_a_real_model_has_its_spread_and_flag():
    model = build(small_arch("attention")).train()
    threads = torch.get_num_threads()
    latency = measure_latency(model, torch.randn(1, 3, 16, 16), rounds=3, repeats=3, warmup=1)
    assert latency.ms > 0 and latency.ms == min(latency.rounds) and len(latency.rounds) == 3
    assert latency.spread == pytest.approx((max(latency.rounds) - latency.ms) / latency.ms)
    assert 0 <= latency.wait <= 1
    unreliable = latency.spread > LATENCY_SPREAD_LIMIT or latency.wait > LATENCY_WAIT_LIMIT
    assert latency.unreliable == unreliable and model.training and torch.get_num_threads() == threads


def test_measure_reports_every_cost_metric():
    out = measure(small_arch("global_filter"), batch_size=4, repeats=3)
    assert set(out) == {"params", "params_trainable", "gmacs", "gflops", "latency_ms", "latency_spread", "peak_mem_mb"}
    assert out["gflops"] == pytest.approx(2 * out["gmacs"])
    assert out.pop("latency_spread") >= 0 and all(v > 0 for v in out.values())

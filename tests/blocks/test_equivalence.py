"""Each fast block against the slow, obvious computation it claims to equal."""

import math
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from blocks import build, presets
from blocks.mixers.fft_conv import FFTConv, fast_fft_size, fft_depthwise_conv2d
from blocks.mixers.fourier import FourierMix
from blocks.mixers.global_filter import GlobalFilter
from blocks.mixers.nystrom import nystrom_attention
from blocks.mixers.performer import favor_attention, orthogonal_features
from blocks.rope import Rotary2D
from blocks.transitions import FunnelPool


@pytest.mark.parametrize("kernel", range(3, 32, 2))
def test_fft_conv_equals_direct_depthwise_conv2d(kernel):
    x = torch.randn(2, 6, 13, 10, dtype=torch.float64)
    w = torch.randn(6, 1, kernel, kernel, dtype=torch.float64)
    b = torch.randn(6, dtype=torch.float64)
    direct = F.conv2d(x, w, b, padding=kernel // 2, groups=6)
    torch.testing.assert_close(fft_depthwise_conv2d(x, w, b), direct, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("kernel", [3, 7, 15, 31])
def test_fft_conv_layer_float32_matches_its_direct_method(kernel):
    layer = FFTConv(8, tokens_hw=(14, 14), kernel_size=kernel)
    x = torch.randn(2, 196, 8)
    fft = layer(x, (14, 14))
    layer.method = "direct"
    torch.testing.assert_close(fft, layer(x, (14, 14)), rtol=1e-4, atol=1e-5)


def test_fast_fft_size_is_smallest_7_smooth_at_least_n():
    def smooth(n):
        for p in (2, 3, 5, 7):
            while n % p == 0:
                n //= p
        return n == 1

    for n in range(1, 300):
        m = fast_fft_size(n)
        assert m >= n and smooth(m) and not any(smooth(k) for k in range(n, m))


def test_global_filter_is_a_circular_depthwise_convolution():
    h, w, d = 6, 5, 3
    layer = GlobalFilter(d, tokens_hw=(h, w))
    x = torch.randn(2, h * w, d, dtype=torch.float64)
    spectrum = torch.view_as_complex(layer.complex_weight.detach().double().contiguous())
    kernel = torch.fft.irfft2(spectrum, s=(h, w), dim=(0, 1))  # (h, w, D) spatial kernel
    grid = x.reshape(2, h, w, d)
    expected = torch.zeros_like(grid)
    for a in range(h):  # y[n] = sum_m k[m] x[n - m], indices mod (h, w)
        for b in range(w):
            expected += kernel[a, b] * torch.roll(grid, shifts=(a, b), dims=(1, 2))
    out = layer(x.float(), (h, w)).double()
    torch.testing.assert_close(out, expected.reshape(2, h * w, d), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("norm", ["backward", "ortho"])
def test_fourier_equals_dft_matrix_product(norm):
    n, d = 10, 6

    def dft(m):
        idx = torch.arange(m, dtype=torch.float64)
        return torch.exp(-2j * math.pi * torch.outer(idx, idx) / m)

    x = torch.randn(2, n, d, dtype=torch.float64)
    expected = (dft(n) @ x.to(torch.complex128) @ dft(d)).real
    if norm == "ortho":
        expected = expected / math.sqrt(n * d)
    out = FourierMix(d, tokens_hw=(2, 5), norm=norm)(x.float()).double()
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-4)


def _qkv(n=64, d=16):
    return [torch.randn(4, 2, n, d) * 0.5 for _ in range(3)]


@pytest.mark.slow
def test_performer_approaches_softmax_attention_as_features_grow():
    q, k, v = _qkv()
    exact = F.scaled_dot_product_attention(q, k, v)
    errors = []
    for features in (8, 64, 512, 4096):
        draws = []
        for seed in range(4):
            torch.manual_seed(seed)
            draws.append((favor_attention(q, k, v, orthogonal_features(features, 16)) - exact).abs().mean())
        errors.append(torch.stack(draws).mean().item())
    assert errors == sorted(errors, reverse=True), errors
    assert errors[-1] < errors[0] / 8
    assert errors[-1] < 0.1 * exact.abs().mean().item()


def test_orthogonal_features_are_orthogonal_within_blocks():
    w = orthogonal_features(16, 16)
    directions = w / w.norm(dim=1, keepdim=True)
    torch.testing.assert_close(directions @ directions.T, torch.eye(16), atol=1e-5, rtol=0)


def test_nystrom_approaches_softmax_attention_as_landmarks_approach_n():
    q, k, v = _qkv()
    exact = F.scaled_dot_product_attention(q, k, v)
    errors = [(nystrom_attention(q, k, v, m, 6) - exact).abs().mean().item() for m in (4, 16, 32, 64)]
    assert errors == sorted(errors, reverse=True), errors
    exact_at_n = (nystrom_attention(q, k, v, 64, 6) - exact).abs().max().item()
    assert exact_at_n < 1e-6  # every token its own landmark: softmax itself, not 6 iterations' pinv


def test_nystrom_with_as_many_landmarks_as_tokens_is_the_attention_block():
    """Same weights in, same output out: Nystrom (no value convolution) with 17 landmarks
    over 16 tokens and a class token equals softmax attention."""
    from blocks.mixers.attention import Attention
    from blocks.mixers.nystrom import Nystrom

    torch.manual_seed(0)
    attention = Attention(32, tokens_hw=(4, 4), prefix=1, heads=4, qkv_bias=True)
    nystrom = Nystrom(32, tokens_hw=(4, 4), prefix=1, heads=4, qkv_bias=True, landmarks=17, conv_kernel=0)
    nystrom.load_state_dict(attention.state_dict())
    x = torch.randn(2, 17, 32)
    torch.testing.assert_close(nystrom(x, (4, 4)), attention(x, (4, 4)), atol=1e-6, rtol=0)


def test_nystrom_landmarks_do_not_pad_when_m_does_not_divide_n():
    """With N = 10 tokens and 10 landmarks every token is its own landmark: exact."""
    q, k, v = _qkv(n=10)
    exact = F.scaled_dot_product_attention(q, k, v)
    torch.testing.assert_close(nystrom_attention(q, k, v, 10, 25), exact, atol=1e-4, rtol=1e-3)
    three = (nystrom_attention(q, k, v, 3, 6) - exact).abs().mean()
    assert three < exact.abs().mean()  # 3 uneven segments (4, 3, 3 tokens), not padded to 12


def test_rope_scores_depend_only_on_relative_offset():
    rope = Rotary2D(8)
    hw = (5, 6)
    q = torch.randn(8).expand(1, 1, 30, 8)
    k = torch.randn(8).expand(1, 1, 30, 8)
    scores = rope(q, hw, prefix=0)[0, 0] @ rope(k, hw, prefix=0)[0, 0].T  # (30, 30)
    ys, xs = torch.arange(30) // 6, torch.arange(30) % 6
    by_offset = {}
    for i in range(30):
        for j in range(30):
            by_offset.setdefault((int(ys[i] - ys[j]), int(xs[i] - xs[j])), []).append(scores[i, j])
    spreads = [max(v) - min(v) for v in by_offset.values()]
    assert max(spreads) < 1e-4
    assert len({round(float(v[0]), 3) for v in by_offset.values()}) > 10  # positions do matter


def test_rope_leaves_the_class_token_unrotated_and_keeps_norms():
    rope = Rotary2D(8)
    t = torch.randn(2, 3, 1 + 12, 8)
    out = rope(t, (3, 4), prefix=1)
    torch.testing.assert_close(out[:, :, 0], t[:, :, 0])
    torch.testing.assert_close(out.norm(dim=-1), t.norm(dim=-1))
    assert not torch.allclose(out[:, :, 2:], t[:, :, 2:])


def test_funnel_pool_keeps_the_class_token_and_halves_the_grid():
    pool = FunnelPool(4, 4, prefix=1, mode="mean")
    x = torch.randn(2, 1 + 8 * 6, 4)
    out, hw = pool(x, (8, 6))
    assert hw == (4, 3) and out.shape == (2, 1 + 12, 4)
    torch.testing.assert_close(out[:, 0], x[:, 0])
    grid = x[:, 1:].reshape(2, 8, 6, 4)
    torch.testing.assert_close(out[:, 1], grid[:, :2, :2].mean(dim=(1, 2)))


def test_funnel_pool_odd_grid_averages_only_real_tokens_and_max_and_sequence_stride():
    x = torch.randn(1, 49, 2)
    out, hw = FunnelPool(2, 2, prefix=0, mode="mean")(x, (7, 7))
    assert hw == (4, 4)
    grid = x.reshape(1, 7, 7, 2)
    torch.testing.assert_close(out[0, -1], grid[0, 6, 6])  # the corner window holds one token
    out, hw = FunnelPool(2, 2, prefix=0, mode="max", stride=(1, 2))(x, (7, 7))
    assert hw == (7, 4)
    torch.testing.assert_close(out[0, 0], grid[0, 0, :2].amax(dim=0))


def test_pool_query_only_rope_puts_pooled_queries_at_window_centroids():
    from blocks.rope import grid_coords

    ys, xs = grid_coords((2, 3), stride=(2, 2))
    assert ys.tolist() == [0.5, 0.5, 0.5, 2.5, 2.5, 2.5] and xs.tolist() == [0.5, 2.5, 4.5] * 2
    # Pooled queries live in the keys' frame: the window (1, 1) query (centroid (2.5, 2.5))
    # scores key (2, 2) as the window (0, 0) query (centroid (0.5, 0.5)) scores key (0, 0).
    rope = Rotary2D(8)
    q = rope(torch.randn(8).expand(1, 1, 4, 8), (2, 2), prefix=0, stride=(2, 2))[0, 0]
    k = rope(torch.randn(8).expand(1, 1, 16, 8), (4, 4), prefix=0)[0, 0]
    scores = q @ k.T  # (4 pooled queries, 16 keys)
    torch.testing.assert_close(scores[3, 2 * 4 + 2], scores[0, 0])
    assert not torch.isclose(scores[3, 0], scores[0, 0])


def test_mlp_mixer_token_width_is_given_as_the_paper_states_it():
    """Mixer-B/16 (Tolstikhin et al. 2021, Table 1): N = 196 tokens, D_S = 384. As a width
    the token MLP has the paper's 2 N D_S + D_S + N parameters; as a ratio, 0.5 is N/2."""
    from blocks.mixers.mlp_mixer import TokenMLP

    paper = TokenMLP(768, tokens_hw=(14, 14), token_hidden=384)
    assert sum(p.numel() for p in paper.parameters()) == 2 * 196 * 384 + 384 + 196
    half = TokenMLP(768, tokens_hw=(14, 14), token_ratio=0.5)
    assert tuple(half.net[0].weight.shape) == (98, 196)
    x = torch.randn(2, 196, 768)
    assert paper(x).shape == x.shape


def _gfnet_reference(state: dict, images: torch.Tensor, *, depth: int, eps: float = 1e-6) -> torch.Tensor:
    """GFNet from the paper's equations (Rao et al. 2021, section 3 and the official block),
    written here without archsweep's modules: patch embedding and a position table, then
    ``x = x + MLP(LN2(K * LN1(x)))`` per block, where ``K *`` is the global filter: the 2-D
    real FFT of each channel over the token grid (orthonormal), times a learned complex
    half-spectrum, and back. Final LayerNorm, mean over tokens, linear head."""
    x = F.conv2d(images, state["embed.proj.weight"], state["embed.proj.bias"], stride=16)  # (B, D, h, w)
    B, D, h, w = x.shape
    x = x.flatten(2).transpose(1, 2) + state["positional.table"]  # (B, N, D)

    def norm(t, key):
        return F.layer_norm(t, (D,), state[f"{key}.weight"], state[f"{key}.bias"], eps)

    for i in range(depth):
        at = f"stages.0.blocks.{i}"
        u = norm(x, f"{at}.norm1").reshape(B, h, w, D)
        weight = torch.complex(state[f"{at}.mixer.complex_weight"][..., 0], state[f"{at}.mixer.complex_weight"][..., 1])
        u = torch.fft.irfft2(torch.fft.rfft2(u, dim=(1, 2), norm="ortho") * weight, s=(h, w), dim=(1, 2), norm="ortho")
        u = norm(u.reshape(B, h * w, D), f"{at}.norm2")
        u = F.gelu(F.linear(u, state[f"{at}.mlp.0.weight"], state[f"{at}.mlp.0.bias"]))
        x = x + F.linear(u, state[f"{at}.mlp.3.weight"], state[f"{at}.mlp.3.bias"])  # the one residual
    x = norm(x, "norm").mean(dim=1)
    return F.linear(x, state["head.weight"], state["head.bias"])


@pytest.mark.slow
def test_gfnet_ti_is_the_papers_function_with_the_same_weights():
    torch.manual_seed(0)
    arch = presets.gfnet("ti")
    model = build(arch).eval()
    with torch.no_grad():  # weights of the scale a trained model has, not the tiny initial ones
        for p in model.parameters():
            p.normal_(0, 1 / max(1, p.shape[-1]) ** 0.5)
    images = torch.randn(2, 3, 224, 224)
    state = dict(model.state_dict())
    with torch.no_grad():
        ours, reference = model(images), _gfnet_reference(state, images, depth=12)
    assert 0.1 < reference.abs().max() < 100  # logits of a usual scale, not two zeros
    torch.testing.assert_close(ours, reference, rtol=0, atol=1e-5)
    two_residuals = build(replace(arch, stages=(replace(arch.stages[0], block="pre"),))).eval()
    two_residuals.load_state_dict(state)
    with torch.no_grad():  # the generic block, same weights: another function
        assert (two_residuals(images) - reference).abs().max() > 100 * 1e-5

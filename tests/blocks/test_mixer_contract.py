"""The contract every registered mixer keeps, run over the whole registry."""

import pytest
import torch

from blocks import MIXERS, WIRINGS, Transition, build, check
from tests.blocks.helpers import heads_for, small_arch, small_options, two_stage

ALL = sorted(MIXERS)
CASES = [(name, head) for name in ALL for head in heads_for(name)]


def make_mixer(name, dim=16, hw=(4, 4), prefix=0, **kw):
    return MIXERS[name](dim, tokens_hw=hw, prefix=prefix, **{**small_options(name), **kw})


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("prefix", [0, 1])
def test_mixer_maps_tokens_to_tokens_and_trains_every_parameter(name, prefix):
    if prefix and not MIXERS[name].cls_token:
        pytest.skip(f"{name} takes no class token")
    mixer = make_mixer(name, prefix=prefix)
    x = torch.randn(3, prefix + 16, 16, requires_grad=True)  # (B, N, D)
    out = mixer(x, (4, 4))
    assert out.shape == x.shape
    assert torch.isfinite(out).all()
    (out * torch.randn_like(out)).sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    for pname, p in mixer.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, f"no gradient reaches {pname}"


@pytest.mark.parametrize("name", ALL)
def test_mixer_output_depends_on_other_tokens(name):
    """A token mixer mixes: changing one token changes the output at another."""
    mixer = make_mixer(name).eval()
    x = torch.randn(1, 16, 16)
    y = x.clone()
    y[0, 5] += 1.0  # grid cell (1, 1): inside even a 3x3 kernel around (0, 0)
    assert not torch.allclose(mixer(x, (4, 4))[0, 0], mixer(y, (4, 4))[0, 0], atol=1e-6)


# The default wiring in the fast tier; the other four are `slow` (140 models in all, 15 s).
@pytest.mark.parametrize("wiring", [pytest.param(w, marks=() if w == "pre" else pytest.mark.slow) for w in WIRINGS])
@pytest.mark.parametrize(("name", "head"), CASES)
def test_model_with_every_head_and_block_wiring_trains(name, head, wiring):
    """Every parameter takes part: none is built that no forward pass reads."""
    model = build(small_arch(name, head=head, block=wiring))
    images = torch.randn(4, 3, 16, 16)
    logits = model(images)
    assert logits.shape == (4, 5) and torch.isfinite(logits).all()
    torch.nn.functional.cross_entropy(logits, torch.arange(4)).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing, missing


@pytest.mark.parametrize("name", [n for n in ALL if MIXERS[n].rope])
def test_rope_changes_the_model_it_is_built_into(name):
    torch.manual_seed(1)
    plain = build(small_arch(name, positional="none"))
    torch.manual_seed(1)
    rotary = build(small_arch(name, positional="rope"))
    images = torch.randn(2, 3, 16, 16)
    assert not torch.allclose(plain(images), rotary(images))


@pytest.mark.parametrize("name", ALL)
def test_mixer_after_funnel_pool_is_built_for_the_pooled_grid(name):
    arch = two_stage("attention", name, Transition("pool", "max"))
    model = build(arch)
    assert model(torch.randn(2, 3, 16, 16)).shape == (2, 5)


@pytest.mark.parametrize("name", [n for n in ALL if MIXERS[n].query_pool])
def test_pool_query_only_mixers_take_unpooled_keys(name):
    mixer = make_mixer(name)
    q_tokens, kv_tokens = torch.randn(2, 4, 16), torch.randn(2, 16, 16)
    out = mixer(q_tokens, (2, 2), kv=kv_tokens, kv_hw=(4, 4))
    assert out.shape == (2, 4, 16)
    model = build(two_stage("attention", name, Transition("pool", query_only=True), head="cls"))
    assert model(torch.randn(2, 3, 16, 16)).shape == (2, 5)


@pytest.mark.parametrize("name", ALL)
def test_mixer_runs_under_bf16_autocast(name):
    """FFT mixers keep a float32 island (CPU FFTs reject bfloat16); all run under AMP."""
    model = build(small_arch(name))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(torch.randn(2, 3, 16, 16))
    assert torch.isfinite(logits.float()).all()


@pytest.mark.parametrize("name", ALL)
def test_every_mixer_builds_on_the_meta_device(name):
    assert check(small_arch(name)) == []
    model = build(small_arch(name), device="meta")
    assert all(p.device.type == "meta" for p in model.parameters())


def test_performer_redraws_features_on_its_schedule_in_training_only():
    mixer = make_mixer("performer", redraw=2)
    x = torch.randn(1, 16, 16)
    first = mixer.proj.clone()
    mixer(x, (4, 4))
    mixer(x, (4, 4))
    assert torch.equal(mixer.proj, first)  # steps 0 and 1
    mixer(x, (4, 4))
    assert not torch.equal(mixer.proj, first)  # redrawn at step 2
    mixer.eval()
    drawn = mixer.proj.clone()
    for _ in range(4):
        mixer(x, (4, 4))
    assert torch.equal(mixer.proj, drawn)
    assert "proj" in mixer.state_dict()  # saved, so a reloaded model computes the same


@pytest.mark.parametrize("name", [n for n in ALL if MIXERS[n].rope])
def test_rope_model_trains_after_an_inference_mode_probe(name):
    """Cached rotary tables made during a latency probe must not poison training: the
    tables the probe cached are ordinary tensors, and the probed model, back in training
    mode, gets the gradients of the same model never probed."""
    from blocks.cost import latency_ms
    from blocks.rope import Rotary2D

    torch.manual_seed(1)
    probed = build(small_arch(name, positional="rope"))
    torch.manual_seed(1)
    fresh = build(small_arch(name, positional="rope"))
    images = torch.randn(2, 3, 16, 16)
    latency_ms(probed, images[:1], repeats=1, warmup=1)
    assert probed.training
    rotaries = [m for m in probed.modules() if isinstance(m, Rotary2D)]
    tables = [t for m in rotaries for pair in m._cache.values() for t in pair]
    assert rotaries and all(m._cache for m in rotaries)  # the probe did fill the caches
    assert not [t for t in tables if t.is_inference()]
    for model in (probed, fresh):
        torch.manual_seed(2)  # the same dropout draws, if any
        model(images).sum().backward()
    for (pname, p), q in zip(probed.named_parameters(), fresh.parameters(), strict=True):
        assert p.grad is not None and torch.allclose(p.grad, q.grad), f"{pname}: not the unprobed model's gradient"


@pytest.mark.parametrize("prefix", [0, 1])
@pytest.mark.parametrize("name", [n for n in ALL if MIXERS[n].takes("proj_kernel")])
def test_convolutional_projections_train_every_parameter(name, prefix):
    """CvT's projections, class token or not: every parameter trains, the depthwise convs
    and their BatchNorms too."""
    torch.manual_seed(0)
    mixer = make_mixer(name, prefix=prefix, proj_kernel=3)
    x = torch.randn(3, prefix + 16, 16, requires_grad=True)
    out = mixer(x, (4, 4))
    assert out.shape == x.shape
    (out * torch.randn_like(out)).sum().backward()
    for pname, p in mixer.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, f"no gradient reaches {pname}"
    assert getattr(mixer, "qkv", mixer).conv_q.conv.groups == 16  # depthwise

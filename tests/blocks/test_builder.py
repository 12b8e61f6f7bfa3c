"""What the builder builds, and what it refuses, with what sentence."""

from dataclasses import replace
from pathlib import Path

import pytest
import torch

import blocks
from blocks import (
    WIRINGS,
    ArchError,
    ArchSpec,
    EmbeddingSpec,
    MixerSpec,
    StageSpec,
    Transition,
    build,
    check,
    describe,
    from_dict,
    summary,
    to_dict,
    token_grids,
)
from blocks.registry import MIXERS, register
from tests.blocks.helpers import small_arch, two_stage


def messages(arch):
    return [str(p) for p in check(arch)]


def test_summary_reads_as_the_layout():
    arch = ArchSpec(
        (16, 16),
        10,
        (
            StageSpec(2, 64, MixerSpec("fourier")),
            StageSpec(2, 128, MixerSpec("attention"), transition=Transition("pool", "mean")),
        ),
        embedding=EmbeddingSpec("conv", 2),
        positional="sincos",
    )
    assert summary(arch) == "conv/2+sincos > [fourier x2 @64] > pool(mean) > [attention x2 @128] > gap > fc10"
    assert build(arch).summary == summary(arch)


def test_depth_zero_stage_is_left_out():
    arch = two_stage("attention", "fourier", Transition("pool"))
    arch = ArchSpec(arch.image_size, 5, (arch.stages[0], StageSpec(0, 24, MixerSpec("fourier"))))
    assert "fourier" not in summary(arch)
    assert len(build(arch).stages) == 1


def test_token_grids_follow_pool_merge_and_stride():
    stages = (
        StageSpec(1, 8, MixerSpec("global_filter")),
        StageSpec(1, 16, MixerSpec("global_filter"), transition=Transition("merge")),
        StageSpec(1, 16, MixerSpec("attention", {"heads": 2}), transition=Transition("pool", stride=(1, 2))),
        StageSpec(1, 16, MixerSpec("attention", {"heads": 2}), transition=Transition("pool", "max")),
    )
    arch = ArchSpec((32, 32), 3, stages, embedding=EmbeddingSpec("patch", 2))
    assert token_grids(arch) == [(16, 16), (8, 8), (8, 4), (4, 2)]
    assert build(arch)(torch.randn(1, 3, 32, 32)).shape == (1, 3)


def test_spec_round_trips_through_plain_dicts():
    arch = two_stage("performer", "attention", Transition("pool", "max", (1, 2), True), head="cls")
    again = from_dict(to_dict(arch))
    assert again == arch and summary(again) == summary(arch)


def test_spec_is_frozen():
    arch = small_arch("fourier")
    with pytest.raises(AttributeError):
        arch.head = "cls"
    with pytest.raises(TypeError):
        arch.stages[0].mixer.options["heads"] = 3


def test_every_registered_block_has_a_one_line_description():
    listing = describe()
    assert set(listing["mixer"]) == set(MIXERS)
    # one family per file: every mixer file registers what it defines, and nothing else does
    files = {p.stem for p in (Path(blocks.__file__).parent / "mixers").glob("*.py") if not p.stem.startswith("_")}
    assert {cls.__module__.rsplit(".", 1)[-1] for cls in MIXERS.values()} == files
    assert set(listing["embedding"]) == {"patch", "conv", "overlap", "conv_tokenizer"}
    assert set(listing["positional"]) == {"learned", "sincos", "rope", "none"}
    assert set(listing["transition"]) == {"none", "pool", "merge", "pit_pool", "conv_embed"}
    assert set(listing["head"]) == {"cls", "gap", "seq_pool"}
    for kind in listing.values():
        for name, line in kind.items():
            assert line and "\n" not in line, name


def test_registering_a_name_twice_raises():
    with pytest.raises(ValueError, match="registered twice"):
        register(MIXERS, "attention")(type("Other", (), {}))


@pytest.mark.parametrize(
    ("arch", "expected"),
    [
        (small_arch("global_filter", head="cls"), "stages[0].mixer: global_filter mixes image tokens only"),
        (small_arch("fft_conv", head="cls"), "cannot carry a class token; use head: gap"),
        (small_arch("mlp_mixer", head="cls"), "stages[0].mixer: mlp_mixer"),
        (small_arch("fourier", positional="rope"), "positional rope rotates queries and keys"),
        (small_arch("linformer", positional="rope"), "linformer has no such queries and keys"),
        (
            two_stage("attention", "nystrom", Transition("pool", query_only=True)),
            "stages[1].transition.query_only: pool-query-only needs",
        ),
        (
            two_stage("attention", "linformer", Transition("pool", query_only=True)),
            "use attention, performer",
        ),
        (two_stage("attention", "attention", Transition("merge", query_only=True)), "applies to a pool transition"),
        (two_stage("attention", "attention", Transition("pool", "avg")), "pool mode must be mean or max"),
        (two_stage("attention", "attention", Transition("warp")), "unknown transition 'warp'"),
    ],
)
def test_refusals_say_why_and_what_would_work(arch, expected):
    found = messages(arch)
    assert any(expected in m for m in found), found
    with pytest.raises(ArchError) as err:
        build(arch)
    assert [str(p) for p in err.value.problems] == found


def test_unknown_names_get_a_did_you_mean():
    arch = small_arch("fourier")
    typo = ArchSpec(
        arch.image_size,
        5,
        (StageSpec(1, 16, MixerSpec("fourrier")),),
        embedding=EmbeddingSpec("patches", 4),
        positional="sin-cos",
        head="clss",
    )
    found = messages(typo)
    assert "stages[0].mixer: unknown mixer 'fourrier' (did you mean 'fourier'?)" in found[-1]
    assert any("embedding: unknown embedding 'patches' (did you mean 'patch'?)" in m for m in found)
    assert any("(did you mean 'sincos'?)" in m for m in found)
    assert any("head: unknown head 'clss' (did you mean 'cls'?)" in m for m in found)


def test_mixer_options_are_checked_by_name_and_type():
    arch = ArchSpec(
        (16, 16),
        5,
        (StageSpec(1, 16, MixerSpec("attention", {"head": 2, "qkv_bias": "yes", "tokens_hw": (2, 2)})),),
    )
    found = messages(arch)
    assert "stages[0].mixer.head: attention has no option 'head' (did you mean 'heads'?)" in found[0]
    assert "stages[0].mixer.qkv_bias: expected true or false, got 'yes'" in found
    assert "stages[0].mixer.tokens_hw: is set by the builder; remove it" in found


def test_constructor_refusals_are_collected_with_their_stage():
    stages = (
        StageSpec(1, 30, MixerSpec("attention", {"heads": 4})),
        StageSpec(1, 16, MixerSpec("fft_conv", {"kernel_size": 4})),
    )
    found = messages(ArchSpec((16, 16), 5, stages))
    assert found == [
        "stages[0].mixer: width 30 does not split into 4 heads; pick heads dividing it or set head_dim",
        "stages[1].mixer: kernel_size must be odd so that 'same' padding is symmetric, got 4",
    ]


def test_patch_size_that_does_not_divide_the_image():
    arch = ArchSpec((30, 30), 5, (StageSpec(1, 16, MixerSpec("fourier")),), embedding=EmbeddingSpec("patch", 4))
    assert messages(arch) == [
        "embedding.patch_size: 4 does not divide the 30x30 image; patch sizes that do: [1, 2, 3, 5, 6, 10, 15, 30]"
    ]


def test_grid_refusals_merge_odd_and_pool_of_one_token():
    stages = (
        StageSpec(1, 8, MixerSpec("fourier")),
        StageSpec(1, 8, MixerSpec("fourier"), transition=Transition("merge")),
    )
    odd = ArchSpec((12, 12), 5, stages, embedding=EmbeddingSpec("patch", 4))  # 3x3 grid
    assert "merge halves the grid and needs even sides, got 3x3" in messages(odd)[0]
    stages = (
        StageSpec(1, 8, MixerSpec("fourier")),
        StageSpec(1, 8, MixerSpec("fourier"), transition=Transition("pool")),
    )
    single = ArchSpec((4, 4), 5, stages, embedding=EmbeddingSpec("patch", 4))
    assert "pooling cannot shrink a 1x1 grid" in messages(single)[0]


def test_rope_needs_a_head_dim_divisible_by_four():
    arch = ArchSpec((16, 16), 5, (StageSpec(1, 12, MixerSpec("attention", {"heads": 2})),), positional="rope")
    assert messages(arch) == [
        "stages[0].mixer: rope needs a head dimension divisible by 4 (2 axes x rotation pairs), got 6"
    ]


def test_all_problems_are_reported_at_once():
    arch = ArchSpec(
        (16, 16),
        5,
        (
            StageSpec(-1, 0, MixerSpec("global_filter")),
            StageSpec(1, 16, MixerSpec("fourier"), transition=Transition("pool", query_only=True), block="sideways"),
        ),
        head="cls",
        norm_eps=0,
    )
    found = messages(arch)
    for expected in (
        "norm_eps: expected a number in (0, 1), got 0",
        "stages[1].block: must be one of pre, post, shared, mid, bare, got 'sideways'",
        "stages[0].depth: expected a non-negative integer, got -1",
        "stages[0].width: expected a positive integer, got 0",
        "stages[0].mixer: global_filter mixes image tokens only",
        "stages[1].transition.query_only: pool-query-only",
    ):
        assert any(m.startswith(expected) for m in found), (expected, found)


def test_linformer_refuses_another_token_count_at_run_time():
    model = build(small_arch("linformer"))
    with pytest.raises(ValueError, match="linformer was built for 16 tokens and got 64"):
        model(torch.randn(1, 3, 32, 32))


@pytest.mark.parametrize("name", ["attention", "fourier", "global_filter", "fft_conv", "performer", "long_conv"])
def test_resolution_change_interpolates_positions_and_filters(name):
    model = build(small_arch(name))
    assert model(torch.randn(2, 3, 24, 24)).shape == (2, 5)


def test_post_norm_blocks_end_each_residual_with_layernorm():
    stage = StageSpec(1, 16, MixerSpec("fourier", {"norm": "backward"}), block="post")
    arch = ArchSpec((16, 16), 5, (stage,))
    model = build(arch)
    block = model.stages[0].blocks[0]
    out = block(torch.randn(2, 16, 16) * 50, (4, 4))
    torch.testing.assert_close(out.mean(-1), torch.zeros(2, 16), atol=1e-5, rtol=0)
    assert summary(arch) == "patch/4+learned > [fourier x1 @16 post] > gap > fc5"


@pytest.mark.parametrize("wiring", WIRINGS)
def test_each_block_wiring_computes_its_formula(wiring):
    """Written out from the papers: ViT's two pre-norm residuals, FNet's post-norm ones,
    GFNet's one residual around the filter and the MLP together, CCT's normalised stream
    between a pre-norm mixer residual and a bare MLP residual, LeViT's residuals with no norm."""
    torch.manual_seed(0)
    stage = StageSpec(1, 16, MixerSpec("global_filter"), block=wiring)
    block = build(ArchSpec((16, 16), 5, (stage,))).stages[0].blocks[0]
    x, hw = torch.randn(2, 16, 16), (4, 4)
    n1, n2, mix, mlp = block.norm1, block.norm2, lambda t: block.mixer(t, hw), block.mlp
    if wiring == "pre":
        y = x + mix(n1(x))
        expected = y + mlp(n2(y))
    elif wiring == "post":
        y = n1(x + mix(x))
        expected = n2(y + mlp(y))
    elif wiring == "mid":
        y = n2(x + mix(n1(x)))
        expected = y + mlp(y)
    elif wiring == "bare":
        y = x + mix(x)
        expected = y + mlp(y)
    else:
        expected = x + mlp(n2(mix(n1(x))))
    torch.testing.assert_close(block(x, hw), expected, rtol=0, atol=0)
    for other in WIRINGS:  # the same weights wired otherwise compute another function
        if other != wiring:
            rewired = build(ArchSpec((16, 16), 5, (replace(stage, block=other),))).stages[0].blocks[0]
            rewired.load_state_dict(block.state_dict(), strict=False)  # bare has no norms to take
            assert not torch.allclose(rewired(x, hw), expected, atol=1e-3)


def test_norm_eps_reaches_every_layernorm_and_changes_the_function():
    stages = (StageSpec(1, 16, MixerSpec("attention", {"heads": 2})), StageSpec(1, 32, MixerSpec("fourier")))
    arch = ArchSpec((16, 16), 5, stages, embedding=EmbeddingSpec("overlap", 4), norm_eps=1e-6)
    model = build(arch)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.LayerNorm)]
    assert len(norms) == 2 * 2 + 1 + 1  # two per block, the final norm, the overlap embedding's
    assert {m.eps for m in norms} == {1e-6}
    torch.manual_seed(0)
    images = torch.randn(2, 3, 16, 16) * 1e-3  # small activations, where the epsilon matters
    default = build(replace(arch, norm_eps=1e-5))
    default.load_state_dict(model.state_dict())
    assert not torch.allclose(model(images), default(images), rtol=0, atol=1e-6)


def test_merge_has_no_class_token_projection_without_a_class_token():
    def merged(head, mixer):
        stages = (
            StageSpec(1, 16, MixerSpec(mixer)),
            StageSpec(1, 32, MixerSpec(mixer), transition=Transition("merge")),
        )
        return build(ArchSpec((16, 16), 5, stages, head=head))

    gap = dict(merged("gap", "global_filter").named_parameters())
    cls = dict(merged("cls", "attention").named_parameters())
    assert not any("head_proj" in name for name in gap)
    assert {n for n in cls if "head_proj" in n} == {
        "stages.1.transition.head_proj.weight",
        "stages.1.transition.head_proj.bias",
    }
    model = merged("cls", "attention")
    model(torch.randn(2, 3, 16, 16)).sum().backward()  # every parameter takes part in the forward pass
    assert all(p.grad is not None for p in model.parameters())


def test_width_change_projects_and_conv_stem_and_overlap_embed():
    for emb in (EmbeddingSpec("conv", 2, {"channels": [8], "norm_act": True}), EmbeddingSpec("overlap", 4)):
        arch = ArchSpec(
            (16, 16),
            5,
            (StageSpec(1, 8, MixerSpec("fourier")), StageSpec(1, 12, MixerSpec("fourier"))),
            embedding=emb,
        )
        assert build(arch)(torch.randn(2, 3, 16, 16)).shape == (2, 5)


def _normalising(arch, mean=(0.5, 0.4, 0.3), std=(0.25, 0.2, 0.1)):
    return replace(arch, input_mean=mean, input_std=std)


def test_a_model_normalises_its_input_with_buffers_that_travel_with_it():
    import yaml

    from blocks.cost import count_params, flops_per_image

    plain = small_arch("attention")
    arch = _normalising(plain)
    again = from_dict(yaml.safe_load(yaml.safe_dump(to_dict(arch))))  # as arch.yaml holds it
    assert again == arch and again.input_mean == (0.5, 0.4, 0.3) and summary(again) == summary(plain)
    assert from_dict(to_dict(plain)).input_mean is None  # an arch.yaml written before has none
    torch.manual_seed(0)
    bare = build(plain).eval()
    torch.manual_seed(0)
    model = build(arch).eval()
    assert count_params(model) == count_params(bare) and flops_per_image(arch) == flops_per_image(plain)
    assert "input_mean" not in bare.state_dict() and not list(bare.buffers())  # None: nothing added
    assert set(model.state_dict()) - set(bare.state_dict()) == {"input_mean", "input_std"}
    raw = torch.rand(2, 3, 16, 16)
    mean, std = torch.tensor(arch.input_mean).view(1, 3, 1, 1), torch.tensor(arch.input_std).view(1, 3, 1, 1)
    with torch.no_grad():
        assert torch.equal(model(raw), bare((raw - mean) / std))
    rebuilt = build(again)  # weights and statistics come back from the YAML and the state dict
    rebuilt.load_state_dict(model.state_dict())
    with torch.no_grad():
        assert torch.equal(rebuilt.eval()(raw), model(raw))


@pytest.mark.parametrize(
    ("mean", "std", "expected"),
    [
        ((0.5, 0.5, 0.5), None, "input_std: input_mean and input_std go together"),
        ((0.5,), (1.0, 1.0, 1.0), "input_mean: expected 3 finite numbers, one per channel, got (0.5,)"),
        ((0.5, 0.5, 0.5), (1.0, 0.0, 1.0), "input_std: must be positive, got (1.0, 0.0, 1.0)"),
        ((0.5, "a", 0.5), (1.0, 1.0, 1.0), "input_mean: expected 3 finite numbers, one per channel"),
    ],
)
def test_input_statistics_that_cannot_work_are_refused(mean, std, expected):
    found = messages(_normalising(small_arch("fourier"), mean, std))
    assert len(found) == 1 and found[0].startswith(expected), found

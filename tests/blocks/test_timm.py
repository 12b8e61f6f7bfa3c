"""timm checkpoints imported into archsweep, with timm as the oracle (random weights,
pretrained=False, nothing downloaded; timm comes from requirements-oracle.txt and is
imported by the ``timm`` fixture in conftest.py)."""

import pickle
import random
from pathlib import Path

import pytest
import torch
import yaml

import main
from blocks import build, from_dict
from blocks.cost import count_params
from blocks.presets import PRESETS, PUBLISHED
from blocks.timm_import import CheckpointError, import_timm, load_checkpoint
from search.spec import load
from search.spec.arch import RandomTrial, to_arch
from search.spec.space import sample

# timm's model name: the archsweep preset a user would write for it.
PAPER_MODELS = {
    "deit_tiny_patch16_224": "deit-ti",
    "deit_small_patch16_224": "deit-s",
    "vit_base_patch16_224": "vit-b16",
    "mixer_b16_224": "mixer-b16",
}
TOLERANCE = 1e-5  # fp32 logits


def randomised(model: torch.nn.Module) -> torch.nn.Module:
    """timm initialises biases to 0 and norms to 1: a loader that dropped or swapped them
    would still agree. Every parameter is moved off its initial value."""
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p), alpha=0.02)
    return model.eval()


def max_difference(ours: torch.nn.Module, reference: torch.nn.Module, image_size=(224, 224), channels=3) -> float:
    images = torch.randn(2, channels, *image_size)
    with torch.no_grad():
        return (ours.eval()(images) - reference(images)).abs().max().item()


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# deit-ti in the fast tier; the larger models take about 3 s each
@pytest.mark.parametrize(
    "timm_name", [pytest.param(n, marks=() if n == "deit_tiny_patch16_224" else pytest.mark.slow) for n in PAPER_MODELS]
)
def test_paper_models_have_timms_counts_and_logits(timm, timm_name):
    reference = randomised(timm.create_model(timm_name, pretrained=False))
    arch, model = import_timm(reference.state_dict())
    preset = PAPER_MODELS[timm_name]
    assert arch == PRESETS[preset]()  # the spec inferred is the one a user writes
    assert count_params(build(PRESETS[preset](), device="meta"))[0] == n_params(reference)
    assert PUBLISHED[preset].params == n_params(reference)
    diff = max_difference(model, reference)
    print(f"{timm_name}: max |logit difference| {diff:.3g}")
    assert diff <= TOLERANCE


def small_vit(timm, **options):
    """A timm ViT of 32x32 images at patch 8, width 64, 2 blocks of 2 heads, 5 classes."""
    config = {"img_size": 32, "patch_size": 8, "embed_dim": 64, "depth": 2, "num_heads": 2, "num_classes": 5}
    return randomised(timm.models.vision_transformer.VisionTransformer(**{**config, **options}))


def small_mixer(timm, **options):
    config = {"img_size": 32, "patch_size": 8, "embed_dim": 64, "num_blocks": 2, "num_classes": 5}
    return randomised(timm.models.mlp_mixer.MlpMixer(**{**config, **options}))


@pytest.mark.parametrize(
    "options, imported, inferred",
    [
        ({}, {}, {"head": "cls", "positional": "learned"}),
        ({"class_token": False, "global_pool": "avg", "fc_norm": False}, {}, {"head": "gap"}),
        ({"qkv_bias": False, "mlp_ratio": 3.0}, {}, {}),
        ({"img_size": (32, 48)}, {"image_size": (32, 48)}, {"image_size": (32, 48)}),
        ({"in_chans": 1, "num_heads": 4}, {"heads": 4}, {"in_channels": 1}),
        ({"pos_embed": "none"}, {"image_size": 32}, {"positional": "none"}),
    ],
)
def test_vit_variants_match_timm(timm, options, imported, inferred):
    reference = small_vit(timm, **options)
    given = {"heads": 2, **imported}
    arch, model = import_timm(reference.state_dict(), **given)
    for key, value in inferred.items():
        assert getattr(arch, key) == value
    stage = arch.stages[0]
    assert stage.mixer.options == {"heads": options.get("num_heads", 2), "qkv_bias": options.get("qkv_bias", True)}
    assert stage.mlp_ratio == options.get("mlp_ratio", 4.0)
    assert n_params(model) == n_params(reference)
    assert max_difference(model, reference, arch.image_size, arch.in_channels) <= TOLERANCE


@pytest.mark.parametrize("options, imported", [({}, {}), ({"img_size": (32, 48)}, {"image_size": (32, 48)})])
def test_mixer_variants_match_timm(timm, options, imported):
    reference = small_mixer(timm, **options, mlp_ratio=(0.25, 2.0))
    arch, model = import_timm(reference.state_dict(), **imported)
    tokens = arch.image_size[0] * arch.image_size[1] // 64
    assert arch.stages[0].mixer.options == {"token_hidden": 16}  # timm: 0.25 x width 64
    assert arch.stages[0].mlp_ratio == 2.0 and tokens == reference.stem.num_patches
    assert n_params(model) == n_params(reference)
    assert max_difference(model, reference, arch.image_size) <= TOLERANCE


def test_wrapped_checkpoints_are_unwrapped(timm):
    state = small_vit(timm).state_dict()
    plain = import_timm(state, heads=2)[1].state_dict()
    for checkpoint in (
        {"model": state, "epoch": 3},  # DeiT's releases
        {"state_dict": state},
        {f"module.{k}": v for k, v in state.items()},  # saved from DistributedDataParallel
    ):
        got = import_timm(checkpoint, heads=2)[1].state_dict()
        assert got.keys() == plain.keys() and all(torch.equal(got[k], plain[k]) for k in got)


def refusal(checkpoint, **kw) -> list[str]:
    with pytest.raises(CheckpointError) as err:
        import_timm(checkpoint, **kw)
    assert str(err.value) == "\n".join(err.value.problems)
    return err.value.problems


def test_every_problem_is_named_on_its_own_line(timm):
    state = small_vit(timm).state_dict()
    state["blocks.1.mlp.fc1.weight"] = torch.zeros(100, 64)
    del state["blocks.0.attn.proj.bias"]
    state["blocks.1.ls1.gamma"] = torch.ones(64)
    problems = refusal(state, heads=2)
    assert len(problems) == 3, problems
    wrong, layer_scale, missing = sorted(problems, key=lambda p: p.split(":")[0], reverse=True)
    assert wrong.startswith("blocks.1.mlp.fc1.weight: found (100, 64), expected (256, 64)")
    assert missing.startswith("blocks.0.attn.proj.bias: missing, expected (64,)")
    assert layer_scale.startswith("blocks.1.ls1.gamma: found (64,), expected no such key: LayerScale")


def test_a_mixer_whose_blocks_disagree_is_refused(timm):
    state = small_mixer(timm).state_dict()
    state["blocks.1.mlp_tokens.fc1.weight"] = torch.zeros(32, 20)
    (problem,) = refusal(state)
    assert problem.startswith("blocks.1.mlp_tokens.fc1.weight: found (32, 20), expected (32, 16)")
    (problem,) = refusal(small_mixer(timm).state_dict(), heads=4)
    assert problem == "heads: found 4, expected none: an MLP-Mixer has no attention heads"


def test_models_archsweep_has_no_equivalent_of_are_refused(timm):
    distilled = timm.models.deit.VisionTransformerDistilled(
        img_size=32, patch_size=8, embed_dim=64, depth=1, num_heads=2, num_classes=5
    )
    problems = refusal(distilled.state_dict(), heads=2)
    assert {p.split(":")[0] for p in problems} == {"dist_token", "head_dist.weight", "head_dist.bias", "pos_embed"}
    assert "distilled DeiT" in next(p for p in problems if p.startswith("dist_token"))
    pooled = small_vit(timm, class_token=False, global_pool="avg")  # timm's fc_norm: a norm after pooling
    problems = refusal(pooled.state_dict(), heads=2)
    assert {p.split(":")[0] for p in problems} == {"fc_norm.weight", "fc_norm.bias", "norm.weight", "norm.bias"}
    unembedded = small_vit(timm, no_embed_class=True)
    (problem,) = refusal(unembedded.state_dict(), heads=2)
    assert problem.startswith("pos_embed: found (1, 16, 64)") and "no_embed_class" in problem


def test_shapes_that_fit_no_grid_or_head_count_are_refused(timm):
    state = small_vit(timm, img_size=(32, 48)).state_dict()
    (problem,) = refusal(state, heads=2)  # 24 tokens: not a square grid
    assert problem.startswith("pos_embed: found (1, 25, 64)") and "give image_size" in problem
    (problem,) = refusal(state, heads=2, image_size=(48, 48))
    assert problem.startswith("pos_embed: found (1, 25, 64), expected (1, 1 + h*w, 64)") and "36 tokens" in problem
    (problem,) = refusal(small_vit(timm).state_dict(), heads=3)
    assert problem == "heads: found 3, expected a positive integer dividing the width 64"
    (problem,) = refusal(small_vit(timm, embed_dim=96).state_dict())  # default: width / 64
    assert problem.startswith("heads: width 96 is not a multiple of 64")


def test_what_is_not_a_timm_state_dict_is_refused(timm):
    archsweep = build(PRESETS["vix-vit"]()).state_dict()
    (problem,) = refusal(archsweep)
    assert problem.startswith("patch_embed.proj.weight (ViT, DeiT) or stem.proj.weight (MLP-Mixer): missing")
    state = small_vit(timm).state_dict()
    state["pos_embed"] = state["pos_embed"].to(torch.int64)
    state["note"] = "trained by hand"
    assert refusal(state, heads=2) == [
        "note: found a str, expected a tensor",
        "pos_embed: found dtype torch.int64, expected a floating-point tensor",
    ]


def test_the_cli_writes_a_model_that_builds_and_loads(timm, tmp_path, capsys):
    reference = small_vit(timm, num_heads=4)
    torch.save({"model": reference.state_dict()}, tmp_path / "deit.pth")
    out = tmp_path / "imported"
    assert main.main(["import-timm", str(tmp_path / "deit.pth"), "--out", str(out), "--heads", "4"]) == 0
    assert "[attention x2 @64] > cls > fc5" in capsys.readouterr().out
    arch = from_dict(yaml.safe_load((out / "arch.yaml").read_text()))
    model = build(arch)
    model.load_state_dict(torch.load(out / "weights.pt"))
    assert arch.stages[0].mixer.options["heads"] == 4
    assert max_difference(model, reference, arch.image_size) <= TOLERANCE
    probe = torch.load(out / "probe.pt")
    with torch.no_grad():
        assert torch.equal(model.eval()(probe["x"]), probe["logits"])
    # model.yaml starts a sweep from it: a spec extending it builds the same architecture
    data = f"{{dataset: synthetic, image_size: {arch.image_size[0]}, num_classes: 5}}"
    (tmp_path / "from_deit.yaml").write_text(f"extends: imported/model.yaml\ndata: {data}\n")
    spec = load(tmp_path / "from_deit.yaml")
    concrete = sample(spec.model, RandomTrial(random.Random(0)), "model")
    assert to_arch(concrete, arch.image_size, 5, arch.in_channels) == arch


def test_the_cli_refuses_with_the_problems_and_writes_nothing(timm, tmp_path, capsys):
    state = small_vit(timm).state_dict()
    state["blocks.0.norm2.weight"] = torch.ones(65)
    torch.save(state, tmp_path / "bad.pth")
    out = tmp_path / "imported"
    assert main.main(["import-timm", str(tmp_path / "bad.pth"), "--out", str(out), "--heads", "2"]) == 2
    err = capsys.readouterr().err
    assert err.splitlines()[0] == "blocks.0.norm2.weight: found (65,), expected (64,) (width 64)"
    assert "Traceback" not in err and not out.exists()
    out.mkdir()
    (out / "kept.txt").write_text("mine")
    torch.save(small_vit(timm).state_dict(), tmp_path / "good.pth")
    assert main.main(["import-timm", str(tmp_path / "good.pth"), "--out", str(out), "--heads", "2"]) == 2
    assert "not an empty folder" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["kept.txt"]


class _Sneaky:
    """Unpickled, it would create a file: what a checkpoint from a stranger can do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_a_pickle_that_runs_code_is_refused_unrun(tmp_path, capsys):
    marker = tmp_path / "ran"
    torch.save({"model": {"pos_embed": torch.zeros(1)}, "args": _Sneaky(marker)}, tmp_path / "evil.pth")
    pickle.loads(pickle.dumps(_Sneaky(tmp_path / "control"))).close()  # full unpickling would run it
    assert (tmp_path / "control").exists()
    with pytest.raises(CheckpointError, match="weights_only=True"):
        load_checkpoint(tmp_path / "evil.pth")
    assert main.main(["import-timm", str(tmp_path / "evil.pth"), "--out", str(tmp_path / "o")]) == 2
    assert "weights_only=True" in capsys.readouterr().err
    assert not marker.exists() and not (tmp_path / "o").exists()

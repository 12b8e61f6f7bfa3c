"""lucidrains' vit-pytorch as the oracle of archsweep's CCT, PiT, CvT and LeViT blocks: the
classes the Vision X-formers' code adapted (vit-pytorch 1.26.14 from requirements-oracle.txt,
imported by the ``vit_pytorch`` fixture in conftest.py). Each test builds a small
reference, moves every parameter and BatchNorm statistic off its initial value, maps its
state dict onto the archsweep model an ``ArchSpec`` builds (strict loading: every tensor
on both sides is named) and compares the logits of random images in eval mode.
"""

import pytest
import torch
from torch import nn

from blocks import build
from blocks.registry import MIXERS
from blocks.spec import ArchSpec, EmbeddingSpec, MixerSpec, StageSpec, Transition
from blocks.transitions import PiTPool

TOLERANCE = 1e-5  # fp32 logits of order 1


def randomised(model: nn.Module) -> nn.Module:
    """Initial values (zero biases, unit gains, BatchNorm statistics 0 and 1, LeViT's zero
    output gain) would let a mapping that drops or swaps them agree: all are moved off."""
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p), alpha=0.1)
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.normal_(0.0, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.num_batches_tracked.fill_(7)
    return model.eval()


def conv1x1(w: torch.Tensor) -> torch.Tensor:
    """A 1x1 conv's (out, in, 1, 1) weight as a Linear's (out, in)."""
    return w.flatten(1)


def loaded(model: nn.Module, state: dict) -> nn.Module:
    model.load_state_dict(state, strict=True)
    return model.eval()


def max_difference(ours: nn.Module, reference: nn.Module, images: torch.Tensor) -> float:
    with torch.no_grad():
        return (ours(images) - reference(images)).abs().max().item()


def swapped(state: dict, a: str, b: str) -> dict:
    """``state`` with two same-shaped tensors exchanged: a mapping mistake strict loading passes."""
    return {**state, a: state[b], b: state[a]}


def qkv_split(state: dict, fused: torch.Tensor, to: str) -> None:
    """A fused (3 * inner, D) q/k/v weight into archsweep's ``to_q`` and ``to_kv``."""
    q, kv = fused.split([fused.shape[0] // 3, 2 * fused.shape[0] // 3])
    state[f"{to}.qkv.to_q.weight"], state[f"{to}.qkv.to_kv.weight"] = q, kv


def copy(state: dict, ref: dict, src: str, dst: str, names=("weight", "bias")) -> None:
    for n in names:
        state[f"{dst}.{n}"] = ref[f"{src}.{n}"]


BATCHNORM = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


# CCT (Hassani et al. 2021): vit_pytorch.cct.CCT. Its tokenizer's convs all share one
# stride and the inner widths are 64 (Tokenizer's in_planes, which CCT does not pass); the
# ViX ``ccx`` preset's per-conv strides are the authors' change and have no reference here.


def cct_state(ref: dict, n_convs: int, depth: int) -> dict:
    state = {f"embed.convs.{3 * i}.weight": ref[f"tokenizer.conv_layers.{i}.0.weight"] for i in range(n_convs)}
    state["positional.table"] = ref["classifier.positional_emb"]
    for b in range(depth):
        src, dst = f"classifier.blocks.{b}", f"stages.0.blocks.{b}"
        copy(state, ref, f"{src}.pre_norm", f"{dst}.norm1")
        qkv_split(state, ref[f"{src}.self_attn.qkv.weight"], f"{dst}.mixer")  # no bias
        copy(state, ref, f"{src}.self_attn.proj", f"{dst}.mixer.to_out")
        copy(state, ref, f"{src}.norm1", f"{dst}.norm2")  # the stream's norm between the residuals
        copy(state, ref, f"{src}.linear1", f"{dst}.mlp.0")
        copy(state, ref, f"{src}.linear2", f"{dst}.mlp.3")
    copy(state, ref, "classifier.norm", "norm")
    copy(state, ref, "classifier.attention_pool", "attention_pool")
    copy(state, ref, "classifier.fc", "head")
    return state


@pytest.mark.parametrize(
    "image, tokenizer, ours",
    [
        # two 3x3 convs at stride 1, each with ReLU and a 3x3 pool at stride 2 (cct_2 .. cct_8)
        (16, {"n_conv_layers": 2, "kernel_size": 3, "stride": 1, "padding": 1}, (4, {"channels": [64]})),
        # CCT's default tokenizer: one 7x7 conv at stride 2, pool at stride 2
        (32, {"n_conv_layers": 1, "kernel_size": 7, "stride": 2, "padding": 3}, (4, {"channels": [], "stride": 2})),
    ],
)
def test_cct_matches_vit_pytorch(vit_pytorch, image, tokenizer, ours):
    torch.manual_seed(0)
    depth, width, heads = 2, 32, 2
    reference = vit_pytorch.cct.CCT(
        img_size=image,
        embedding_dim=width,
        **tokenizer,
        num_layers=depth,
        num_heads=heads,
        mlp_ratio=2.0,
        num_classes=5,
        positional_embedding="learnable",
    )
    randomised(reference)
    patch, options = ours
    options = {**options, "kernel_size": tokenizer["kernel_size"], "padding": tokenizer["padding"]}
    arch = ArchSpec(
        (image, image),
        5,
        (StageSpec(depth, width, MixerSpec("attention", {"heads": heads}), mlp_ratio=2.0, block="mid"),),
        embedding=EmbeddingSpec("conv_tokenizer", patch, options),
        positional="learned",
        head="seq_pool",
    )
    state = cct_state(reference.state_dict(), tokenizer["n_conv_layers"], depth)
    images = torch.randn(2, 3, image, image)
    diff = max_difference(loaded(build(arch), state), reference, images)
    print(f"CCT {tokenizer}: max |logit difference| {diff:.3g}")
    assert diff <= TOLERANCE
    # CCT's ``norm1`` is the norm after the attention residual, archsweep's ``norm2``
    wrong = swapped(state, "stages.0.blocks.0.norm1.weight", "stages.0.blocks.0.norm2.weight")
    assert max_difference(loaded(build(arch), wrong), reference, images) > 100 * TOLERANCE


# PiT (Heo et al. 2021): vit_pytorch.pit.PiT. Its patch embedding is an Unfold of p x p
# patches at stride p // 2, always overlapping (p = 1 gives stride 0), and none of
# archsweep's embeddings is that map with the grid the builder requires (a conv tokenizer
# of kernel p at stride p / 2 makes a grid one token short of the image over the stride).
# So the reference's ``to_patch_embedding`` is replaced by archsweep's ``patch`` embedding
# (a stride-p conv, then the tokens in raster order); everything after it is compared:
# the class token, position table, pre-norm blocks, the Pool transitions and the head.


class PatchTokens(nn.Module):
    """archsweep's ``patch`` embedding in the reference's place: (B, C, H, W) -> (B, N, D)."""

    def __init__(self, dim: int, patch: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, dim, patch, stride=patch)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.proj(images).flatten(2).transpose(1, 2)


def pit_state(ref: dict, depths: tuple[int, ...]) -> dict:
    state = {}
    copy(state, ref, "to_patch_embedding.proj", "embed.proj")
    state["cls_token"], state["positional.table"] = ref["cls_token"], ref["pos_embedding"]
    for s, depth in enumerate(depths):
        if s:
            src, dst = f"layers.{2 * s - 1}", f"stages.{s}.transition"
            copy(state, ref, f"{src}.downsample.net.0", f"{dst}.depthwise")
            copy(state, ref, f"{src}.downsample.net.1", f"{dst}.pointwise")
            copy(state, ref, f"{src}.cls_ff", f"{dst}.head_proj")
        for b in range(depth):
            src, dst = f"layers.{2 * s}.layers.{b}", f"stages.{s}.blocks.{b}"
            copy(state, ref, f"{src}.0.norm", f"{dst}.norm1")
            qkv_split(state, ref[f"{src}.0.to_qkv.weight"], f"{dst}.mixer")
            copy(state, ref, f"{src}.0.to_out.0", f"{dst}.mixer.to_out")
            copy(state, ref, f"{src}.1.net.0", f"{dst}.norm2")
            copy(state, ref, f"{src}.1.net.1", f"{dst}.mlp.0")
            copy(state, ref, f"{src}.1.net.4", f"{dst}.mlp.3")
    copy(state, ref, "mlp_head.0", "norm")
    copy(state, ref, "mlp_head.1", "head")
    return state


def test_pit_matches_vit_pytorch_after_the_patch_embedding(vit_pytorch):
    torch.manual_seed(0)
    width, depths, heads, head_dim, mlp = 32, (2, 1), (2, 4), 16, 64
    # image 16 at patch 4 (stride 2): a 7x7 grid, as archsweep's patch 2 of a 14x14 image (PiT's
    # grid, image / (p / 2) - 1, is always odd: the pool's stride-2 conv takes it to 4x4)
    reference = vit_pytorch.pit.PiT(
        image_size=16, patch_size=4, num_classes=5, dim=width, depth=depths, heads=heads, dim_head=head_dim, mlp_dim=mlp
    )
    reference.to_patch_embedding = PatchTokens(width, 2)
    randomised(reference)
    stages = tuple(
        StageSpec(
            depth,
            width * 2**s,
            MixerSpec("attention", {"heads": h, "head_dim": head_dim}),
            mlp_ratio=mlp / (width * 2**s),  # PiT's MLP is mlp_dim wide in every stage
            transition=Transition("pit_pool") if s else Transition(),
        )
        for s, (depth, h) in enumerate(zip(depths, heads, strict=True))
    )
    arch = ArchSpec((14, 14), 5, stages, embedding=EmbeddingSpec("patch", 2), positional="learned", head="cls")
    state, images = pit_state(reference.state_dict(), depths), torch.randn(2, 3, 14, 14)
    diff = max_difference(loaded(build(arch), state), reference, images)
    print(f"PiT: max |logit difference| {diff:.3g}")
    assert diff <= TOLERANCE
    wrong = swapped(state, "stages.1.transition.head_proj.bias", "stages.1.transition.pointwise.bias")
    assert max_difference(loaded(build(arch), wrong), reference, images) > 100 * TOLERANCE


@pytest.mark.parametrize("side", [8, 7])  # 7: an odd grid, 4x4 after the stride-2 conv
def test_pit_pool_matches_vit_pytorch(vit_pytorch, side):
    torch.manual_seed(0)
    reference = randomised(vit_pytorch.pit.Pool(16))
    ours = PiTPool(16, 32, prefix=1)
    state = {}
    ref = reference.state_dict()
    copy(state, ref, "downsample.net.0", "depthwise")
    copy(state, ref, "downsample.net.1", "pointwise")
    copy(state, ref, "cls_ff", "head_proj")
    loaded(ours, state)
    x = torch.randn(2, 1 + side * side, 16)
    with torch.no_grad():
        got, hw = ours(x, (side, side))
        diff = (got - reference(x)).abs().max().item()
    print(f"PiT Pool {side}x{side}: max |difference| {diff:.3g}")
    assert hw == (-(-side // 2),) * 2 and diff <= TOLERANCE


# CvT (Wu et al. 2021): vit_pytorch.cvt.CvT, three stages each entered by a conv embedding
# and a channel LayerNorm, pre-norm blocks whose q and k/v projections are a depthwise conv,
# BatchNorm and 1x1 conv (keys and values share one depthwise conv, at kv stride), heads 64
# wide (CvT does not pass dim_head to its Transformer), a 1x1-conv MLP, and global average
# pooling straight into the classifier: no final norm. Its LayerNorm computes
# (x - mean) / sqrt(var + eps) * g + b over channels, nn.LayerNorm's function, so the
# difference is rounding only, and the fp32 tolerance stands.


def cvt_state(ref: dict, depths: tuple[int, ...]) -> dict:
    state = {}
    for s, depth in enumerate(depths):
        embed = "embed" if s == 0 else f"stages.{s}.transition"
        copy(state, ref, f"layers.{s}.0", "embed.proj" if s == 0 else f"{embed}.conv")
        state[f"{embed}.norm.weight"] = ref[f"layers.{s}.1.g"].flatten()
        state[f"{embed}.norm.bias"] = ref[f"layers.{s}.1.b"].flatten()
        for b in range(depth):
            src, dst = f"layers.{s}.2.layers.{b}", f"stages.{s}.blocks.{b}"
            state[f"{dst}.norm1.weight"] = ref[f"{src}.0.norm.g"].flatten()
            state[f"{dst}.norm1.bias"] = ref[f"{src}.0.norm.b"].flatten()
            for proj in ("q", "kv"):
                conv = f"{dst}.mixer.qkv.conv_{proj}"
                state[f"{conv}.conv.weight"] = ref[f"{src}.0.to_{proj}.net.0.weight"]
                copy(state, ref, f"{src}.0.to_{proj}.net.1", f"{conv}.norm", BATCHNORM)
                state[f"{dst}.mixer.qkv.to_{proj}.weight"] = conv1x1(ref[f"{src}.0.to_{proj}.net.2.weight"])
            state[f"{dst}.mixer.to_out.weight"] = conv1x1(ref[f"{src}.0.to_out.0.weight"])
            state[f"{dst}.mixer.to_out.bias"] = ref[f"{src}.0.to_out.0.bias"]
            state[f"{dst}.norm2.weight"] = ref[f"{src}.1.net.0.g"].flatten()
            state[f"{dst}.norm2.bias"] = ref[f"{src}.1.net.0.b"].flatten()
            for i in (1, 4):
                state[f"{dst}.mlp.{i - 1}.weight"] = conv1x1(ref[f"{src}.1.net.{i}.weight"])
                state[f"{dst}.mlp.{i - 1}.bias"] = ref[f"{src}.1.net.{i}.bias"]
    copy(state, ref, "to_logits.2", "head")
    return state


@pytest.mark.parametrize(
    "image, widths, kernels, strides, kv_stride, heads, depths",
    [
        # CvT's own settings: a 7x7 stride-4 first embedding, 3x3 stride-2 ones after, kv stride 2
        (64, (32, 48, 64), (7, 3, 3), (4, 2, 2), 2, (1, 2, 2), (1, 1, 2)),
        # the ViX cvx layout: 3x3 embeddings at stride 1, unstrided keys and values
        (8, (32, 32, 32), (3, 3, 3), (1, 1, 1), 1, (1, 1, 1), (1, 1, 2)),
    ],
)
def test_cvt_matches_vit_pytorch(vit_pytorch, image, widths, kernels, strides, kv_stride, heads, depths):
    torch.manual_seed(0)
    config = {}
    for s in range(3):
        config.update(
            {
                f"s{s + 1}_emb_dim": widths[s],
                f"s{s + 1}_emb_kernel": kernels[s],
                f"s{s + 1}_emb_stride": strides[s],
                f"s{s + 1}_proj_kernel": 3,
                f"s{s + 1}_kv_proj_stride": kv_stride,
                f"s{s + 1}_heads": heads[s],
                f"s{s + 1}_depth": depths[s],
                f"s{s + 1}_mlp_mult": 2,
            }
        )
    reference = randomised(vit_pytorch.cvt.CvT(num_classes=5, **config))
    stages = tuple(
        StageSpec(
            depths[s],
            widths[s],
            MixerSpec("attention", {"heads": heads[s], "head_dim": 64, "proj_kernel": 3, "kv_stride": kv_stride}),
            mlp_ratio=2.0,
            transition=Transition("conv_embed", options={"kernel_size": kernels[s], "stride": strides[s]})
            if s
            else Transition(),
        )
        for s in range(3)
    )
    first = EmbeddingSpec("overlap", strides[0], {"kernel_size": kernels[0]})
    arch = ArchSpec((image, image), 5, stages, embedding=first, positional="none", head="gap", final_norm=False)
    state, images = cvt_state(reference.state_dict(), depths), torch.randn(2, 3, image, image)
    diff = max_difference(loaded(build(arch), state), reference, images)
    print(f"CvT strides {strides}, kv stride {kv_stride}: max |logit difference| {diff:.3g}")
    assert diff <= TOLERANCE
    kv = "stages.0.blocks.0.mixer.qkv.to_kv.weight"  # keys then values, as the reference's chunk(2)
    wrong = {**state, kv: torch.cat(state[kv].chunk(2)[::-1])}
    assert max_difference(loaded(build(arch), wrong), reference, images) > 100 * TOLERANCE


# LeViT (Graham et al. 2021): vit_pytorch.levit. Its attention is compared as a mixer (the
# reference maps (B, C, H, W) to (B, C, H, W); archsweep's tokens are the map's raster
# order). The whole current LeViT cannot be: its MLP is 1x1 conv, Hardswish, 1x1 conv and
# archsweep's MLP is GELU, and between stages it has a downsampling attention (queries at
# stride 2, no residual, a new width) that archsweep has no transition for. With the
# Hardswish swapped for a GELU, a one-stage LeViT (stem, blocks, pooling, classifier) maps.


def levit_attention_state(ref: dict, prefix: str = "", to: str = "") -> dict:
    state = {}
    for name in ("q", "k", "v"):
        state[f"{to}to_{name}.weight"] = conv1x1(ref[f"{prefix}to_{name}.0.weight"])
        copy(state, ref, f"{prefix}to_{name}.1", f"{to}norm_{name}", BATCHNORM)
    state[f"{to}to_out.weight"] = conv1x1(ref[f"{prefix}to_out.1.weight"])
    state[f"{to}to_out.bias"] = ref[f"{prefix}to_out.1.bias"]
    copy(state, ref, f"{prefix}to_out.2", f"{to}norm_out", BATCHNORM)
    state[f"{to}pos_bias.weight"] = ref[f"{prefix}pos_bias.weight"]
    return state


def test_levit_attention_matches_vit_pytorch(vit_pytorch):
    torch.manual_seed(0)
    dim, side, heads, key, value = 32, 4, 2, 16, 24
    reference = randomised(vit_pytorch.levit.Attention(dim, fmap_size=side, heads=heads, dim_key=key, dim_value=value))
    ours = MIXERS["levit"](dim, tokens_hw=(side, side), heads=heads, head_dim=key, value_dim=value, pos_bias=True)
    loaded(ours, levit_attention_state(reference.state_dict()))
    assert torch.equal(ours.offsets, reference.pos_indices)  # the same offset of each pair
    maps = torch.randn(2, dim, side, side)
    with torch.no_grad():
        got = ours(maps.flatten(2).transpose(1, 2), (side, side))  # (B, N, C)
        diff = (got - reference(maps).flatten(2).transpose(1, 2)).abs().max().item()
    print(f"LeViT attention: max |difference| {diff:.3g}")
    assert diff <= TOLERANCE


def test_one_stage_levit_with_a_gelu_mlp_matches_vit_pytorch(vit_pytorch):
    torch.manual_seed(0)
    dim, depth, heads, key, value = 32, 2, 2, 16, 24
    reference = vit_pytorch.levit.LeViT(
        image_size=64,
        num_classes=5,
        dim=dim,
        depth=depth,
        heads=heads,
        mlp_mult=2,
        stages=1,
        dim_key=key,
        dim_value=value,
    )
    for _, ff in reference.backbone[0].layers:
        assert isinstance(ff.net[1], nn.Hardswish)
        ff.net[1] = nn.GELU()  # archsweep's MLP activation
    randomised(reference)
    stem = {"channels": [32, 64, 128], "stride": 2, "bias": True, "activation": "none", "pool_kernel": 0}
    mixer = MixerSpec("levit", {"heads": heads, "head_dim": key, "value_dim": value, "pos_bias": True})
    arch = ArchSpec(
        (64, 64),
        5,
        (StageSpec(depth, dim, mixer, mlp_ratio=2.0, block="bare"),),
        embedding=EmbeddingSpec("conv_tokenizer", 16, stem),
        positional="none",
        head="gap",
        final_norm=False,
    )
    ref = reference.state_dict()
    state = {}
    for i in range(4):
        copy(state, ref, f"conv_embedding.{i}", f"embed.convs.{i}")
    for b in range(depth):
        src, dst = f"backbone.0.layers.{b}", f"stages.0.blocks.{b}"
        state.update(levit_attention_state(ref, f"{src}.0.", f"{dst}.mixer."))
        for i in (0, 3):
            state[f"{dst}.mlp.{i}.weight"] = conv1x1(ref[f"{src}.1.net.{i}.weight"])
            state[f"{dst}.mlp.{i}.bias"] = ref[f"{src}.1.net.{i}.bias"]
    copy(state, ref, "mlp_head", "head")
    images = torch.randn(2, 3, 64, 64)
    diff = max_difference(loaded(build(arch), state), reference, images)
    print(f"LeViT, one stage, GELU MLP: max |logit difference| {diff:.3g}")
    assert diff <= TOLERANCE
    norm = "stages.0.blocks.1.mixer.norm_{}.running_var"
    wrong = swapped(state, norm.format("q"), norm.format("k"))
    assert max_difference(loaded(build(arch), wrong), reference, images) > 100 * TOLERANCE

"""The contract every registered transition, embedding and head keeps, run over each
registry (the mixers' is test_mixer_contract.py): the grid the builder plans is the grid
the module makes, every parameter is read by a forward pass and gets a gradient, and a
class token rides through where the head has one."""

import pytest
import torch

from blocks import (
    EMBEDDINGS,
    HEADS,
    TRANSITIONS,
    ArchSpec,
    EmbeddingSpec,
    MixerSpec,
    StageSpec,
    Transition,
    build,
    token_grids,
)

# Options that make each block meaningful at 16x16 images (a registered block missing
# here fails the test that every one is covered).
TRANSITION_OPTIONS = {
    "none": {},
    "pool": {"mode": "max"},
    "merge": {},
    "pit_pool": {},
    "conv_embed": {"kernel_size": 3, "stride": 2},
}
EMBEDDING_OPTIONS = {  # (patch size, options)
    "patch": (4, {}),
    "conv": (2, {"channels": [8]}),
    "overlap": (2, {}),
    "conv_tokenizer": (2, {"channels": [8], "stride": [2, 1], "pool_stride": 1}),
}


def _transition(name: str) -> Transition:
    options = TRANSITION_OPTIONS[name]
    if name == "pool":
        return Transition("pool", **options)
    return Transition(name) if name in ("none", "merge") else Transition(name, options=options)


def two_stages(transition: Transition, head: str = "gap") -> ArchSpec:
    stages = (
        StageSpec(1, 16, MixerSpec("attention", {"heads": 2}), mlp_ratio=2.0),
        StageSpec(1, 32, MixerSpec("attention", {"heads": 2}), mlp_ratio=2.0, transition=transition),
    )
    return ArchSpec((16, 16), 5, stages, embedding=EmbeddingSpec("patch", 2), head=head)


def trains_every_parameter(model: torch.nn.Module, images: torch.Tensor) -> None:
    logits = model(images)
    assert logits.shape == (images.shape[0], 5) and torch.isfinite(logits).all()
    torch.nn.functional.cross_entropy(logits, torch.arange(images.shape[0]) % 5).backward()
    # Sequence pooling's bias shifts every token's score alike, and a softmax ignores a shift:
    # its gradient is zero up to rounding (CCT has it too), so it may come out exactly zero.
    shift_invariant = {"attention_pool.bias"}
    missing = [
        n
        for n, p in model.named_parameters()
        if n not in shift_invariant and (p.grad is None or p.grad.abs().sum() == 0)
    ]
    assert not missing, missing


def test_every_registered_block_is_covered():
    assert set(TRANSITION_OPTIONS) == set(TRANSITIONS) and set(EMBEDDING_OPTIONS) == set(EMBEDDINGS)


# The class-token head in the fast tier; the other two are `slow` (about 1 s each).
@pytest.mark.parametrize(
    "head", ["cls", pytest.param("gap", marks=pytest.mark.slow), pytest.param("seq_pool", marks=pytest.mark.slow)]
)
@pytest.mark.parametrize("name", sorted(TRANSITIONS))
def test_transition_makes_the_planned_grid_and_trains_every_parameter(name, head):
    torch.manual_seed(0)
    arch = two_stages(_transition(name), head)
    model = build(arch)
    stage = model.stages[1]
    x = torch.randn(2, int(head == "cls") + 8 * 8, 16)  # the first stage's tokens: an 8x8 grid
    tokens, hw = stage.transition(x, (8, 8))
    assert hw == token_grids(arch)[1]
    assert tokens.shape == (2, int(head == "cls") + hw[0] * hw[1], 32)
    trains_every_parameter(model, torch.randn(4, 3, 16, 16))


@pytest.mark.parametrize("name", sorted(TRANSITIONS))
def test_transition_carries_the_class_token_apart_from_the_grid(name):
    """The class token's output depends on the class token only: no grid token leaks into
    it on the way between stages (the attention that follows is where they meet)."""
    transition = build(two_stages(_transition(name), "cls")).stages[1].transition.eval()
    x = torch.randn(1, 1 + 64, 16)
    y = x.clone()
    y[0, 1:] += torch.randn(64, 16)  # every grid token changed
    torch.testing.assert_close(transition(x, (8, 8))[0][0, 0], transition(y, (8, 8))[0][0, 0])


@pytest.mark.parametrize("head", sorted(HEADS))
@pytest.mark.parametrize("name", sorted(EMBEDDINGS))
def test_embedding_makes_the_planned_grid_and_trains_every_parameter(name, head):
    torch.manual_seed(0)
    patch, options = EMBEDDING_OPTIONS[name]
    stage = StageSpec(1, 16, MixerSpec("attention", {"heads": 2}), mlp_ratio=2.0)
    arch = ArchSpec((16, 16), 5, (stage,), embedding=EmbeddingSpec(name, patch, options), head=head)
    model = build(arch)
    tokens, hw = model.embed(torch.randn(2, 3, 16, 16))
    assert hw == token_grids(arch)[0] == (16 // patch, 16 // patch)
    assert tokens.shape == (2, hw[0] * hw[1], 16)
    trains_every_parameter(model, torch.randn(4, 3, 16, 16))


def test_sequence_pooling_weights_the_tokens_by_a_learned_softmax():
    """CCT's pooling, written out on the model's own final tokens: a softmax over tokens
    of a linear score, then the weighted sum (and not the plain mean)."""
    torch.manual_seed(0)
    model = build(two_stages(Transition(), "seq_pool")).eval()
    with torch.no_grad():
        model.attention_pool.weight.normal_()
        images = torch.randn(2, 3, 16, 16)
        x, hw = model.embed(images)
        x = model.positional(x, hw)
        for stage in model.stages:
            x, hw = stage(x, hw)
        x = model.norm(x)  # (B, N, D)
        weights = torch.softmax(x @ model.attention_pool.weight.T + model.attention_pool.bias, dim=1)  # (B, N, 1)
        torch.testing.assert_close(model(images), model.head((weights * x).sum(dim=1)))
        assert not torch.allclose(model(images), model.head(x.mean(dim=1)), atol=1e-4)

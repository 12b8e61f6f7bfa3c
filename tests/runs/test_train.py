"""The training loop: schedule, evaluation, learning, failure on a non-finite loss."""

import math

import pytest
import torch

from blocks import ArchSpec, EmbeddingSpec, MixerSpec, StageSpec, build
from runs.data import DataSpec, load
from runs.train import TrainConfig, TrialFailed, lr_factor, train


def test_lr_warms_up_then_follows_a_cosine_to_zero():
    factors = [lr_factor(s, total=100, warmup=10, schedule="cosine") for s in range(101)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)
    assert factors[55] == pytest.approx(0.5, abs=0.02) and factors[100] == pytest.approx(0.0, abs=1e-9)
    assert lr_factor(50, 100, 10, "constant") == 1.0


def _model(width=16, data=None):
    stage = StageSpec(1, width, MixerSpec("fourier"), mlp_ratio=2)
    arch = ArchSpec((8, 8), 10, (stage,), in_channels=1, embedding=EmbeddingSpec("patch", 2))
    return build(data.normalising(arch) if data else arch)  # with data: it normalises its input


@pytest.mark.slow
def test_training_learns_digits_and_reports_every_epoch():
    torch.manual_seed(0)
    data = load(DataSpec("digits"))
    seen = []
    cfg = TrainConfig(epochs=6, batch_size=64, lr=3e-3)
    metrics = train(_model(64, data), data, cfg, seed=0, report=lambda e, m, snapshot: seen.append(e))
    assert seen == list(range(6))
    assert metrics["val_accuracy"] > 0.7 and metrics["val_top5"] >= metrics["val_accuracy"]
    assert metrics["epochs"] == 6 and metrics["throughput"] > 0 and math.isfinite(metrics["train_loss"])


def test_same_seed_same_losses_bit_for_bit():
    data = load(DataSpec("digits"))
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        losses = []
        train(
            _model(),
            data,
            TrainConfig(epochs=2, batch_size=64),
            seed=5,
            report=lambda e, m, snapshot, out=losses: out.append(m["train_loss"]),
        )
        runs.append(losses)
    assert runs[0] == runs[1]


def test_non_finite_loss_raises_at_once():
    data = load(DataSpec("digits"))
    cfg = TrainConfig(epochs=3, optimizer="sgd", lr=1e12, grad_clip=0)
    with pytest.raises(TrialFailed, match="non-finite training loss"):
        train(_model(), data, cfg, seed=0)


def test_resuming_from_a_snapshot_continues_where_the_run_stopped():
    """A retried trial restarts from its last checkpoint: the resumed epochs give the
    same losses as the uninterrupted run (weights, optimizer, schedule and the data
    order all come back)."""
    import copy

    data = load(DataSpec("digits"))
    cfg = TrainConfig(epochs=3, batch_size=64)

    class Crash(Exception):
        pass

    torch.manual_seed(0)
    whole = []
    train(_model(), data, cfg, seed=3, report=lambda e, m, snapshot: whole.append(m["train_loss"]))

    saved = {}

    def crash_after_first(epoch, metrics, snapshot):
        saved.update(copy.deepcopy(snapshot()))
        raise Crash

    torch.manual_seed(0)
    with pytest.raises(Crash):
        train(_model(), data, cfg, seed=3, report=crash_after_first)
    resumed = []
    torch.manual_seed(1)  # a fresh model with other weights: the snapshot must replace them
    final = train(
        _model(), data, cfg, seed=3, resume=saved, report=lambda e, m, snapshot: resumed.append((e, m["train_loss"]))
    )
    assert [e for e, _ in resumed] == [1, 2]
    assert [loss for _, loss in resumed] == whole[1:]
    assert final["epochs"] == 3

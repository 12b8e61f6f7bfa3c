"""Datasets on tensors, and augmentation on the device."""

import pickle

import numpy as np
import pytest
import torch

from runs.data import augment, geometry, load
from search.spec import DataSpec


def test_digits_is_the_real_bundled_set_split_80_20():
    data = load(DataSpec("digits", val_fraction=0.2))
    assert data.train_x.shape == (1438, 1, 8, 8) and data.val_x.shape == (359, 1, 8, 8)
    assert set(data.train_y.unique().tolist()) == set(range(10))
    assert abs(data.train_x.mean().item()) < 1e-5  # normalised with training statistics
    again = load(DataSpec("digits", val_fraction=0.2))
    assert torch.equal(again.val_y, data.val_y)  # the split is fixed


def test_digits_resized_and_synthetic_deterministic():
    assert load(DataSpec("digits", image_size=16)).train_x.shape[-2:] == (16, 16)
    spec = DataSpec("synthetic", image_size=12, num_classes=3, samples=90, channels=2)
    a, b, c = load(spec, seed=1), load(spec, seed=1), load(spec, seed=2)
    assert a.train_x.shape[1:] == (2, 12, 12) and geometry(spec).num_classes == 3
    assert torch.equal(a.train_x, b.train_x) and not torch.equal(a.train_x, c.train_x)


def test_cifar_batches_are_read_from_a_local_folder(tmp_path):
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 255, (4, 3072), dtype=np.uint8), b"labels": list(range(4))}
        (tmp_path / name).write_bytes(pickle.dumps(batch))
    data = load(DataSpec("cifar10", path=str(tmp_path)))
    assert data.train_x.shape == (20, 3, 32, 32) and data.val_x.shape == (4, 3, 32, 32)


def test_imagefolder(tmp_path):
    from PIL import Image

    for cls in ("cat", "dog"):
        (tmp_path / cls).mkdir()
        for i in range(5):
            Image.new("RGB", (20, 20), (i * 40, 0, 0)).save(tmp_path / cls / f"{i}.png")
    data = load(DataSpec("imagefolder", path=str(tmp_path), image_size=16, val_fraction=0.2))
    assert data.train_x.shape == (8, 3, 16, 16) and data.geometry.num_classes == 2


@pytest.mark.parametrize("crop", [0, 2])
def test_augment_crops_and_flips_per_image(crop):
    x = torch.arange(2 * 1 * 6 * 6, dtype=torch.float32).reshape(2, 1, 6, 6)
    g = torch.Generator().manual_seed(0)
    out = augment(x, crop=crop, flip=True, generator=g)
    assert out.shape == x.shape
    if crop == 0:  # each image is itself or its mirror
        for i in range(2):
            assert torch.equal(out[i], x[i]) or torch.equal(out[i], x[i].flip(-1))
    else:  # a shifted window: every nonzero value comes from the same image
        for i in range(2):
            values = set(out[i][out[i] != 0].tolist())
            assert values <= set(x[i].flatten().tolist())

"""Datasets on tensors, and augmentation on the device."""

import pickle
import shutil

import numpy as np
import pytest
import torch

from runs.data import DataSpec, augment, geometry, load


def test_digits_is_the_real_bundled_set_split_80_20():
    data = load(DataSpec("digits", val_fraction=0.2))
    assert data.train_x.shape == (1438, 1, 8, 8) and data.val_x.shape == (359, 1, 8, 8)
    assert set(data.train_y.unique().tolist()) == set(range(10))
    assert data.train_x.min() == 0 and data.train_x.max() == 1  # as they come: pixel values / 16
    assert data.mean == (data.train_x.mean().item(),) and data.std == (data.train_x.std().item(),)
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


# -- what validation knows before loading ------------------------------------------------


def test_image_count_and_load_size_match_what_load_holds(tmp_path):
    from runs.data import DIGITS_IMAGES, LOAD_COPIES, bytes_to_load, images, largest_side

    digits = load(DataSpec("digits", image_size=12))
    assert images(DataSpec("digits")) == DIGITS_IMAGES == len(digits.train_x) + len(digits.val_x)
    assert bytes_to_load(DataSpec("digits", image_size=12)) == DIGITS_IMAGES * 12 * 12 * 4 * LOAD_COPIES
    assert bytes_to_load(DataSpec("synthetic", samples=100, channels=2, image_size=8)) == 100 * 2 * 8 * 8 * 4 * 3
    spec = DataSpec("digits", image_size=4096)
    side = largest_side(spec, 64 * 2**30)
    assert bytes_to_load(DataSpec("digits", image_size=side)) <= 64 * 2**30
    assert bytes_to_load(DataSpec("digits", image_size=side + 1)) > 64 * 2**30


def write_images(folder, count: int):
    from PIL import Image

    folder.mkdir(parents=True)
    for i in range(count):
        Image.new("RGB", (6, 6), (i * 30, 0, 0)).save(folder / f"{i}.png")


def test_folder_problems_name_each_reason_an_image_folder_cannot_train(tmp_path):
    from runs.data import folder_problems, images

    assert folder_problems(tmp_path) == [
        f"{tmp_path} holds no sub-folders; put one sub-folder of images per class there"
    ]
    write_images(tmp_path / "cat", 3)
    assert folder_problems(tmp_path) == [f"{tmp_path} holds one class ('cat'); a classifier needs two or more"]
    (tmp_path / "dog").mkdir()
    (tmp_path / "dog" / "notes.txt").write_text("ignored: not an image suffix")
    assert folder_problems(tmp_path) == ["class folder 'dog' holds no images (.bmp, .gif, .jpeg, .jpg, .png, .webp)"]
    write_images(tmp_path / "bird", 2)
    (tmp_path / "dog" / "0.png").write_text("a text file named .png")
    truncated = (tmp_path / "cat" / "0.png").read_bytes()[:40]
    (tmp_path / "cat" / "0.png").write_bytes(truncated)
    (problem,) = folder_problems(tmp_path)
    assert problem.startswith("not images that can be read: cat/0.png (") and "dog/0.png (cannot identify" in problem
    shutil.rmtree(tmp_path / "dog")
    (tmp_path / "cat" / "0.png").unlink()
    assert folder_problems(tmp_path) == [] and images(DataSpec("imagefolder", path=str(tmp_path))) == 4

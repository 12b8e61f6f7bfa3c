"""Datasets on tensors, and augmentation on the device."""

import io
import os
import pickle
import shutil
import struct
import time

import numpy as np
import pytest
import torch

from runs.data import CIFAR_FILES, CIFAR_LABELS, DataSpec, augment, geometry, load, read_cifar_batch


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


def py2_batch(images: np.ndarray, labels: list[int], label_key: bytes = b"labels") -> bytes:
    """A batch as CIFAR's own files are: pickled by Python 2 (protocol 2, str as BINSTRING,
    numpy 1's ``numpy.core.multiarray``), with their batch_label and filenames."""

    def text(b: bytes) -> bytes:
        return b"T" + struct.pack("<i", len(b)) + b  # BINSTRING: what Python 2 wrote for str

    def number(v: int) -> bytes:
        return b"J" + struct.pack("<i", v)  # BININT

    dtype = (
        b"cnumpy\ndtype\n" + text(b"u1") + number(0) + number(1) + b"\x87R("
        + number(3) + text(b"|") + b"NNN" + number(-1) + number(-1) + number(0) + b"tb"
    )  # fmt: skip
    array = (
        b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n" + number(0) + b"\x85" + text(b"b") + b"\x87R"
        + b"(" + number(1) + number(len(images)) + number(3072) + b"\x86" + dtype + b"\x89"
        + text(images.tobytes()) + b"tb"
    )  # fmt: skip
    names = b"](" + b"".join(text(b"img_%d.png" % i) for i in range(len(images))) + b"e"
    return (
        b"\x80\x02}(" + text(b"batch_label") + text(b"training batch 1 of 5") + text(b"data") + array
        + text(label_key) + b"](" + b"".join(number(v) for v in labels) + b"e" + text(b"filenames") + names + b"u."
    )  # fmt: skip


def write_cifar(folder, n: int = 4, *, dataset: str = "cifar10", protocol: int | None = 2) -> None:
    """A CIFAR folder of ``n`` images a file: pickled by Python 3 at ``protocol`` (2: the
    latin-1 text of ``_codecs.encode``), or as CIFAR's own files (None: Python 2's)."""
    rng = np.random.default_rng(0)
    label_key, classes = CIFAR_LABELS[dataset]
    folder.mkdir(parents=True, exist_ok=True)
    for name in CIFAR_FILES[dataset]:
        images = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, classes, n)]
        batch = {b"batch_label": b"batch", b"data": images, label_key: labels, b"filenames": [b"a.png"] * n}
        (folder / name).write_bytes(pickle.dumps(batch, protocol) if protocol else py2_batch(images, labels, label_key))


@pytest.mark.parametrize("protocol", [None, 2, 4, 5])
def test_cifar_batches_are_read_from_a_local_folder(tmp_path, protocol):
    write_cifar(tmp_path, protocol=protocol)
    data = load(DataSpec("cifar10", path=str(tmp_path)))
    assert data.train_x.shape == (20, 3, 32, 32) and data.val_x.shape == (4, 3, 32, 32)
    images, labels = read_cifar_batch(tmp_path / "test_batch", "cifar10")
    assert torch.equal(data.val_x, torch.from_numpy(images.copy()).float().reshape(-1, 3, 32, 32) / 255)
    assert torch.equal(data.val_y, torch.from_numpy(labels)) and labels.dtype == np.int64


def test_cifar100_reads_fine_labels(tmp_path):
    write_cifar(tmp_path, n=6, dataset="cifar100", protocol=None)
    data = load(DataSpec("cifar100", path=str(tmp_path)))
    assert data.train_x.shape == (6, 3, 32, 32) and data.geometry.num_classes == 100
    assert int(data.train_y.min()) >= 0 and int(data.train_y.max()) < 100


class _Runs:
    """Unpickled by plain pickle, it would create the file ``canary``: what a crafted batch does."""

    def __init__(self, canary) -> None:
        self.canary = canary

    def __reduce__(self):
        return (os.system, (f"touch {self.canary}",))


def _batch(data, labels, **more) -> bytes:
    return pickle.dumps({b"data": data, b"labels": labels, **more}, protocol=2)


def _cifar_refusals(canary) -> dict[str, tuple[bytes, str]]:
    """name -> (a data_batch_1's bytes, what the refusal says)."""
    zeros = np.zeros((2, 3072), np.uint8)
    real = py2_batch(zeros, [0, 1])
    text = "a" * 100_000
    # _codecs.encode called again and again on one memoised 100 KB string: 1 GB from a small file
    latin1_bomb = (
        b"\x80\x02]q\x00c_codecs\nencode\nq\x01X" + struct.pack("<I", len(text)) + text.encode() + b"q\x02"
        + b"X\x06\x00\x00\x00latin1q\x03(" + b"h\x01h\x02h\x03\x86R" * 10_000 + b"e."
    )  # fmt: skip
    return {
        "os.system": (_batch(_Runs(canary), [0]), "names the global posix.system, which is not allowed here"),
        "an object array": (_batch(np.array([1, "x"], dtype=object), [0]), "dtype 'O8'"),
        "float pixels": (_batch(np.zeros((2, 3072)), [0, 1]), "dtype 'f8'"),
        "a wrong shape": (_batch(np.zeros((2, 3071), np.uint8), [0, 1]), "data is a uint8 array of shape (2, 3071)"),
        "a label out of range": (_batch(zeros, [0, 10]), "labels holds 10; expected ints in 0-9"),
        "too few labels": (_batch(zeros, [0]), "labels is a list of 1; expected a list of 2 ints"),
        "too many images": (_batch(np.zeros((10_001, 3072), np.uint8), [0] * 10_001), "holds 10,001 images"),
        "not a dict": (pickle.dumps([zeros], protocol=2), "holds a list; a CIFAR batch holds a dict"),
        "truncated": (_batch(zeros, [0, 1])[:-200], "not a CIFAR batch"),
        "garbage": (bytes(range(256)) * 4, "not a CIFAR batch"),
        "empty": (b"", "not a CIFAR batch"),
        "numpy.ndarray called": (b"\x80\x02cnumpy\nndarray\nJ\x00\xe1\xf5\x05\x85R.", "calls numpy.ndarray"),
        "_codecs.encode to zlib": (b"\x80\x02c_codecs\nencode\nX\x01\x00\x00\x00aX\x04\x00\x00\x00zlib\x86R.", "zlib"),
        "_codecs.encode again and again": (latin1_bomb, "builds more text than the file holds"),
        "two arrays": (_batch(zeros, [0, 1], extra=zeros.copy()), "builds a second numpy array"),
        # a uint8 dtype whose flags say it holds object pointers: numpy would read the pixels as such
        "a crafted dtype state": (
            real.replace(b"J\x00\x00\x00\x00tb\x89", b"J\x01\x00\x00\x00tb\x89"),
            "uint8 dtype with",
        ),
        "a shape its bytes do not fill": (
            real.replace(b"J\x02\x00\x00\x00J\x00\x0c", b"J\x03\x00\x00\x00J\x00\x0c"),
            "(3, 3072)",
        ),
        "a million empty dicts": (b"\x80\x02(" + b"}" * 1_000_000 + b"l.", "more than 160,000 pickle operations"),
    }


def test_a_crafted_or_malformed_cifar_batch_is_refused_in_one_line_and_never_run(tmp_path):
    from runs.data import DataError

    canary = tmp_path / "canary"
    write_cifar(tmp_path / "data")
    for name, (raw, expected) in _cifar_refusals(canary).items():
        (tmp_path / "data" / "data_batch_1").write_bytes(raw)
        with pytest.raises(DataError) as err:
            load(DataSpec("cifar10", path=str(tmp_path / "data")))
            pytest.fail(f"{name}: loaded")
        message = str(err.value)
        assert message.startswith(f"{tmp_path / 'data' / 'data_batch_1'}: ") and "\n" not in message, name
        assert expected in message, (name, message)
    assert not canary.exists()


@pytest.mark.parametrize("kind", ["folder", "fifo", "/dev/zero", "link to /dev/zero", "too large"])
def test_a_cifar_file_that_is_not_a_regular_file_is_refused_unread(tmp_path, kind, monkeypatch):
    from runs import data as datasets

    write_cifar(tmp_path)
    target = tmp_path / "test_batch"
    target.unlink()
    expected = {"folder": "is a folder", "fifo": "is a FIFO", "too large": "a CIFAR batch is at most"}
    if kind == "folder":
        target.mkdir()
    elif kind == "fifo":
        os.mkfifo(target)
    elif kind == "too large":
        monkeypatch.setattr(datasets, "CIFAR_BYTES_PER_IMAGE", 400)  # 10,000 images: 4 MB at most
        target.write_bytes(b"\0" * (4_000_001))
    else:
        os.symlink("/dev/zero", target)
    with pytest.raises(datasets.DataError, match=expected.get(kind, "is a character device")) as err:
        load(DataSpec("cifar10", path=str(tmp_path)))
    assert str(err.value).startswith(f"{target}")
    assert datasets.cifar_problems(tmp_path, "cifar10") == [str(err.value)]


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


def _untrusted_images(folder) -> dict[str, str]:
    """Files named as images in ``folder``'s class ``cat`` that are not images to decode:
    file name -> what the refusal says."""
    from PIL import Image

    cat = folder / "cat"
    cat.mkdir(parents=True, exist_ok=True)
    (cat / "sub.png").mkdir()
    os.symlink("/dev/zero", cat / "z.png")
    os.mkfifo(cat / "f.png")
    os.symlink(cat / "gone.png", cat / "dangling.png")
    photo = io.BytesIO()
    Image.effect_noise((300, 200), 60).convert("RGB").save(photo, "JPEG")
    (cat / "truncated.jpg").write_bytes(photo.getvalue()[: len(photo.getvalue()) // 2])
    for name, side in (("bomb.png", 20_000), ("huge.png", 7_000)):  # 400 and 49 million pixels, a few KB
        Image.new("1", (side, side)).save(cat / name)
    (cat / "ghostscript.png").write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n")
    return {
        "sub.png": "is a folder, not an image",
        "z.png": "is a character device, not an image",
        "f.png": "is a FIFO (named pipe), not an image",
        "dangling.png": "no such file",
        "truncated.jpg": "image file is truncated",
        "bomb.png": "over 89,478,485 pixels (a decompression bomb?); an image here has at most 40,000,000",
        "huge.png": "7,000 x 7,000 pixels; an image here has at most 40,000,000",
        # EPS: PIL's decoder would run Ghostscript on it
        "ghostscript.png": "cannot identify image file as PNG, JPEG, BMP, GIF or WEBP",
    }


def test_files_named_as_images_are_decoded_at_validation_and_refused_unless_regular_images(tmp_path):
    from runs.data import folder_problems

    write_images(tmp_path / "cat", 2)
    write_images(tmp_path / "dog", 2)
    assert folder_problems(tmp_path) == []
    expected = _untrusted_images(tmp_path)
    started = time.perf_counter()
    (problem,) = folder_problems(tmp_path, limit=len(expected))
    assert time.perf_counter() - started < 5 and problem.startswith("not images that can be read: ")
    for name, reason in expected.items():
        assert f"cat/{name} ({reason}" in problem, (name, problem)


UNTRUSTED_IMAGES = ["sub.png", "z.png", "f.png", "dangling.png", "truncated.jpg", "bomb.png", "huge.png"]
UNTRUSTED_IMAGES.append("ghostscript.png")


@pytest.mark.parametrize("name", UNTRUSTED_IMAGES)
def test_an_image_that_cannot_be_read_at_loading_is_one_line_naming_it(tmp_path, name):
    from runs.data import DataError

    reason = _untrusted_images(tmp_path / "made")[name]
    write_images(tmp_path / "data" / "cat", 2)
    write_images(tmp_path / "data" / "dog", 2)
    os.rename(tmp_path / "made" / "cat" / name, tmp_path / "data" / "cat" / name)  # as if changed after validation
    started = time.perf_counter()
    with pytest.raises(DataError) as err:
        load(DataSpec("imagefolder", path=str(tmp_path / "data")))
    assert time.perf_counter() - started < 5
    assert str(err.value).startswith(f"{tmp_path / 'data' / 'cat' / name}: not an image that can be read ({reason}")
    assert "\n" not in str(err.value)

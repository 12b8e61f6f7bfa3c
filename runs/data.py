"""Datasets as tensors on the training device, with augmentation done there.

Every dataset here fits in memory; a trial's data loading is a tensor index. Nothing is
downloaded: ``digits`` ships with scikit-learn, ``synthetic`` is generated, CIFAR and
image folders are read from a local path.
"""

from __future__ import annotations

import math
import os
import pickle
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

NATIVE_SIZE = {"digits": 8, "synthetic": 32, "cifar10": 32, "cifar100": 32, "imagefolder": 64}
_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"}


@dataclass(frozen=True)
class Geometry:
    image_size: tuple[int, int]
    channels: int
    num_classes: int


@dataclass
class Dataset:
    """Images as they come (in [0, 1], at the spec's size), and the training split's
    per-channel ``mean`` and ``std``: the model normalises with them (``normalising``),
    so that a model taken away takes plain images."""

    train_x: torch.Tensor  # (N, C, H, W)
    train_y: torch.Tensor  # (N,)
    val_x: torch.Tensor
    val_y: torch.Tensor
    geometry: Geometry
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    def to(self, device: torch.device | str) -> Dataset:
        moved = (t.to(device) for t in (self.train_x, self.train_y, self.val_x, self.val_y))
        return Dataset(*moved, self.geometry, self.mean, self.std)

    def normalising(self, arch):
        """``arch`` (an ``ArchSpec``) normalising its input with this data's statistics."""
        return replace(arch, input_mean=self.mean, input_std=self.std)


@dataclass(frozen=True)
class DataSpec:
    dataset: str = "digits"
    path: str | None = None
    image_size: int | None = None  # None: the dataset's own
    val_fraction: float = 0.2
    num_classes: int = 10  # synthetic only
    samples: int = 2000  # synthetic only
    channels: int = 3  # synthetic only
    crop: int = 0  # random-crop padding in pixels (0: off)
    flip: bool = False


def geometry(spec: DataSpec) -> Geometry:
    """Image size, channels and classes of a ``DataSpec``, without loading the data."""
    side = spec.image_size or NATIVE_SIZE[spec.dataset]
    if spec.dataset == "synthetic":
        return Geometry((side, side), spec.channels, spec.num_classes)
    if spec.dataset == "imagefolder":
        folder = Path(spec.path or ".")
        classes = sorted(p for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []
        return Geometry((side, side), 3, len(classes) or spec.num_classes)
    return Geometry((side, side), 1 if spec.dataset == "digits" else 3, 100 if spec.dataset == "cifar100" else 10)


def _split(x: torch.Tensor, y: torch.Tensor, fraction: float) -> tuple:
    # A fixed split (seed 0): every trial of every sweep validates on the same images.
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    n_val = max(1, round(len(x) * fraction))
    val, train = order[:n_val], order[n_val:]
    return x[train], y[train], x[val], y[val]


def _digits(spec) -> tuple:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0  # (N, 1, 8, 8)
    return _split(x, torch.tensor(bunch.target), spec.val_fraction)


def _synthetic(spec, seed: int) -> tuple:
    """Each class a smooth random template; samples are the template plus noise."""
    g = torch.Generator().manual_seed(seed)
    side = spec.image_size or NATIVE_SIZE["synthetic"]
    coarse = torch.randn(spec.num_classes, spec.channels, 4, 4, generator=g)
    templates = F.interpolate(coarse, size=(side, side), mode="bilinear", align_corners=False)
    y = torch.randint(0, spec.num_classes, (spec.samples,), generator=g)
    x = templates[y] + 0.8 * torch.randn(spec.samples, spec.channels, side, side, generator=g)
    return _split(x, y, spec.val_fraction)


def _cifar(spec) -> tuple:
    root = Path(spec.path)
    names = ([f"data_batch_{i}" for i in range(1, 6)], ["test_batch"])
    label_key = b"labels"
    if spec.dataset == "cifar100":
        names, label_key = (["train"], ["test"]), b"fine_labels"
    parts = []
    for files in names:
        xs, ys = [], []
        for name in files:
            with open(root / name, "rb") as f:
                batch = pickle.load(f, encoding="bytes")  # the official format: trusted local files
            xs.append(np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
            ys.append(np.asarray(batch[label_key]))
        parts.append((torch.from_numpy(np.concatenate(xs)).float() / 255, torch.from_numpy(np.concatenate(ys))))
    (tx, ty), (vx, vy) = parts
    return tx, ty.long(), vx, vy.long()


def _imagefolder(spec) -> tuple:
    from PIL import Image

    side = spec.image_size or NATIVE_SIZE["imagefolder"]
    classes = sorted(p for p in Path(spec.path).iterdir() if p.is_dir())
    xs, ys = [], []
    for label, folder in enumerate(classes):
        for file in sorted(folder.iterdir()):
            if file.suffix.lower() in _IMAGE_SUFFIXES:
                image = Image.open(file).convert("RGB").resize((side, side))
                xs.append(torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(2, 0, 1))
                ys.append(label)
    if not xs:
        raise FileNotFoundError(f"no images under {spec.path} (expected one sub-folder per class)")
    return _split(torch.stack(xs).float() / 255, torch.tensor(ys), spec.val_fraction)


def load(spec, *, seed: int = 0) -> Dataset:
    """Load a ``DataSpec`` on the CPU: resized, with the training split's per-channel
    statistics beside it (the images themselves are left as they are)."""
    if spec.dataset == "digits":
        tx, ty, vx, vy = _digits(spec)
    elif spec.dataset == "synthetic":
        tx, ty, vx, vy = _synthetic(spec, seed)
    elif spec.dataset in ("cifar10", "cifar100"):
        tx, ty, vx, vy = _cifar(spec)
    else:
        tx, ty, vx, vy = _imagefolder(spec)
    geo = geometry(spec)
    if tuple(tx.shape[-2:]) != geo.image_size:
        tx, vx = (F.interpolate(t, size=geo.image_size, mode="bilinear", align_corners=False) for t in (tx, vx))
    mean, std = tx.mean(dim=(0, 2, 3)), tx.std(dim=(0, 2, 3)).clamp_min(1e-6)
    return Dataset(tx, ty.long(), vx, vy.long(), geo, tuple(mean.tolist()), tuple(std.tolist()))


def augment(x: torch.Tensor, *, crop: int, flip: bool, generator: torch.Generator) -> torch.Tensor:
    """Random crop (zero padding ``crop``) and horizontal flip, per image, on x's device."""
    B, C, H, W = x.shape
    if crop:
        padded = F.pad(x, (crop, crop, crop, crop))
        dy = torch.randint(0, 2 * crop + 1, (B, 1), generator=generator, device=generator.device).to(x.device)
        dx = torch.randint(0, 2 * crop + 1, (B, 1), generator=generator, device=generator.device).to(x.device)
        rows = (dy + torch.arange(H, device=x.device))[:, None, :, None]  # (B, 1, H, 1)
        cols = (dx + torch.arange(W, device=x.device))[:, None, None, :]  # (B, 1, 1, W)
        batch = torch.arange(B, device=x.device)[:, None, None, None]
        x = padded[batch, torch.arange(C, device=x.device)[None, :, None, None], rows, cols]
    if flip:
        mask = torch.rand(B, generator=generator, device=generator.device).to(x.device) < 0.5
        x = torch.where(mask[:, None, None, None], x.flip(-1), x)
    return x


# -- what a spec's dataset needs, known before loading it (search.spec refuses on these) --

DIGITS_IMAGES = 1797  # scikit-learn's digits: counted here rather than importing sklearn at validate
CIFAR_IMAGES = 60_000
LOAD_COPIES = 3  # float32 images are held about three times over while loading (decoded, resized, split)


def class_folders(folder: Path) -> dict[str, list[Path]]:
    """An image folder's classes (its sub-folders, sorted) -> their image files, by suffix."""
    return {
        sub.name: sorted(f for f in sub.iterdir() if f.suffix.lower() in _IMAGE_SUFFIXES and f.is_file())
        for sub in sorted(p for p in folder.iterdir() if p.is_dir())
    }


def folder_problems(folder: Path, *, limit: int = 3) -> list[str]:
    """Why ``folder`` cannot be a dataset of images, one sentence each ([] when it can):
    no class, one class, a class without images, files that are not images."""
    from PIL import Image, UnidentifiedImageError

    classes = class_folders(folder)
    suffixes = ", ".join(sorted(_IMAGE_SUFFIXES))
    if not classes:
        return [f"{folder} holds no sub-folders; put one sub-folder of images per class there"]
    problems = [f"class folder {name!r} holds no images ({suffixes})" for name, files in classes.items() if not files]
    if len(classes) < 2:
        problems.append(f"{folder} holds one class ({next(iter(classes))!r}); a classifier needs two or more")
    bad = []
    for name, files in classes.items():
        for file in files:
            try:
                with Image.open(file) as image:
                    image.verify()  # reads the file through: a truncated or mislabelled one fails here
            except (OSError, UnidentifiedImageError, Image.DecompressionBombError, SyntaxError, ValueError) as err:
                bad.append(f"{name}/{file.name} ({str(err).splitlines()[0][:80] or type(err).__name__})")
    if bad:
        more = f" and {len(bad) - limit} more" if len(bad) > limit else ""
        problems.append(f"not images that can be read: {', '.join(bad[:limit])}{more}")
    return problems


def images(spec) -> int:
    """How many images (training and validation) the dataset of a ``DataSpec`` holds."""
    if spec.dataset == "digits":
        return DIGITS_IMAGES
    if spec.dataset == "synthetic":
        return spec.samples
    if spec.dataset in ("cifar10", "cifar100"):
        return CIFAR_IMAGES
    return sum(len(files) for files in class_folders(Path(spec.path)).values())


def bytes_to_load(spec) -> int:
    """Memory that loading the dataset takes at its size, about (float32, LOAD_COPIES)."""
    geo = geometry(spec)
    return images(spec) * geo.channels * geo.image_size[0] * geo.image_size[1] * 4 * LOAD_COPIES


def largest_side(spec, memory: int) -> int:
    """The largest square image size whose dataset loads in ``memory`` bytes (0: none)."""
    return math.isqrt(memory // max(1, images(spec) * geometry(spec).channels * 4 * LOAD_COPIES))


def physical_memory() -> int:
    """This machine's memory in bytes."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")

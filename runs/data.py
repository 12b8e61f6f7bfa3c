"""Datasets as tensors on the training device, with augmentation done there.

Every dataset here fits in memory; a trial's data loading is a tensor index. Nothing is
downloaded: ``digits`` ships with scikit-learn, ``synthetic`` is generated, CIFAR and
image folders are read from a local path, as untrusted files (``runs.files``): regular
files only, within size bounds; CIFAR's pickles with no global but numpy's array parts,
images with no decoder but IMAGE_FORMATS' and within IMAGE_PIXELS. A file that cannot be
loaded is ``DataError``, one line naming it (``search.spec`` refuses the same at validation).
"""

from __future__ import annotations

import io
import math
import os
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from runs import files

NATIVE_SIZE = {"digits": 8, "synthetic": 32, "cifar10": 32, "cifar100": 32, "imagefolder": 64}
_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"}


class DataError(ValueError):
    """A dataset file that cannot be loaded (not what it should be, or changed since the
    spec was validated); the message is one line that names the file."""


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
    root, names = Path(spec.path), list(CIFAR_FILES[spec.dataset])
    parts = []
    for split in (names[:-1], names[-1:]):  # the training files, then the test file (validation)
        batches = [read_cifar_batch(root / name, spec.dataset) for name in split]
        x = np.concatenate([images for images, _ in batches]).reshape(-1, 3, 32, 32)
        y = np.concatenate([labels for _, labels in batches])
        parts.append((torch.from_numpy(x).float() / 255, torch.from_numpy(y)))
    (tx, ty), (vx, vy) = parts
    return tx, ty.long(), vx, vy.long()


def _imagefolder(spec) -> tuple:
    side = spec.image_size or NATIVE_SIZE["imagefolder"]
    xs, ys = [], []
    for label, paths in enumerate(class_folders(Path(spec.path)).values()):
        for file in paths:
            try:
                image = decode_image(file).resize((side, side))
            except Exception as err:  # changed since validation: said in one line, not a traceback
                raise DataError(f"{file}: not an image that can be read ({_reason(err, file)})") from None
            xs.append(torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(2, 0, 1))
            ys.append(label)
    if not xs:
        raise DataError(f"no images under {spec.path} (expected one sub-folder per class)")
    return _split(torch.stack(xs).float() / 255, torch.tensor(ys), spec.val_fraction)


# -- a dataset's files, read as untrusted input (runs.files) ------------------------------

CIFAR_PIXELS = 3 * 32 * 32
# Each dataset's files, training first, and the images each holds at most (the real ones: exactly).
CIFAR_FILES = {
    "cifar10": {**{f"data_batch_{i}": 10_000 for i in range(1, 6)}, "test_batch": 10_000},
    "cifar100": {"train": 50_000, "test": 10_000},
}
CIFAR_LABELS = {"cifar10": (b"labels", 10), "cifar100": (b"fine_labels", 100)}
# A batch's bytes per image at most: its pixels, twice over when Python 3 re-pickled them
# (protocol 2 writes bytes as latin-1 text, UTF-8 encoded), and its file name and labels.
CIFAR_BYTES_PER_IMAGE = 2 * CIFAR_PIXELS + 512
# Pickle operations per image at most: a file name and labels take 3 to 11 (Python 3's
# protocol 2, whose bytes are calls); an empty dict is one byte, so the bound bounds memory.
CIFAR_OPS_PER_IMAGE = 16


class _Ndarray:
    """``numpy.ndarray`` as a batch names it: an argument of ``_reconstruct``, never called
    (the real class would allocate any shape a file asks for)."""

    def __new__(cls, *args, **kwargs):
        raise files.UntrustedFile("calls numpy.ndarray, which a CIFAR batch does not")


class _Uint8:
    """numpy's uint8 dtype as a batch pickles it. Its state is checked here, never given to
    numpy: a crafted one makes a uint8 dtype that holds object pointers."""

    def __setstate__(self, state) -> None:
        # (version, endian, subarray, names, fields, elsize, alignment[, flags[, metadata]])
        plain = isinstance(state, tuple) and len(state) in (7, 8, 9) and state[1] in ("|", b"|")
        if not plain or state[2:7] != (None, None, None, -1, -1) or any(v not in (0, None) for v in state[7:]):
            raise files.UntrustedFile(f"holds a uint8 dtype with the state {str(state)[:60]}, not numpy's")


def _uint8_array(raw, shape, dtype, fortran: bool) -> np.ndarray:
    """The array of a batch's bytes: ``shape`` must hold exactly ``len(raw)`` uint8 values."""
    fine = isinstance(raw, (bytes, bytearray)) and isinstance(dtype, _Uint8) and isinstance(shape, tuple)
    if not (fine and all(type(n) is int and n >= 0 for n in shape) and math.prod(shape) == len(raw)):
        raise files.UntrustedFile(f"holds an array of shape {str(shape)[:40]} that its bytes do not fill as uint8")
    return np.frombuffer(raw, np.uint8).reshape(shape, order="F" if fortran else "C")


class _Array:
    """A numpy array as a batch pickles it (``_reconstruct``, then its state): built here
    from its bytes, as uint8 (``array``)."""

    array: np.ndarray | None = None

    def __setstate__(self, state) -> None:
        if isinstance(state, tuple) and len(state) == 5:  # (version, shape, dtype, is_fortran, bytes)
            state = state[1:]
        if not (isinstance(state, tuple) and len(state) == 4):
            raise files.UntrustedFile(f"holds a numpy array with the state {str(state)[:60]}")
        shape, dtype, fortran, raw = state
        self.array = _uint8_array(raw, shape, dtype, bool(fortran))


class _CifarCalls:
    """What a CIFAR batch's pickle may call (numpy's array parts, ``_codecs.encode``), for
    one file: one array and its dtype, and no more latin-1 text than the file's bytes.
    Called again and again on one memoised argument, they would fill memory from a small file."""

    def __init__(self, size: int) -> None:
        self.left = {"array": 1, "dtype": 1, "text": size}

    def _spend(self, what: str, amount: int = 1) -> None:
        self.left[what] -= amount
        if self.left[what] < 0:
            again = "more text than the file holds" if what == "text" else f"a second numpy {what}"
            raise files.UntrustedFile(f"builds {again} (one call again and again?)")

    def reconstruct(self, subtype, shape, typecode) -> _Array:  # numpy's; the state then fills it
        if subtype is not _Ndarray:
            raise files.UntrustedFile(f"reconstructs {getattr(subtype, '__name__', subtype)!r}, not a numpy array")
        self._spend("array")
        return _Array()

    def frombuffer(self, buffer, dtype, shape, order) -> np.ndarray:  # numpy's, for pickle protocol 5
        self._spend("array")
        return _uint8_array(buffer, shape, dtype, order == "F")

    def dtype(self, name, *args) -> _Uint8:
        if name not in ("u1", b"u1"):  # an object dtype, for one, would hold whatever the pickle builds
            raise files.UntrustedFile(f"holds an array of dtype {name!r}; CIFAR's pixels are uint8 (u1)")
        self._spend("dtype")
        return _Uint8()

    def latin1(self, text, encoding="utf-8") -> bytes:  # _codecs.encode: how Python 3's protocol 2 writes bytes
        if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
            raise files.UntrustedFile(f"encodes a {type(text).__name__} as {encoding!r}; CIFAR's bytes are latin-1")
        self._spend("text", len(text))
        return text.encode("latin-1")

    def allowed(self) -> dict:
        """Everything a CIFAR batch names, as Python 2 or 3 and numpy 1 or 2 write it; dicts,
        lists, ints and bytes are pickle opcodes, not globals."""
        return {
            ("numpy.core.multiarray", "_reconstruct"): self.reconstruct,
            ("numpy._core.multiarray", "_reconstruct"): self.reconstruct,
            ("numpy.core.numeric", "_frombuffer"): self.frombuffer,
            ("numpy._core.numeric", "_frombuffer"): self.frombuffer,
            ("numpy", "ndarray"): _Ndarray,
            ("numpy", "dtype"): self.dtype,
            ("_codecs", "encode"): self.latin1,
        }


def _described(value) -> str:
    if isinstance(value, np.ndarray):
        return f"a {value.dtype} array of shape {value.shape}"
    name = type(value).__name__
    return "nothing" if value is None else f"{'an' if name[0] in 'aeiou' else 'a'} {name}"


def read_cifar_batch(path: Path, dataset: str) -> tuple[np.ndarray, np.ndarray]:
    """The images ((N, 3072) uint8, read-only) and labels ((N,) int64) of one CIFAR batch, read
    with no global but numpy's array parts and checked; else ``DataError``, one line."""
    most, (label_key, classes) = CIFAR_FILES[dataset][path.name], CIFAR_LABELS[dataset]
    try:
        raw = files.read_bytes(path, most * CIFAR_BYTES_PER_IMAGE, "CIFAR batch")
        calls = _CifarCalls(len(raw)).allowed()
        batch = files.unpickle(raw, calls, path, "CIFAR batch", most_ops=most * CIFAR_OPS_PER_IMAGE)
    except files.UntrustedFile as err:
        raise DataError(str(err)) from None
    del raw
    expected = f"a CIFAR batch holds a dict of data ((N, {CIFAR_PIXELS}) uint8) and {label_key.decode()}"
    if not isinstance(batch, dict):
        raise DataError(f"{path}: holds {_described(batch)}; {expected}")
    batch = {k.encode() if isinstance(k, str) else k: v for k, v in batch.items()}  # str keys: re-pickled
    images, labels = batch.get(b"data"), batch.get(label_key)
    images = images.array if isinstance(images, _Array) else images
    if not (isinstance(images, np.ndarray) and images.dtype == np.uint8 and images.shape[1:] == (CIFAR_PIXELS,)):
        raise DataError(f"{path}: data is {_described(images)}; {expected}")
    if not 1 <= len(images) <= most:
        raise DataError(f"{path}: holds {len(images):,} images; {path.name} holds 1 to {most:,}")
    key = label_key.decode()
    if not isinstance(labels, list) or len(labels) != len(images):
        what = f"a list of {len(labels):,}" if isinstance(labels, list) else _described(labels)
        raise DataError(f"{path}: {key} is {what}; expected a list of {len(images):,} ints, one per image")
    wrong = [v for v in labels if type(v) is not int or not 0 <= v < classes][:1]
    if wrong:
        raise DataError(f"{path}: {key} holds {repr(wrong[0])[:40]}; expected ints in 0-{classes - 1}")
    return images, np.asarray(labels, dtype=np.int64)


def cifar_problems(folder: Path, dataset: str) -> list[str]:
    """Why the CIFAR files present in ``folder`` cannot be loaded, one line each ([]: they can)."""
    problems = []
    for name in CIFAR_FILES[dataset]:
        if os.path.lexists(folder / name):  # a missing file is said elsewhere (a warning at validate)
            try:
                read_cifar_batch(folder / name, dataset)
            except DataError as err:
                problems.append(str(err))
    return problems


IMAGE_BYTES = 64 * files.MB  # one image file; a photo takes a few MB
# Pixels of one decoded image (after a JPEG's reduction to the size trained on): 4 bytes each.
IMAGE_PIXELS = 40_000_000
# What the suffixes name; no other decoder is tried (PIL's EPS one, for one, runs Ghostscript).
IMAGE_FORMATS = ("PNG", "JPEG", "BMP", "GIF", "WEBP")


def decode_image(file: Path):
    """The image in ``file`` decoded, as RGB (a PIL image): read as a regular file within
    IMAGE_BYTES, one of IMAGE_FORMATS, at most IMAGE_PIXELS, decoded whole (a JPEG is not
    reduced by its decoder: the pixels a model trains on stay those of a full decode, as
    before). Raises whatever PIL or ``runs.files`` raise."""
    from PIL import Image, UnidentifiedImageError

    data = files.read_bytes(file, IMAGE_BYTES, "image")
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)  # an error, not a line on stderr
        try:
            image = Image.open(io.BytesIO(data), formats=IMAGE_FORMATS)
        except UnidentifiedImageError:
            formats = f"{', '.join(IMAGE_FORMATS[:-1])} or {IMAGE_FORMATS[-1]}"
            raise files.UntrustedFile(f"cannot identify image file as {formats}") from None
        except (Image.DecompressionBombWarning, Image.DecompressionBombError):
            over = f"over {Image.MAX_IMAGE_PIXELS:,} pixels (a decompression bomb?)"
            raise files.UntrustedFile(f"{over}; an image here has at most {IMAGE_PIXELS:,}") from None
        if image.width * image.height > IMAGE_PIXELS:
            raise files.UntrustedFile(
                f"{image.width:,} x {image.height:,} pixels; an image here has at most {IMAGE_PIXELS:,}"
            )
        image.load()  # decodes it all: a truncated or corrupted file fails here
    return image.convert("RGB")


def _reason(err: Exception, file: Path) -> str:
    """Why ``file`` could not be decoded, short: without the file's own name, one line."""
    text = str(err).removeprefix(str(file)).removeprefix(":").strip()
    return (text.splitlines() or [""])[0][:100] or type(err).__name__


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
    """An image folder's classes (its sub-folders, sorted) -> their image files, by suffix:
    whatever they are (a folder or a FIFO named ``x.png`` is refused, not skipped)."""
    return {
        sub.name: sorted(f for f in sub.iterdir() if f.suffix.lower() in _IMAGE_SUFFIXES)
        for sub in sorted(p for p in folder.iterdir() if p.is_dir())
    }


def folder_problems(folder: Path, *, limit: int = 3) -> list[str]:
    """Why ``folder`` cannot be a dataset of images, one sentence each ([] when it can):
    no class, one class, a class without images, files that are not images (each decoded
    whole, as loading will)."""
    classes = class_folders(folder)
    suffixes = ", ".join(sorted(_IMAGE_SUFFIXES))
    if not classes:
        return [f"{folder} holds no sub-folders; put one sub-folder of images per class there"]
    problems = [f"class folder {name!r} holds no images ({suffixes})" for name, paths in classes.items() if not paths]
    if len(classes) < 2:
        problems.append(f"{folder} holds one class ({next(iter(classes))!r}); a classifier needs two or more")
    bad = []
    for name, paths in classes.items():
        for file in paths:
            try:
                decode_image(file)
            except Exception as err:  # PIL's decoders fail in many ways; each is a file that cannot train
                bad.append(f"{name}/{file.name} ({_reason(err, file)})")
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
    return sum(len(paths) for paths in class_folders(Path(spec.path)).values())


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

"""What a spec points at outside itself: its dataset (a folder that holds images, sizes
that fit in memory) and its store (a folder the sweep can write). Refused at validation,
located at the key that names them, before anything is created."""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from pathlib import Path

from runs import data as datasets
from runs import files
from runs.data import DataSpec
from search.spec import schema as F
from search.spec.checker import Checker
from search.spec.yamlio import Issue


def data(c: Checker, raw: dict, base: Path, check_data: bool = True) -> DataSpec:
    """The ``DataSpec`` of the data section, its path resolved from the spec's folder ``base``.
    Without ``check_data`` (validate) data that is not there yet is a warning."""
    d = c.section(raw, "data", F.DATA_FIELDS)
    spec = DataSpec(**d)
    if spec.dataset in ("cifar10", "cifar100", "imagefolder"):
        if spec.path is None:
            if not isinstance(raw, Mapping) or raw.get("path") is None:  # not refused already
                c.fail("data", f"{spec.dataset} needs data.path, the folder that holds it")
            return spec
        spec = DataSpec(**{**d, "path": str((base / spec.path).resolve())})
        if not _folder_holds_data(c, spec, check_data):
            return spec
    _memory(c, spec)
    return spec


def _folder_holds_data(c: Checker, spec: DataSpec, check_data: bool) -> bool:
    """Whether ``spec.path`` holds the dataset's files, each read as loading will read it.
    Files missing fail (at validate, a warning: data not there yet); with none missing,
    one that cannot be loaded (a FIFO, a crafted pickle, a truncated image) fails, at
    validate too; so does a path that is there but not a folder."""
    dataset, folder = spec.dataset, Path(spec.path)
    if (other := _not_a_folder(folder)) is not None:  # there, so not a warning: refused at validate too
        c.fail("data.path", f"{folder} is {other}, not a folder; data.path names the folder that holds the data")
        return False
    missing = _missing_data(dataset, folder)
    if missing is not None:
        if check_data:
            c.fail("data.path", missing)
        else:
            c.warnings.append(Issue(c.where("data.path"), "data.path", missing))
        return False
    try:
        if dataset == "imagefolder":
            # Every image is decoded, unless the folder is refused for memory (_memory) anyway.
            too_big = datasets.bytes_to_load(spec) > datasets.physical_memory()
            problems = [] if too_big else datasets.folder_problems(folder)
        else:
            problems = datasets.cifar_problems(folder, dataset)
    except OSError as err:
        problems = [f"cannot read {folder} ({err.strerror or err})"]
    for problem in problems:
        c.fail("data.path", problem)
    return not problems


def _not_a_folder(path: Path) -> str | None:
    """What ``path`` is when it is there but not a folder (links followed), in words."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):  # not there (said as missing), a loop of links, a NUL
        return None
    return None if stat.S_ISDIR(mode) else "a file" if stat.S_ISREG(mode) else files.kind(mode)


def _missing_data(dataset: str, folder: Path) -> str | None:
    """Why ``folder`` does not hold the dataset's files yet (None when it does); nothing is downloaded."""
    expected = {"cifar10": "data_batch_1 ... data_batch_5 and test_batch", "cifar100": "train and test"}
    what = expected.get(dataset, "one sub-folder of images per class")
    try:
        if not folder.is_dir():
            return f"no such folder {str(folder)!r}; put {what} there (nothing is downloaded)"
        # Absent only: a name that is there but not a file (a FIFO, a folder) is refused when read.
        absent = [name for name in datasets.CIFAR_FILES.get(dataset, []) if not os.path.lexists(folder / name)]
    except OSError as err:
        return f"cannot read {str(folder)!r} ({err.strerror or err})"
    if absent:
        return f"{str(folder)!r} has no {', '.join(absent)}; put {what} there (nothing is downloaded)"
    return None


def _memory(c: Checker, spec) -> None:
    """Refuse a dataset that cannot be loaded into this machine's memory at its size
    (the driver loads it whole, before any trial and its memory cap)."""
    need, have = datasets.bytes_to_load(spec), datasets.physical_memory()
    if need <= have:
        return
    n, geo = datasets.images(spec), datasets.geometry(spec)
    (h, w), side = geo.image_size, datasets.largest_side(spec, have)
    if spec.image_size is not None or spec.dataset != "synthetic":
        path, fix = "data.image_size", f"the largest image_size that fits is {side}" if side else "use fewer images"
    else:
        most = have // (geo.channels * h * w * 4 * datasets.LOAD_COPIES)
        path, fix = "data.samples", f"at most {most:,} samples of this size fit"
    c.fail(
        path,
        f"{n:,} images of {geo.channels}x{h}x{w} take about {need / 1e9:,.1f} GB to load"
        f" ({n:,} x {geo.channels} x {h} x {w} x 4 bytes, held {datasets.LOAD_COPIES} times over);"
        f" this machine has {have / 1e9:,.1f} GB: {fix}",
    )


def store(c: Checker, folder: str | None) -> None:
    """``tracking.dir`` must be a folder this process can write: a sweep writes its
    journal, MLflow store and checkpoints there (show, export and ui only read it)."""
    path = Path(folder or "out")
    what = f"{folder!r}" if folder else "the default store 'out' (tracking.dir)"
    try:
        if path.exists() and not path.is_dir():
            c.fail("tracking.dir", f"{what} is a file, not a folder; tracking.dir names the sweep's store folder")
            return
        nearest = path.absolute()
        while not nearest.exists():
            nearest = nearest.parent
    except (OSError, ValueError) as err:
        c.fail("tracking.dir", f"{what} cannot be used as a folder ({err})")
        return
    if not nearest.is_dir():
        c.fail("tracking.dir", f"{what} cannot be made: {nearest} is a file")
        return
    # The folder (or where it would be made), and what a sweep writes again in a finished store.
    written = [nearest, *(p for p in (path / "mlflow.db", path / "optuna") if p.exists())]
    locked = next((p for p in written if not os.access(p, os.W_OK | (os.X_OK if p.is_dir() else 0))), None)
    if locked is not None:
        where = "" if locked == path.absolute() else f" ({locked})"
        if locked == nearest and where:
            where = f" ({locked}, where it would be made)"
        c.fail(
            "tracking.dir",
            f"{what} is read-only{where}: a sweep writes its journal, MLflow store and checkpoints there;"
            " choose a folder you can write (show, export and ui read a read-only store)",
        )

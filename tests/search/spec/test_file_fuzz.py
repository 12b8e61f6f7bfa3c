"""Every file a spec can point at, fuzzed (issue 27): ``data.path`` (a CIFAR folder and an
image folder), ``extends``, ``search.replay``, ``search.warm_start.from`` and the checkpoint
``import-timm`` reads. Each may be a folder, a FIFO no one writes, a device (/dev/zero,
/dev/null), a link to any of those or to nothing, a sparse 5 GB file, a gzip bomb, a pickle
whose ``__reduce__`` would create a canary file, a truncated file or garbage. Each must be
refused in located lines (no traceback), within 5 s and 500 MB, the canary never created
and nothing created in the working folder.

The spec loads run in one child process, case after case, each under an alarm: a case that
hangs (a FIFO waited on) or reads without bound (/dev/zero) fails its case, not the test
session or the machine (the child's data is capped at 1.5 GB). A few cases run through the
command line too, each in its own process, measured with ``wait4``.
"""

from __future__ import annotations

import functools
import io
import json
import os
import pickle
import random
import re
import signal
import subprocess
import sys
import time
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.runs.test_data import write_cifar, write_images

ROOT = Path(__file__).resolve().parents[3]
SECONDS, MEMORY = 5, 500 << 20
MODEL = "model: {stages: [{depth: 1, width: 16, mixer: attention}]}\n"

# -- the odd files -------------------------------------------------------------------------


class _Canary:
    """Unpickled, it would run a command that creates the canary file."""

    def __init__(self, canary: Path) -> None:
        self.canary = canary

    def __reduce__(self):
        return (os.system, (f"touch {self.canary}",))


def _gzip_bomb(unpacked: int) -> bytes:
    """``unpacked`` zeros gzipped: about a thousandth of their size."""
    pack = zlib.compressobj(9, zlib.DEFLATED, 31)
    return b"".join([pack.compress(bytes(1 << 20)) for _ in range(unpacked >> 20)] + [pack.flush()])


@functools.cache
def bomb() -> bytes:
    return _gzip_bomb(130 << 20)  # past search.tables.table's 128 MB, in 130 KB


def _valid(target: str) -> bytes:
    """A small valid file of the kind ``target`` reads (its truncation is a case)."""
    if target == "import-timm":
        buffer = io.BytesIO()
        torch.save({"patch_embed.proj.weight": torch.zeros(8, 3, 4, 4)}, buffer)
        return buffer.getvalue()
    if target == "search.replay":
        return (ROOT / "spaces" / "tables" / "digits.jsonl.gz").read_bytes()
    if target == "cifar":
        return pickle.dumps({b"data": np.zeros((4, 3072), np.uint8), b"labels": [0, 1, 2, 3]}, protocol=2)
    if target == "image":
        from PIL import Image

        photo = io.BytesIO()
        Image.effect_noise((120, 90), 60).convert("RGB").save(photo, "JPEG")
        return photo.getvalue()
    return (MODEL + "train: {epochs: 2, lr: 0.001}\n").encode()  # a spec


KINDS = [
    "folder",
    "fifo",
    "/dev/zero",
    "/dev/null",
    "link to fifo",
    "link to /dev/zero",
    "link to folder",
    "dangling link",
    "sparse 5 GB",
    "gzip bomb",
    "crafted pickle",
    "crafted pickle as text",
    "truncated",
    "garbage",
]


def make(path: Path, kind: str, target: str, canary: Path, *, named: bool = False) -> Path:
    """An odd file of ``kind`` at ``path``; returns the path to name. A device is named
    itself, or through a link at ``path`` where the name matters (``named``)."""
    devices = {"/dev/zero", "/dev/null"}
    if kind in devices and not named:
        return Path(kind)
    if kind == "folder":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind in devices or kind.startswith("link to /dev/"):
        path.symlink_to(kind.removeprefix("link to "))
    elif kind == "link to fifo":
        os.mkfifo(path.with_name(f"fifo-{path.name}"))
        path.symlink_to(path.with_name(f"fifo-{path.name}"))
    elif kind == "link to folder":
        path.with_name(f"folder-{path.name}").mkdir()
        path.symlink_to(path.with_name(f"folder-{path.name}"))
    elif kind == "dangling link":
        path.symlink_to(path.with_name(f"gone-{path.name}"))
    elif kind == "sparse 5 GB":
        with open(path, "wb") as f:
            f.truncate(5 << 30)  # no disk taken: a size past every bound
    elif kind == "gzip bomb":
        path.write_bytes(bomb())
    elif kind == "crafted pickle":
        path.write_bytes(pickle.dumps({b"data": _Canary(canary), b"labels": [0]}, protocol=2))
    elif kind == "crafted pickle as text":  # protocol 0 is ASCII: also valid UTF-8 and YAML
        path.write_bytes(pickle.dumps(_Canary(canary), protocol=0))
    elif kind == "truncated":
        valid = _valid(target)
        path.write_bytes(valid[: len(valid) // 2])
    elif kind == "garbage":
        path.write_bytes(random.Random(0).randbytes(4096))
    return path


# -- the cases: a spec (or a command line) naming an odd file -----------------------------

TARGETS = ["data.path (cifar10)", "data.path (imagefolder)", "extends", "search.replay", "search.warm_start"]
TARGETS += ["data.path", "import-timm"]
IMAGE_KINDS = ["pixel bomb", "ghostscript"]


def _skip(target: str, kind: str) -> bool:
    """Pairs that are not refusals: a data folder that is there but empty or not there yet
    (a warning at validate, as for missing data: ``test_load``)."""
    return target == "data.path" and kind in ("folder", "link to folder", "dangling link")


CASES = [(t, k) for t in TARGETS for k in KINDS if not _skip(t, k)]
CASES += [("data.path (imagefolder)", k) for k in IMAGE_KINDS]


def _image(path: Path, kind: str) -> None:
    from PIL import Image

    if kind == "pixel bomb":  # 400 million pixels in 48 KB
        Image.new("1", (20_000, 20_000)).save(path, "PNG")
    else:  # EPS named .png: PIL's EPS decoder would run Ghostscript
        path.write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n")


def build(work: Path, number: int, target: str, kind: str, canary: Path) -> dict:
    """Case ``number``'s files under ``work``: a spec naming the odd file (or import-timm's
    arguments), and the key path its refusal is located at."""
    case = work / f"case{number}"
    case.mkdir()
    spec = case / "spec.yaml"
    key, text = target.split(" ")[0], MODEL
    if target == "data.path (cifar10)":
        write_cifar(case / "cifar")
        (case / "cifar" / "data_batch_1").unlink()
        make(case / "cifar" / "data_batch_1", kind, "cifar", canary, named=True)
        text += "data: {dataset: cifar10, path: cifar}\n"
    elif target == "data.path (imagefolder)":
        write_images(case / "images" / "cat", 2)
        write_images(case / "images" / "dog", 2)
        odd = case / "images" / "cat" / "x.png"
        _image(odd, kind) if kind in IMAGE_KINDS else make(odd, kind, "image", canary, named=True)
        text += "data: {dataset: imagefolder, path: images}\n"
    elif target == "data.path":
        text += f"data: {{dataset: cifar10, path: '{make(case / 'data', kind, 'cifar', canary)}'}}\n"
    elif target == "extends":
        parent = make(case / "parent.yaml", kind, "spec", canary)
        text = f"extends: '{parent}'\n" + MODEL
        spec.write_text(text)  # what the parent holds is located in the parent
        return {"name": f"{target}: {kind}", "spec": str(spec), "key": key, "or_in": str(parent)}
    elif target == "search.replay":
        text += f"search: {{replay: '{make(case / 'table.jsonl.gz', kind, 'search.replay', canary)}'}}\n"
    elif target == "search.warm_start":
        earlier = make(case / "earlier.yaml", kind, "spec", canary, named=True)  # a spec file: named .yaml
        text += f"search: {{warm_start: {{from: '{earlier}'}}}}\n"
    else:  # import-timm
        odd = make(case / "model.pth", kind, "import-timm", canary)
        return {"name": f"{target}: {kind}", "argv": ["import-timm", str(odd), "--out", str(case / "imported")]}
    spec.write_text(text)
    return {"name": f"{target}: {kind}", "spec": str(spec), "key": key}


def _alarm(signum, frame):
    raise TimeoutError(f"still running after {SECONDS} s")


def run_cases(cases: list[dict]) -> list[dict]:
    """In the child: each case loaded as ``validate`` loads it (or import-timm run), under
    an alarm; what it printed or raised, its seconds, and the child's peak memory after it."""
    import contextlib
    import resource
    import traceback

    import main
    from search.spec import SpecError, load

    signal.signal(signal.SIGALRM, _alarm)
    results = []
    for case in cases:
        out, err, lines, error = io.StringIO(), io.StringIO(), [], None
        started = time.perf_counter()
        signal.alarm(SECONDS * 2)
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                if "argv" in case:
                    code = main.main(case["argv"])
                    lines = err.getvalue().splitlines() if code == 2 else []
                    error = None if code == 2 else f"exit {code}: {err.getvalue()[-300:]}"
                else:
                    load(case["spec"], check_data=False)
                    error = "accepted"
        except SpecError as refused:
            lines = [str(issue) for issue in refused.issues]
        except BaseException as other:  # what the case must not do: said as the test's failure
            error = f"{type(other).__name__}: {str(other)[:200]} {traceback.format_exc(limit=-2)[-400:]}"
        finally:
            signal.alarm(0)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss << 10
        results.append({**case, "lines": lines, "error": error, "seconds": time.perf_counter() - started, "peak": peak})
    return results


# Runs the command as a child of this small Python, with data capped at 1.5 GB (an
# unbounded read fails there with MemoryError, not the machine), and writes the command's
# peak memory (wait4) to the file named first. Not forked from the test process: a child's
# peak starts at the size of the process it was forked from (a gigabyte late in the suite).
_MEASURED = """
import os, resource, sys
resource.setrlimit(resource.RLIMIT_DATA, (3 << 29, 3 << 29))
pid = os.fork()
if pid == 0:
    os.execv(sys.executable, [sys.executable, *sys.argv[2:]])
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as f:
    f.write(str(usage.ru_maxrss << 10))
sys.exit(os.waitstatus_to_exitcode(status))
"""


def child(argv: list[str], cwd: Path, timeout: float) -> tuple[int, str, str, float, int]:
    """``python argv`` in ``cwd`` (data capped at 1.5 GB): exit code, stdout, stderr,
    seconds and peak memory of that process alone."""
    out, err = cwd.parent / f".{cwd.name}.out", cwd.parent / f".{cwd.name}.err"
    peak = cwd.parent / f".{cwd.name}.peak"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    started = time.perf_counter()
    command = [sys.executable, "-c", _MEASURED, str(peak), *argv]
    with open(out, "wb") as o, open(err, "wb") as e:
        process = subprocess.Popen(command, cwd=cwd, stdout=o, stderr=e, env=env, start_new_session=True)
    try:
        code = process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        code = process.wait()
    seconds = time.perf_counter() - started
    measured = int(peak.read_text()) if peak.exists() else 0
    return code, out.read_text(), err.read_text(), seconds, measured


def listing(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory) -> tuple[list[dict], Path, set[str], set[str]]:
    """Every case, run in one child process: results, the canary, the work folder before and after."""
    work = tmp_path_factory.mktemp("fuzz") / "work"
    work.mkdir()
    canary = work.parent / "canary"
    cases = [build(work, i, t, k, canary) for i, (t, k) in enumerate(CASES)]
    (work.parent / "cases.json").write_text(json.dumps(cases))
    before = listing(work)
    code, out, err, _, _ = child(["-m", __name__, str(work.parent / "cases.json")], work, timeout=300)
    assert code == 0, err[-2000:]
    return json.loads(out.splitlines()[-1]), canary, before, listing(work)


def test_the_fuzz_covers_every_target_and_kind():
    assert len(CASES) >= 90 and {t for t, _ in CASES} == set(TARGETS)


@pytest.mark.parametrize("name", [f"{t}: {k}" for t, k in CASES])
def test_each_odd_file_is_refused_in_located_lines_quickly_and_small(fuzzed, name):
    results, canary, _, _ = fuzzed
    (result,) = [r for r in results if r["name"] == name]
    assert result["error"] is None, result["error"]
    lines = result["lines"]
    assert lines and all("\n" not in line and "Traceback" not in line and len(line) < 400 for line in lines), lines
    if "spec" in result:  # located: the spec's file, line and column, and the key that names the file
        at_key = rf"{re.escape(result['spec'])}:\d+:\d+: {re.escape(result['key'])}: "
        inside = rf"{re.escape(result.get('or_in', '//'))}:\d+:\d+: "  # what an extended file holds, located there
        assert any(re.match(at_key, line) or re.match(inside, line) for line in lines), lines
    else:  # import-timm: the file named first, nothing written
        assert lines[0].startswith(result["argv"][1]) and lines[-1].endswith("nothing was written."), lines
        assert not Path(result["argv"][-1]).exists()
    assert result["seconds"] < SECONDS, result
    # The child's peak so far (torch imported: about 250 MB); the first case past it is the culprit.
    assert result["peak"] < MEMORY, result
    assert not canary.exists()


def test_the_fuzz_stays_within_memory_and_creates_nothing(fuzzed):
    results, canary, before, after = fuzzed
    assert max(r["peak"] for r in results) < MEMORY, [(r["name"], r["peak"] >> 20) for r in results]
    assert after == before and not canary.exists()


# -- a few through the command line, each its own process ------------------------------------

CLI_CASES = [
    ("validate", "search.replay", "gzip bomb"),
    ("validate", "data.path (cifar10)", "crafted pickle"),
    ("validate", "data.path (imagefolder)", "pixel bomb"),
    ("run", "data.path (imagefolder)", "fifo"),
    ("import-timm", "import-timm", "/dev/zero"),
]


@pytest.mark.slow  # a process of main.py each, 2-3 s
@pytest.mark.parametrize(("command", "target", "kind"), CLI_CASES, ids=[f"{c} {t}: {k}" for c, t, k in CLI_CASES])
def test_the_command_line_refuses_with_exit_2_in_one_line_per_problem(tmp_path, command, target, kind):
    work = tmp_path / "work"
    work.mkdir()
    canary = tmp_path / "canary"
    case = build(work, 0, target, kind, canary)
    before = listing(work)
    argv = [str(ROOT / "main.py"), *(case["argv"] if "argv" in case else [command, case["spec"]])]
    code, _, err, seconds, peak = child(argv, work, timeout=60)
    assert code == 2, err[-2000:]
    assert "Traceback" not in err and all(len(line) < 400 for line in err.splitlines()), err
    assert "nothing was run." in err or "nothing was written." in err, err
    # Python's start and importing torch take 1-2 s of it on a shared machine.
    assert seconds < 2 * SECONDS and peak < MEMORY, (seconds, peak >> 20)
    assert listing(work) == before and not canary.exists()


def test_a_checkpoint_whose_records_unpack_past_the_bound_is_refused_unread(tmp_path):
    from blocks.timm_import import CheckpointError, load_checkpoint

    buffer = io.BytesIO()
    torch.save({"w": torch.zeros(4 << 20)}, buffer)  # 16 MB of zeros
    stored = zipfile.ZipFile(buffer)
    with zipfile.ZipFile(tmp_path / "deflated.pth", "w", compression=zipfile.ZIP_DEFLATED) as deflated:
        for info in stored.infolist():
            deflated.writestr(info.filename, stored.read(info.filename))
    assert (tmp_path / "deflated.pth").stat().st_size < 100_000  # torch.load reads it: 16 MB from 16 KB
    assert torch.equal(load_checkpoint(tmp_path / "deflated.pth")["w"], torch.zeros(4 << 20))
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(tmp_path / "deflated.pth", limit=8 << 20)
    (problem,) = err.value.problems
    assert problem == f"{tmp_path / 'deflated.pth'}: its records unpack to 16.0 MB; a checkpoint to 8.0 MB at most"


if __name__ == "__main__":  # the child of ``fuzzed``: python -m tests.search.spec.test_file_fuzz cases.json
    print(json.dumps(run_cases(json.loads(Path(sys.argv[1]).read_text()))))

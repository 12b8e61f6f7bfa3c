"""The command line, run as a user runs it."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from blocks.registry import describe

ROOT = Path(__file__).resolve().parents[1]


def run(*args):
    return subprocess.run([sys.executable, "main.py", *args], cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_blocks_lists_every_registered_block():
    out = run("blocks", "--markdown")
    assert out.returncode == 0, out.stderr
    rows = {tuple(c.strip() for c in line.split("|")[1:3]) for line in out.stdout.splitlines() if line.startswith("|")}
    for kind, entries in describe().items():
        for name in entries:
            assert (kind, name) in rows


@pytest.mark.slow
def test_cost_of_a_preset_and_refusal_of_an_unknown_one():
    out = run("cost", "vix-fnet", "gfnet-ti", "vit-b16", "--markdown")
    assert out.returncode == 0, out.stderr
    # measured, then the source's count under its convention; "=" when they agree
    assert "| vix-fnet | 399,114 | 267,786 | 267,786 (layer) = | 0.291 |  | ViX Table 1 |" in out.stdout
    assert "| gfnet-ti | 7,511,784 | 6,773,480 | 7,511,784 = | 1.284 | 1.3 | GFNet (official code) |" in out.stdout
    assert "| vit-b16 | 86,567,656 | 86,415,592 | 86,567,656 = |" in out.stdout
    bad = run("cost", "gfnet-xss")
    assert bad.returncode == 2
    assert bad.stderr.strip().startswith("error: unknown preset 'gfnet-xss' (did you mean 'gfnet-xs'?)")
    assert "Traceback" not in bad.stderr


@pytest.mark.slow
def test_the_same_spec_samples_the_same_models_in_any_process():
    """Python salts string hashes per process: nothing that orders the sampling (and so
    what trial N is) may depend on it."""
    samples = set()
    for salt in ("0", "2"):  # two that ordered a set of two names differently (the bug found)
        out = subprocess.run(
            [sys.executable, "main.py", "validate", "spaces/quickstart.yaml", "--samples", "4", "--json"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
            env={**os.environ, "PYTHONHASHSEED": salt},
        )
        assert out.returncode == 0, out.stderr
        samples.add(json.dumps(json.loads(out.stdout)["samples"], sort_keys=True))
    assert len(samples) == 1


def test_the_command_line_never_prints_a_traceback(monkeypatch, capsys):
    """Bad arguments are argparse's one-line errors; an unexpected error is one line and
    exit 70 (its traceback only with ARCHSWEEP_DEBUG=1)."""
    import pytest

    import main

    monkeypatch.setattr(sys, "argv", ["main.py", "ui", "--port", "70000"])
    with pytest.raises(SystemExit) as ended:
        main.cli()
    assert ended.value.code == 2 and "70000 is not a port number (1-65535)" in capsys.readouterr().err

    def broken(args, console):  # a command that fails as a bug would
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr(main, "cmd_blocks", broken)
    monkeypatch.setattr(sys, "argv", ["main.py", "blocks"])
    monkeypatch.delenv("ARCHSWEEP_DEBUG", raising=False)
    assert main.cli() == 70
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("error: RuntimeError: boom (an internal error") and "ARCHSWEEP_DEBUG=1" in line
    monkeypatch.setenv("ARCHSWEEP_DEBUG", "1")
    with pytest.raises(RuntimeError, match="boom"):  # raised: Python prints its traceback
        main.cli()

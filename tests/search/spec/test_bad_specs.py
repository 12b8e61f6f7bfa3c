"""The corpus of bad specs: each rejected with its location and key path, exit code 2,
no traceback, and nothing created on disk."""

import os
from pathlib import Path

import pytest

import main
from search.spec import SpecError, load

CORPUS = sorted((Path(__file__).parent / "bad_specs").glob("*.yaml"))
# Refused outside the schema (names, YAML bombs, encodings, sizes, stores, ablation paths):
# each also through the CLI.
BOUNDARY = [p for p in CORPUS if int(p.name.split("_")[0]) >= 53]


def expectation(path: Path) -> str:
    first = path.read_bytes().split(b"\n")[0].decode()  # a case may not be UTF-8 past its first line
    assert first.startswith("# expect: "), path
    return first.removeprefix("# expect: ")


def matches(expected: str, line: str) -> bool:
    """Whether ``line`` holds ``expected``, where `` ... `` stands for any text: a list of
    registered names (samplers, backends) is left out, so registering one breaks no case."""
    at = 0
    for part in expected.split(" ... "):
        found = line.find(part, at)
        if found < 0:
            return False
        at = found + len(part)
    return True


def test_corpus_is_large_and_every_case_different():
    assert len(CORPUS) >= 50
    assert len({expectation(p) for p in CORPUS}) == len(CORPUS)


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: p.stem)
def test_bad_spec_is_refused_with_location(path):
    with pytest.raises(SpecError) as err:
        load(path)
    lines = [str(i) for i in err.value.issues]
    expected = expectation(path)
    # A leading line:col in the expectation must follow the file name exactly.
    if expected[0].isdigit():
        expected = f"{path}:{expected}"
    assert any(matches(expected, line) for line in lines), lines
    assert all("\n" not in line for line in lines)


@pytest.mark.parametrize("path", CORPUS[:6] + BOUNDARY, ids=lambda p: p.stem)
def test_run_refuses_bad_spec_with_exit_2_and_creates_nothing(path, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    before = set(os.listdir(tmp_path))
    code = main.main(["run", str(path)])
    captured = capsys.readouterr()
    assert code == 2
    assert "Traceback" not in captured.err and "nothing was run" in captured.err
    assert set(os.listdir(tmp_path)) == before
    assert all(len(line) < 400 for line in captured.err.splitlines())  # one readable line per problem


def test_every_problem_is_reported_at_once(tmp_path):
    spec = tmp_path / "many.yaml"
    spec.write_text(
        "model:\n"
        "  stages:\n"
        "    - {depth: 1, width: 16, mixer: fourrier}\n"
        "train: {epochs: 0, optimiser: sgd}\n"
        "search: {trials: -1}\n"
    )
    with pytest.raises(SpecError) as err:
        load(spec)
    text = str(err.value)
    for expected in (
        f"{spec}:3:36: model.stages[0].mixer: unknown mixer 'fourrier' (did you mean 'fourier'?)",
        f"{spec}:4:20: train.optimiser: unknown key (did you mean 'optimizer'?)",
        f"{spec}:4:17: train.epochs: expected a positive integer, got 0",
        f"{spec}:5:18: search.trials: expected a positive integer, got -1",
    ):
        assert expected in text, text

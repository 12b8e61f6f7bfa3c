"""Fuzzed specs (seeded, so a failure reproduces): thousands of mutations of real specs
and random YAML; every one either loads or is refused with located one-line issues, and
through the CLI with exit code 2, no traceback and nothing created on disk."""

import copy
import math
import os
import random
from pathlib import Path

import pytest
import yaml

import main
from search.spec import Spec, SpecError, load

ROOT = Path(__file__).resolve().parents[2]
JUNK = [
    None,
    -1,
    0,
    1.5,
    "x",
    "",
    [],
    {},
    True,
    [1, 2, 3],
    {"choice": []},
    {"int": [3, 1]},
    {"float": [0, 0]},
    "fourrier",
    "!!python/object/apply:os.system ['true']",
    {"nested": {"deeper": [None, {"x": 1}]}},
]
NUMBERS = [-1, 0, -0.5, 1e-12, 1e12, 2**63, math.inf, -math.inf, math.nan]
BASES = ["spaces/quickstart.yaml", "spaces/hierarchical.yaml", "spaces/reproduce/vix_table1.yaml"]


def paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from paths(v, (*prefix, i))


def mutate(data, rng):
    target = rng.choice([p for p in paths(data) if p])
    parent = data
    for key in target[:-1]:
        parent = parent[key]
    key, action = target[-1], rng.choice(["delete", "junk", "rename", "add", "number"])
    if action == "delete":
        del parent[key]
    elif action == "junk":
        parent[key] = copy.deepcopy(rng.choice(JUNK))
    elif action == "number":  # out of range, or not a number any more
        parent[key] = rng.choice(NUMBERS)
    elif action == "rename" and isinstance(parent, dict):
        parent[f"{key}x"] = parent.pop(key)
    elif isinstance(parent, dict):
        parent["unexpected"] = copy.deepcopy(rng.choice(JUNK))
    return data


def located(err: SpecError, path: Path) -> None:
    assert err.issues
    for issue in err.issues:
        line = str(issue)
        assert "\n" not in line and line.startswith(str(path)), line


def mutants(count: int, seed: int):
    rng = random.Random(seed)
    bases = [yaml.safe_load((ROOT / b).read_text()) for b in BASES]
    for i in range(count):
        data = copy.deepcopy(rng.choices(bases, weights=[8, 1, 1])[0])  # the others load 8x slower
        for _ in range(rng.randint(1, 3)):
            if isinstance(data, dict) and data:
                data = mutate(data, rng)
        yield i, data


def test_thousands_of_mutated_specs_load_or_are_refused_cleanly(tmp_path):
    refused = 0
    for i, data in mutants(2000, seed=0):
        path = tmp_path / f"m{i}.yaml"
        path.write_text(yaml.safe_dump(data))
        try:
            assert isinstance(load(path, check_data=False), Spec)
        except SpecError as err:
            refused += 1
            located(err, path)
    assert 1000 < refused < 2000  # the mutations break most specs, not all


@pytest.mark.parametrize("seed", range(4))
def test_refused_mutants_exit_2_through_the_cli_and_create_nothing(seed, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    checked = 0
    for i, data in mutants(60, seed=100 + seed):
        path = tmp_path / "spec.yaml"
        path.write_text(yaml.safe_dump(data))
        try:
            load(path, check_data=False)
            continue  # a valid mutant would run a sweep; the unit test above covers it
        except SpecError:
            pass
        assert main.main(["run", str(path)]) == 2, i
        err = capsys.readouterr().err
        lines = err.strip().splitlines()
        assert "Traceback" not in err and lines[-1].endswith("problem(s); nothing was run."), err
        assert all(line.startswith((str(path), "warning: ")) for line in lines[:-1]), err
        assert os.listdir(tmp_path) == ["spec.yaml"]  # no store, no journal, no run
        checked += 1
    assert checked > 30


def test_recursive_alias_is_refused(tmp_path):
    path = tmp_path / "loop.yaml"
    path.write_text("model: &a {stages: [*a]}\n")
    try:
        load(path)
    except SpecError as err:
        assert "refers to itself" in str(err)
    else:
        raise AssertionError("a recursive spec loaded")


def test_random_text_is_refused_cleanly(tmp_path):
    rng = random.Random(1)
    alphabet = "abc:{}[]-,'\"\n\t #&*!|>%@`0123456789"
    for i in range(1000):
        path = tmp_path / f"t{i}.yaml"
        path.write_text("".join(rng.choice(alphabet) for _ in range(rng.randint(0, 80))))
        try:
            load(path)
        except SpecError as err:
            assert all("\n" not in str(issue) for issue in err.issues)

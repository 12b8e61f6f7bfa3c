"""Mutated specs: every one either loads or is refused with located one-line issues;
nothing else escapes (no traceback, no half-built state)."""

import copy
import random
from pathlib import Path

import yaml

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
]


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
    key, action = target[-1], rng.choice(["delete", "junk", "rename", "add"])
    if action == "delete":
        del parent[key]
    elif action == "junk":
        parent[key] = copy.deepcopy(rng.choice(JUNK))
    elif action == "rename" and isinstance(parent, dict):
        parent[f"{key}x"] = parent.pop(key)
    elif isinstance(parent, dict):
        parent["unexpected"] = copy.deepcopy(rng.choice(JUNK))
    return data


def test_mutated_specs_load_or_are_refused_cleanly(tmp_path):
    base = yaml.safe_load((ROOT / "spaces" / "quickstart.yaml").read_text())
    rng = random.Random(0)
    refused = 0
    for i in range(400):
        data = copy.deepcopy(base)
        for _ in range(rng.randint(1, 3)):
            data = mutate(data, rng)
        path = tmp_path / f"m{i}.yaml"
        path.write_text(yaml.safe_dump(data))
        try:
            assert isinstance(load(path), Spec)
        except SpecError as err:
            refused += 1
            assert err.issues
            for issue in err.issues:
                line = str(issue)
                assert "\n" not in line and line.startswith(str(path)), line
    assert refused > 200  # the mutations do break things


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
    for i in range(300):
        path = tmp_path / f"t{i}.yaml"
        path.write_text("".join(rng.choice(alphabet) for _ in range(rng.randint(0, 80))))
        try:
            load(path)
        except SpecError as err:
            assert all("\n" not in str(issue) for issue in err.issues)

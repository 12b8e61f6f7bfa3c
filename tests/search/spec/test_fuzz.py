"""Fuzzed specs (seeded, so a failure reproduces): thousands of mutations of real specs
and random YAML; every one either loads or is refused with located one-line issues, and
through the CLI with exit code 2, no traceback and nothing created on disk."""

import copy
import math
import os
import random
import re
import time
from pathlib import Path

import pytest
import yaml

import main
from search.spec import Spec, SpecError, load
from search.spec.yamlio import printable

ROOT = Path(__file__).resolve().parents[3]
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


@pytest.mark.slow
def test_a_thousand_mutated_specs_load_or_are_refused_cleanly(tmp_path):
    refused = 0
    for i, data in mutants(1000, seed=0):
        path = tmp_path / f"m{i}.yaml"
        path.write_text(yaml.safe_dump(data))
        try:
            assert isinstance(load(path, check_data=False), Spec)
        except SpecError as err:
            refused += 1
            located(err, path)
    assert 500 < refused < 1000  # the mutations break most specs, not all


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
    rng, refused = random.Random(1), 0
    alphabet = "abc:{}[]-,'\"\n\t #&*!|>%@`0123456789"
    for i in range(1000):
        path = tmp_path / f"t{i}.yaml"
        path.write_text("".join(rng.choice(alphabet) for _ in range(rng.randint(0, 80))))
        try:
            load(path)
        except SpecError as err:
            refused += 1
            assert err.issues and all("\n" not in str(issue) for issue in err.issues)
    assert refused > 900  # random text is almost never a spec: the loop exercised the refusals


# -- names and paths: traversal, separators, reserved names, length, unicode ---------------

FRAGMENTS = [
    "..", "../..", "../../victim", "/", "\\", "a/b", "..\\..\\victim", "./", "~", "/nonexistent", "C:\\x",
    "CON", "nul", "com1", "LPT9.txt", "aux.yaml", ".hidden", "-dash", " ", "x" * 300,
    "\u202e", "\u200f", "e\u0301", "\uff0f", "\u2215", "\U0001f600", "\x00", "\n", "\r", "\t", "\x7f",
    "\ufeff", "\u0130", "\u2024\u2024", "sweep", "base.yaml", "data", "ok-1.2_3",
]  # fmt: skip
FIELDS = ["name", "tracking.dir", "data.path", "extends", "ablation.base.spec", "file name"]
IDENTIFIER = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def fuzzed_name(rng: random.Random) -> str:
    return "".join(rng.choice(FRAGMENTS) for _ in range(rng.randint(1, 4)))


def fuzzed_spec(rng: random.Random, folder: Path) -> tuple[Path, str]:
    """A small valid spec with one name or path replaced by a fuzzed one; (its file, the field)."""
    field, value = rng.choice(FIELDS), fuzzed_name(rng)
    data = {"name": "fuzz", "model": {"stages": [{"depth": 1, "width": 16, "mixer": "fourier"}]}}
    file = folder / "spec.yaml"
    if field == "file name":
        del data["name"]
        try:  # a name the file system takes (no NUL or '/', at most 255 bytes)
            file = folder / f"{value}.yaml"
            file.touch()
        except (OSError, ValueError):
            file = folder / "spec.yaml"
    elif field == "ablation.base.spec":
        data["ablation"] = {"base": {"spec": value, "trial": 0}, "factors": {"train.lr": [0.001, 0.01]}}
        del data["model"]
    elif "." in field:
        section, key = field.split(".")
        data[section] = {key: value, **({"dataset": "imagefolder"} if section == "data" else {})}
    else:
        data[field] = value
    file.write_text(yaml.safe_dump(data, allow_unicode=True))
    return file, field


def tree(root: Path) -> set[str]:
    return {str(Path(d, n).relative_to(root)) for d, dirs, files in os.walk(root) for n in dirs + files}


@pytest.fixture
def arena(tmp_path, monkeypatch):
    """``tmp_path/a/b`` as the working folder, beside a ``victim/`` that must survive."""
    (tmp_path / "victim").mkdir()
    (tmp_path / "victim" / "keep.txt").write_text("mine")
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    (work / "base.yaml").write_text("model: {stages: [{depth: 1, width: 16, mixer: fourier}]}\n")
    monkeypatch.chdir(work)
    return work


def test_fuzzed_names_and_paths_load_as_identifiers_or_are_refused_on_one_line(arena):
    rng, outcomes = random.Random(7), {"loaded": 0, "refused": 0}
    for _ in range(400):
        path, field = fuzzed_spec(rng, arena)
        try:
            spec = load(path, check_data=False)
        except SpecError as err:
            outcomes["refused"] += 1
            for issue in err.issues:  # located in the spec, one printable line
                line = str(issue)
                assert line.startswith(printable(str(path))) and line.isprintable(), (field, line)
        else:
            outcomes["loaded"] += 1
            assert IDENTIFIER.fullmatch(spec.name) and ".." not in spec.name, (field, spec.name)
        if path.name != "spec.yaml":
            path.unlink()
    assert outcomes["loaded"] > 40 and outcomes["refused"] > 200, outcomes


def test_fuzzed_names_and_paths_through_the_cli_create_nothing(arena, capsys):
    rng, before, refused = random.Random(11), tree(arena.parents[1]), 0
    for _ in range(40):
        path, field = fuzzed_spec(rng, arena)
        expected = tree(arena.parents[1])
        try:
            load(path, check_data=False)
            command = "validate"  # a valid one would run a sweep: only validate it
        except SpecError:
            command, refused = "run", refused + 1
        code = main.main([command, str(path)])
        err = capsys.readouterr().err
        assert "Traceback" not in err, err
        assert code == (0 if command == "validate" else 2), (field, err)
        assert tree(arena.parents[1]) == expected, field  # no store, journal or run; victim/ intact
        if path.name != "spec.yaml":
            path.unlink()
    assert (arena.parents[1] / "victim" / "keep.txt").read_text() == "mine"
    assert tree(arena.parents[1]) >= before and refused > 15


def test_billion_laughs_is_refused_at_its_alias_quickly(tmp_path):
    lol = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True):
        lol += f"{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]\n"
    path = tmp_path / "lol.yaml"
    path.write_text(lol)
    start = time.perf_counter()
    with pytest.raises(SpecError) as err:
        load(path)
    assert time.perf_counter() - start < 0.5  # counted on the graph of nodes, nothing expanded
    assert str(err.value) == (
        f"{path}:9:8: i[0]: this alias expands to 48,427,561 values, the spec to 490,329,064 "
        "(at most 100,000: aliases of aliases?); write the values out"
    )


@pytest.mark.parametrize(
    "text, expected",
    [
        ("a: " + "[" * 30000 + "]" * 30000, "1:204: brackets nested deeper than 200 levels"),  # libyaml crashed on it
        ("a:\n" + "".join(" " * i + "- \n" for i in range(1, 400)), "65:65: a[0][0]"),  # block style, no brackets
        (
            "a: &a [1]\n" + "".join(f"b{i}: &b{i} [*{'a' if i == 0 else f'b{i - 1}'}]\n" for i in range(300)),
            ": b299[0]",
        ),
    ],
    ids=["brackets", "indentation", "aliases"],
)
def test_deep_nesting_is_refused_without_crashing(tmp_path, text, expected):
    path = tmp_path / "deep.yaml"
    path.write_text(text)
    with pytest.raises(SpecError) as err:
        load(path)
    (issue,) = err.value.issues
    assert str(issue).startswith(str(path)) and expected in str(issue), issue


# -- sizes and overrides (issue 27) ------------------------------------------------------


def fuzzed_size(rng: random.Random, low: float, high: float, integer: bool = True):
    """A value up to ``high`` drawn log-uniformly: plain, a range or a choice."""

    def draw():
        value = 10 ** rng.uniform(math.log10(low), math.log10(high))
        return int(value) if integer else round(value, 3)

    form = rng.choice(["plain", "plain", "range", "choice"])
    if form == "plain":
        return draw()
    a, b = sorted((draw(), draw()))
    if form == "choice":
        return {"choice": [a, b]} if a != b else a
    return {"int" if integer else "float": [a, b] if a != b or integer else [a, b + 1]}


def test_random_sizes_up_to_a_billion_are_refused_fast_and_nothing_large_is_built(tmp_path, monkeypatch):
    import sys

    from runs import data as datasets
    from search.spec import arch

    built = []
    monkeypatch.setattr(arch, "check_arch", lambda spec: built.append(spec) or [])  # what would be built
    monkeypatch.setattr(sys.modules["search.spec.load"], "check_arch", lambda spec: built.append(spec) or [])
    monkeypatch.setattr(datasets, "physical_memory", lambda: 24 * 10**9)
    rng, refused, slowest = random.Random(27), 0, 0.0
    for i in range(150):
        stages = [
            {
                "depth": fuzzed_size(rng, 1, 1e9),
                "width": fuzzed_size(rng, 1, 1e9),
                "mlp_ratio": fuzzed_size(rng, 0.01, 1e6, integer=False),
                "mixer": rng.choice(["attention", "fourier"]),
            }
            for _ in range(rng.randint(1, 3))
        ]
        path = tmp_path / f"s{i}.yaml"
        path.write_text(yaml.safe_dump({"model": {"stages": stages}}))
        start = time.perf_counter()
        try:
            load(path, check_data=False)
        except SpecError as err:
            refused += 1
            located(err, path)
        slowest = max(slowest, time.perf_counter() - start)
    assert slowest < 0.5 and refused > 100, (slowest, refused)
    for spec in built:  # no model handed to the builder is absurd: at most 2,048 blocks, 6e9 parameters
        assert sum(s.depth for s in spec.stages) <= 2048, spec
        assert sum(s.depth * 2 * s.width * max(1, s.width * s.mlp_ratio) for s in spec.stages) <= 6e9, spec


OVERRIDE_PARTS = [
    "", "=", "=", ".", "[", "]", "0", "7", "²", "١", " ", "\x00", "\n", "{", "}", ":", "-", "'", "*", "&a", "!!python/",
    "model", "stages", "depth", "width", "search", "trials", "name", "smoke", "extends", "1000000000", "1e9", "null",
]  # fmt: skip


def test_random_override_strings_raise_nothing_but_spec_errors(tmp_path):
    spec = tmp_path / "s.yaml"
    spec.write_text("name: fuzz\nmodel: {stages: [{depth: 1, width: 16, mixer: fourier}]}\nsmoke: [search.trials=2]\n")
    rng, refused = random.Random(5), 0
    for _ in range(400):
        overrides = ["".join(rng.choices(OVERRIDE_PARTS, k=rng.randint(1, 6))) for _ in range(rng.randint(1, 3))]
        start = time.perf_counter()
        try:
            load(spec, overrides, smoke=rng.random() < 0.5, check_data=False)
        except SpecError as err:
            refused += 1
            for issue in err.issues:  # at an override (or the spec it changed), one printable line
                line = str(issue)
                assert line.startswith(("-o ", str(spec))) and line.isprintable(), (overrides, line)
        assert time.perf_counter() - start < 0.5, overrides
    assert refused > 300

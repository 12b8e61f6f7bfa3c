"""Good specs: defaults, extends, overrides, the typed result."""

import os
from pathlib import Path

import pytest

from search.spec import SpecError, load
from search.spec.space import Choice, FloatRange

ROOT = Path(__file__).resolve().parents[3]


def test_quickstart_loads_into_a_typed_spec():
    spec = load(ROOT / "spaces" / "quickstart.yaml")
    assert spec.name == "quickstart" and spec.data.dataset == "digits" and spec.data.image_size == 16
    assert [(o.metric, o.direction) for o in spec.objectives] == [("val_accuracy", "max"), ("gmacs", "min")]
    assert [str(c) for c in spec.constraints] == ["params <= 200000"]
    assert isinstance(spec.model["stages"][0]["mixer"], Choice)
    assert isinstance(spec.train["lr"], FloatRange) and spec.train["lr"].log
    assert spec.search.trials >= 12 and spec.search.sampler == "frontier"
    assert len(spec.sha) == 12


def test_extends_and_overrides(tmp_path):
    (tmp_path / "base.yaml").write_text(
        "model: {stages: [{depth: 1, width: 16, mixer: fourier}]}\nsearch: {trials: 4, seed: 3}\n"
    )
    child = tmp_path / "child.yaml"
    child.write_text("extends: base.yaml\nname: child\nsearch: {trials: 9}\n")
    spec = load(child)
    assert spec.name == "child" and spec.search.trials == 9 and spec.search.seed == 3  # merged, not replaced
    spec = load(child, ["search.trials=50", "model.stages[0].width=32", "train.lr={float: [0.001, 0.01]}"])
    assert spec.search.trials == 50
    assert spec.model["stages"][0]["width"] == 32
    assert isinstance(spec.train["lr"], FloatRange)


def test_a_child_spec_states_its_ablation_factors_whole(tmp_path):
    (tmp_path / "base.yaml").write_text(
        "model: {stages: [{depth: 1, width: 16, mixer: fourier}]}\n"
        "ablation:\n  seeds: 2\n  factors:\n    model.stages[0].width: [16, 32]\n"
    )
    child = tmp_path / "child.yaml"
    child.write_text("extends: base.yaml\nablation:\n  factors:\n    model.stages[0].depth: [1, 2]\n")
    ablation = load(child).ablation
    assert list(ablation.factors) == ["model.stages[0].depth"]  # the parent's factor does not join
    assert ablation.seeds == 2 and len(ablation.arms) == 2  # the rest of the section merges


def test_the_block_wiring_is_a_dimension_of_each_stage(tmp_path):
    spec = tmp_path / "s.yaml"
    spec.write_text(
        "model:\n  norm_eps: 1.0e-6\n  stages:\n"
        "    - {depth: 1, width: 16, mixer: global_filter, block: {choice: [pre, post, shared]}}\n"
    )
    loaded = load(spec)
    assert loaded.model["stages"][0]["block"].options[2].value == "shared"
    assert loaded.model["norm_eps"] == 1e-6


def test_bad_override_is_located_at_the_override(tmp_path):
    spec = tmp_path / "s.yaml"
    spec.write_text("model: {stages: [{depth: 1, width: 16, mixer: fourier}]}\n")
    with pytest.raises(SpecError) as err:
        load(spec, ["search.trails=5"])
    assert "search.trails: unknown key (did you mean 'trials'?)" in str(err.value)
    with pytest.raises(SpecError) as err:
        load(spec, ["search.trials"])
    assert str(err.value).startswith("-o search.trials: an override is KEY.PATH=VALUE")


def test_extends_cycle_is_refused(tmp_path):
    (tmp_path / "a.yaml").write_text("extends: b.yaml\n")
    (tmp_path / "b.yaml").write_text("extends: a.yaml\n")
    with pytest.raises(SpecError, match="a cycle"):
        load(tmp_path / "a.yaml")


def test_scientific_notation_is_a_number(tmp_path):
    spec = tmp_path / "s.yaml"
    spec.write_text("model: {stages: [{depth: 1, width: 16, mixer: fourier}]}\ntrain: {lr: 3e-3}\n")
    assert load(spec).train["lr"] == 0.003


# -- refusals outside the schema: names, overrides, stores, data, validate's report -------

MODEL = "model: {stages: [{depth: 1, width: 16, mixer: fourier}]}\n"


def issues(path, *args, **kwargs) -> list[str]:
    with pytest.raises(SpecError) as err:
        load(path, *args, **kwargs)
    return [str(i) for i in err.value.issues]


def test_the_file_name_is_the_sweep_name_only_when_it_is_one(tmp_path):
    (tmp_path / "my sweep.yaml").write_text(MODEL)
    (lines,) = issues(tmp_path / "my sweep.yaml")
    assert "name: the spec's file name makes the sweep name 'my sweep', which cannot name files; set name:" in lines
    (tmp_path / "my sweep.yaml").write_text(f"name: my-sweep\n{MODEL}")
    assert load(tmp_path / "my sweep.yaml").name == "my-sweep"
    (tmp_path / "sweep-2.yaml").write_text(MODEL)
    assert load(tmp_path / "sweep-2.yaml").name == "sweep-2"


def test_override_problems_are_located_on_the_command_line(tmp_path):
    spec = tmp_path / "s.yaml"
    spec.write_text(f"{MODEL}search: {{trials: 4, seed: 1}}\nsmoke: [search.seed=-2]\n")
    expected = "-o search.trials=-1: search.trials: expected a positive integer, got -1"
    assert issues(spec, ["search.trials=-1"]) == [expected]
    # a child of an overridden value, and the later of two overrides of one key
    assert issues(spec, ["search.trials=3", "search={trials: 0}"]) == [
        "-o search={trials: 0}: search.trials: expected a positive integer, got 0"
    ]
    (line,) = issues(spec, ["name=a\x00b"])  # escaped: one line, no NUL on the terminal
    assert line.startswith("-o name=a\\x00b: name:") and "\x00" not in line
    # the spec's own smoke overrides are located in the spec, at the override
    assert issues(spec, smoke=True) == [f"{spec}:3:9: search.seed: expected an integer >= 0, got -2"]
    # a key the spec file writes, not overridden: still located in the file
    assert issues(spec, ["search.seed=2", "search.trials=-1"])[0].startswith("-o search.trials=-1:")


def test_a_store_that_is_a_file_or_read_only_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec = tmp_path / "s.yaml"
    spec.write_text(MODEL)
    (tmp_path / "out").write_text("not a folder")
    (line,) = issues(spec)
    assert "tracking.dir: the default store 'out' (tracking.dir) is a file, not a folder" in line
    spec.write_text(f"{MODEL}tracking: {{dir: stores/new}}\n")
    (tmp_path / "stores").mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if Path(p) == tmp_path / "stores" else real_access(p, mode))
    (line,) = issues(spec, check_data=False)
    assert line.startswith(f"{spec}:2:17: tracking.dir: 'stores/new' is read-only ({tmp_path / 'stores'}, where it")
    assert load(spec, check_store=False).store == "stores/new"  # read, not written: an ablation's base
    assert not (tmp_path / "stores" / "new").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_store_is_refused_for_real(tmp_path):
    store = tmp_path / "store"
    store.mkdir(mode=0o500)
    spec = tmp_path / "s.yaml"
    spec.write_text(f"{MODEL}tracking: {{dir: {store}}}\n")
    assert "is read-only" in issues(spec)[0]


def image_tree(root: Path, classes: dict[str, int]) -> Path:
    from PIL import Image

    for name, count in classes.items():
        (root / name).mkdir(parents=True)
        for i in range(count):
            Image.new("RGB", (4, 4), (i * 40, 0, 0)).save(root / name / f"{i}.png")
    return root


@pytest.mark.parametrize("check_data", [True, False], ids=["run", "validate"])
def test_image_folders_that_cannot_train_are_refused(tmp_path, check_data):
    spec = tmp_path / "s.yaml"

    def refusal(folder: Path) -> str:
        spec.write_text(f"data: {{dataset: imagefolder, path: {folder.name}}}\n{MODEL}")
        (line,) = issues(spec, check_data=check_data)
        assert line.startswith(f"{spec}:1:36: data.path: "), line
        return line

    (tmp_path / "empty").mkdir()
    assert "holds no sub-folders; put one sub-folder of images per class there" in refusal(tmp_path / "empty")
    one = image_tree(tmp_path / "one", {"cat": 3})
    assert "holds one class ('cat'); a classifier needs two or more" in refusal(one)
    text = image_tree(tmp_path / "text", {"cat": 2, "dog": 2})
    (text / "dog" / "1.png").write_text("not an image")
    assert "not images that can be read: dog/1.png (cannot identify image file" in refusal(text)
    spec.write_text(f"data: {{dataset: imagefolder, path: good, image_size: 8}}\n{MODEL}")
    image_tree(tmp_path / "good", {"cat": 2, "dog": 2})
    assert load(spec, check_data=check_data).data.path == str(tmp_path / "good")


def test_cifar_folder_without_its_batches(tmp_path):
    (tmp_path / "cifar").mkdir()
    (tmp_path / "cifar" / "data_batch_1").write_bytes(b"")
    spec = tmp_path / "s.yaml"
    spec.write_text(f"data: {{dataset: cifar10, path: cifar}}\n{MODEL}")
    (line,) = issues(spec)
    assert f"data.path: {str(tmp_path / 'cifar')!r} has no data_batch_2, data_batch_3" in line
    assert [str(w) for w in load(spec, check_data=False).warnings] == [line]  # validate warns, as for no folder


def test_image_size_that_cannot_fit_in_memory(tmp_path, monkeypatch):
    from runs import data as datasets

    monkeypatch.setattr(datasets, "physical_memory", lambda: 64 * 2**30)
    spec = tmp_path / "s.yaml"
    spec.write_text(f"data: {{image_size: 4096}}\n{MODEL}")
    (line,) = issues(spec, check_data=False)
    assert line == (
        f"{spec}:1:20: data.image_size: 1,797 images of 1x4096x4096 take about 361.8 GB to load "
        "(1,797 x 1 x 4096 x 4096 x 4 bytes, held 3 times over); this machine has 68.7 GB: "
        "the largest image_size that fits is 1785"
    )
    spec.write_text(
        "data: {image_size: 1784}\nmodel: {patch_size: 8, stages: [{depth: 1, width: 16, mixer: fourier}]}\n"
    )
    assert load(spec).data.image_size == 1784  # fits: loads (nothing is allocated to check it)


def test_validate_json_is_strict_and_applies_counted_cost_constraints(tmp_path, capsys):
    import json

    import main

    spec = tmp_path / "s.yaml"
    spec.write_text(
        "model: {stages: [{depth: 1, width: {choice: [16, 64]}, mixer: attention}]}\n"
        "train: {lr: {float: [0.001, 0.01]}}\n"  # a continuous dimension: infinitely many points
        "constraints: ['params <= 20000', 'latency_ms <= 5']\n"
    )
    assert main.main(["validate", str(spec), "--json", "--samples", "8"]) == 0
    out = capsys.readouterr().out

    def no_constant(name):
        raise ValueError(f"not JSON: {name}")

    report = json.loads(out, parse_constant=no_constant)  # Python's json would take Infinity
    assert report["size"] is None and report["constraints_checked_when_trials_run"] == ["latency_ms <= 5"]
    wide = [r for r in report["samples"] if "@64]" in r["summary"]]
    narrow = [r for r in report["samples"] if "@16]" in r["summary"]]
    assert wide and narrow
    assert all(r["params"] > 20000 and r["refused"] == ["breaks params <= 20000"] for r in wide)
    assert all(r["params"] <= 20000 and r["refused"] == [] and r["gflops"] == 2 * r["gmacs"] for r in narrow)
    assert main.main(["validate", str(spec), "--samples", "8"]) == 0
    out = capsys.readouterr().out
    assert "breaks params <= 20000" in out and f"{len(wide)} of these 8 would be recorded infeasible" in out
    assert "checked when each trial runs (measured on its device): latency_ms <= 5" in out


def test_validate_marks_ablation_arms_that_break_a_constraint(tmp_path, capsys):
    import main

    spec = tmp_path / "s.yaml"
    spec.write_text(
        "model: {stages: [{depth: 1, width: 16, mixer: attention}]}\n"
        "constraints: ['params <= 20000']\n"
        "ablation: {factors: {'model.stages[0].width': [16, 64]}, seeds: 1}\n"
    )
    assert main.main(["validate", str(spec)]) == 0
    out = capsys.readouterr().out
    assert "1 of these 2 would be recorded infeasible" in out and "breaks params <= 20000" in out


def test_a_finished_store_whose_files_are_read_only_is_refused_for_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "out" / "optuna").mkdir(parents=True)
    (tmp_path / "out" / "mlflow.db").write_bytes(b"")
    spec = tmp_path / "s.yaml"
    spec.write_text(MODEL)
    assert load(spec).store == "out"
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: Path(p).name != "mlflow.db" and real_access(p, mode))
    (line,) = issues(spec)
    assert "tracking.dir: the default store 'out' (tracking.dir) is read-only (out/mlflow.db)" in line


@pytest.mark.parametrize("name", ["gfnet-ti", "funnel-b6-6", "vix-hybrid-vin", "mixer-b16", "vix-vil"])
def test_a_model_written_back_as_a_spec_loads_as_the_same_model(name, tmp_path):
    """``from_arch`` is the inverse of ``to_arch``: an imported model becomes a spec's base."""
    import random

    import yaml

    from blocks import presets
    from runs.data import geometry
    from search.spec.arch import RandomTrial, from_arch, to_arch
    from search.spec.space import sample

    arch = presets.PRESETS[name]()
    data = {"dataset": "synthetic", "image_size": arch.image_size[0], "num_classes": arch.num_classes}
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({"data": data, "model": from_arch(arch)}))
    spec = load(path)
    geo = geometry(spec.data)
    concrete = sample(spec.model, RandomTrial(random.Random(0)), "model")
    assert to_arch(concrete, geo.image_size, geo.num_classes, geo.channels) == arch


# -- untrusted files: what a spec names may be anything (issue 27) --------------------------

SPEC_FILE_KINDS = ["folder", "fifo", "device", "too large"]


def odd_file(folder: Path, kind: str) -> Path:
    """A file that is not a spec to read: a folder, a FIFO no one writes, /dev/zero, 2 MB."""
    path = folder / "odd.yaml"
    if kind == "folder":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "device":
        return Path("/dev/zero")
    else:
        path.write_text(MODEL + "#" * (2 << 20))
    return path


ODD = {
    "folder": "is a folder, not a spec",
    "fifo": "is a FIFO (named pipe), not a spec",
    "device": "is a character device, not a spec",
    "too large": "holds 2.0 MB; a spec is at most 1.0 MB",
}


@pytest.mark.timeout(30)  # a FIFO read would wait for a writer for ever
@pytest.mark.parametrize("kind", SPEC_FILE_KINDS)
def test_a_spec_file_that_is_not_a_regular_file_is_refused_in_one_line(tmp_path, kind):
    odd = odd_file(tmp_path, kind)
    name = str(odd) if kind == "device" else odd.name
    assert issues(odd) == [f"{odd} {ODD[kind]}"]  # given
    child = tmp_path / "child.yaml"
    child.write_text(f"extends: {name}\n")
    assert issues(child) == [f"{child}:1:10: extends: {name} {ODD[kind]}"]  # extended, named as written
    child.write_text(f"{MODEL}search: {{warm_start: {{from: {name}}}}}\n" if kind != "device" else MODEL)
    if kind != "device":  # a warm start's spec is read when the sweep starts: refused now
        assert issues(child) == [f"{child}:2:22: search.warm_start: from: {name} {ODD[kind]}"]
    child.write_text(f"ablation: {{base: {{spec: {name}, trial: 0}}, factors: {{train.lr: [0.001, 0.01]}}}}\n")
    assert f"ablation.base.spec: {name} does not load: {odd} {ODD[kind]}" in issues(child)[0]


def test_extending_a_file_that_is_not_a_spec_never_prints_what_it_holds(tmp_path):
    secret = tmp_path / "shadow"
    secret.write_text("".join(f"user{i}:$6$hash{i}:19000:0:99999:7:::\n" for i in range(20)))
    child = tmp_path / "child.yaml"
    child.write_text(f"name: child\n{MODEL}extends: ../{tmp_path.name}/shadow\n")
    (line,) = issues(child)
    assert line == (
        f"{child}:3:10: extends: ../{tmp_path.name}/shadow is not an archsweep spec (it holds a mapping of 20 keys, "
        "none of them a section; a spec is a mapping of sections such as model:, data:, search:)"
    )
    assert "hash" not in line and "user" not in line
    for text, held in [("just: a\nconfig: file\n", "a mapping of 2 keys"), ("[1, 2]\n", "a list"), ("", "nothing")]:
        secret.write_text(text)
        assert f"is not an archsweep spec (it holds {held}" in issues(child)[0]
    # a spec with one misspelt key among known ones: the usual did-you-mean, key by key
    secret.write_text(f"{MODEL}serch: {{trials: 2}}\n")
    assert issues(child) == [
        f"{secret}:2:1: serch: unknown key (did you mean 'search'?); the spec takes name, description, data, "
        "model, train, objectives, constraints, search, ablation, backend, tracking"
    ]


@pytest.mark.parametrize(
    "text, expected",
    [
        ("", "1:1: not an archsweep spec (this file holds nothing"),
        ("# a comment\n", "1:1: not an archsweep spec (this file holds nothing"),
        ("---\n", "1:1: not an archsweep spec (this file holds nothing"),
        ("# a comment\n\nhello\n", "3:1: not an archsweep spec (this file holds text"),
        ("7\n", "1:1: not an archsweep spec (this file holds a single value"),
        ("- model\n- data\n", "1:1: not an archsweep spec (this file holds a list"),
        ("{}\n", "1:1: not an archsweep spec (this file holds nothing"),
    ],
    ids=["empty", "comment", "document marker", "text", "number", "list", "empty mapping"],
)
def test_a_file_that_is_not_a_mapping_of_sections_is_refused_with_its_location(tmp_path, text, expected):
    spec = tmp_path / "s.yaml"
    spec.write_text(text)
    assert issues(spec) == [f"{spec}:{expected}; a spec is a mapping of sections such as model:, data:, search:)"]


# -- sizes: refused by arithmetic, before anything is built -------------------------------


@pytest.fixture
def nothing_built(monkeypatch):
    """Building a large model fails the test (sizes are refused before), and this machine
    has 24 GB."""
    import sys

    from blocks import check
    from runs import data as datasets
    from search.spec import arch

    def small_only(spec):
        assert sum(s.depth for s in spec.stages) <= 100 and max(s.width for s in spec.stages) <= 1024, spec
        return check(spec)

    monkeypatch.setattr(arch, "check_arch", small_only)
    monkeypatch.setattr(sys.modules["search.spec.load"], "check_arch", small_only)  # the package's load is the function
    monkeypatch.setattr(datasets, "physical_memory", lambda: 24 * 10**9)


@pytest.mark.parametrize(
    "stage, expected",
    [
        (
            "{depth: 1000000, width: 64, mixer: attention}",
            "3:15: model.stages[0].depth: stage 0 (at depth 1,000,000, width 64, mlp_ratio 4) would hold at least "
            "3.3e10 parameters (132.4 GB as float32); this machine has 24.0 GB of memory",
        ),
        (
            "{depth: {int: [1, 1000000]}, width: 16, mixer: fourier}",
            "3:15: model.stages[0].depth: stage 0 (at depth 1,000,000, width 16, mlp_ratio 4, the most its dimensions "
            "allow) would be 1,000,000 blocks deep; a model here is at most 2,048 blocks deep",
        ),
        (
            "{depth: 2, width: 1000000000, mixer: fourier}",
            "3:25: model.stages[0].width: stage 0 (at depth 2, width 1,000,000,000, mlp_ratio 4) would hold at least "
            "1.6e19 parameters (64.0 EB as float32); this machine has 24.0 GB of memory",
        ),
        (
            "{depth: 2, width: 64, mixer: attention, mlp_ratio: {float: [1, 1.0e8]}}",
            "3:58: model.stages[0].mlp_ratio: stage 0 (at depth 2, width 64, mlp_ratio 1e+08, the most its dimensions "
            "allow) would hold at least 1.7e12 parameters (6.6 TB as float32)",
        ),
    ],
    ids=["depth", "depth range", "width", "mlp ratio"],
)
def test_absurd_sizes_are_refused_at_their_key_before_anything_is_built(tmp_path, nothing_built, stage, expected):
    import time

    spec = tmp_path / "s.yaml"
    spec.write_text(f"model:\n  stages:\n    - {stage}\n")
    start = time.perf_counter()
    (line,) = issues(spec)
    assert time.perf_counter() - start < 1
    assert line.startswith(f"{spec}:{expected}"), line


def test_sizes_add_up_over_stages_and_an_ablation_arm_is_sized_before_it_is_built(tmp_path, nothing_built):
    spec = tmp_path / "s.yaml"
    stage = "{depth: 1500, width: 16, mixer: fourier}"
    spec.write_text(f"model:\n  stages:\n    - {stage}\n    - {stage}\n")
    (line,) = issues(spec)
    assert "would be 1,500 blocks deep, the model 3,000; a model here is at most 2,048 blocks deep" in line
    spec.write_text(f"{MODEL}ablation: {{factors: {{'model.stages[0].depth': [1, 1000000]}}}}\n")
    (line,) = issues(spec)
    assert line.startswith(
        f"{spec}:2:47: ablation.factors.model.stages[0].depth: arm 'stages[0].depth=1000000': "
        "model.stages[0].depth: stage 0 (at depth 1,000,000, width 16"
    ), line


def test_a_model_beyond_the_parameter_bound_is_refused_on_a_large_machine(tmp_path, monkeypatch):
    from runs import data as datasets

    monkeypatch.setattr(datasets, "physical_memory", lambda: 2 * 10**12)  # 2 TB: memory is not what refuses
    spec = tmp_path / "s.yaml"
    spec.write_text("model: {stages: [{depth: 100, width: 4096, mixer: attention}]}\n")
    (line,) = issues(spec)
    assert line.endswith(
        "would hold at least 1.3e10 parameters (53.7 GB as float32); a model here holds at most 1.0e10 parameters"
    )


# -- overrides -----------------------------------------------------------------------------


def test_overrides_without_a_key_path_are_refused_and_one_given_twice_is_noted(tmp_path):
    spec = tmp_path / "s.yaml"
    spec.write_text(f"{MODEL}smoke: [search.trials=2]\n")
    assert issues(spec, ["=3"]) == ["-o =3: an override names a key path before '=', e.g. search.trials=50; got ''"]
    assert issues(spec, ["].[=3"])[0].startswith("-o ].[=3: an override names a key path before '='")
    twice = load(spec, ["name=aa", "name=bb"])
    assert twice.name == "bb"  # the last, as a script adding an -o to a base command expects, but said
    assert [str(w) for w in twice.warnings] == [
        "-o name=bb: name: set again (first by -o name=aa); the last one, this, is used"
    ]
    (note,) = load(spec, ["model.stages[0].width=32", "search.seed=1", "model.stages.0.width=64"]).warnings
    assert str(note).startswith("-o model.stages.0.width=64: model.stages[0].width: set again")
    assert load(spec, ["search.trials=5"], smoke=True).search.trials == 5  # smoke, then -o: the -o wins
    assert issues(spec, ["model.stages.²=1"])[0].startswith("-o model.stages.²=1: model.stages.²: ")  # not int('²')


def test_an_unknown_section_made_by_an_override_is_located_at_the_override(tmp_path):
    spec = tmp_path / "s.yaml"
    spec.write_text(MODEL)
    assert issues(spec, ["foo.bar=1"]) == [
        "-o foo.bar=1: foo: unknown key; the spec takes name, description, data, model, "
        "train, objectives, constraints, search, ablation, backend, tracking"
    ]


def test_an_ablation_base_trial_comes_from_the_caller_never_from_another_store(tmp_path):
    """Loading reads the base's spec file; its trial is asked of ``trial_params`` (the
    sweep's reader of a finished store), and without one the spec is refused, not read."""
    (tmp_path / "sweep.yaml").write_text(
        "model: {stages: [{depth: 1, width: {choice: [16, 32]}, mixer: {choice: [fourier, attention]}}]}\n"
        "train: {lr: {float: [0.001, 0.01], log: true}}\n"
    )
    child = tmp_path / "child.yaml"
    child.write_text("ablation: {base: {spec: sweep.yaml, trial: 3}, factors: {model.positional: [learned, none]}}\n")
    asked = []

    def trial_params(other, number):
        asked.append((other.name, number))
        return {"model.stages.0.width": 32, "model.stages.0.mixer": "attention", "train.lr": 0.004}

    spec = load(child, trial_params=trial_params)
    assert asked == [("sweep", 3)]
    base = spec.ablation.arms[0]
    assert base.model["stages"][0]["width"] == 32 and base.model["stages"][0]["mixer"]["name"] == "attention"
    assert base.train["lr"] == 0.004
    with pytest.raises(SpecError) as err:
        load(child, trial_params=lambda other, number: "sweep has no completed trial 3; completed: [0]")
    assert [str(i) for i in err.value.issues] == [
        f"{child}:1:44: ablation.base.trial: sweep has no completed trial 3; completed: [0]"
    ]
    with pytest.raises(SpecError) as err:
        load(child)
    assert "ablation.base: a base trial is read from its sweep's store" in str(err.value.issues[0])

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
    assert spec.search.trials >= 12 and spec.search.sampler == "nsga2"
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

"""validate's report as data (``search.sweep.validation``), checked against what the spec says
and against models built here with blocks."""

import json

import pytest

from blocks import ArchSpec, EmbeddingSpec, MixerSpec, StageSpec, build, summary
from blocks.cost import counted_cost
from search.spec import load
from search.sweep.validation import SpecReport, spec_report

DATA = "data: {dataset: synthetic, image_size: 16, num_classes: 4}\n"


@pytest.fixture(autouse=True)
def _empty_store(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the default store, out/, is this test's: no sweep to continue


def _spec(tmp_path, text: str):
    path = tmp_path / "s.yaml"
    path.write_text(DATA + text)
    return load(path)


def test_the_dimensions_and_the_size_are_the_specs(tmp_path):
    spec = _spec(
        tmp_path,
        "model: {patch_size: {choice: [2, 4]},"
        " stages: [{depth: {int: [1, 3]}, width: {choice: [16, 32]}, mixer: {choice: [attention, fourier]}}]}\n"
        "train: {epochs: 1, lr: {choice: [0.001, 0.01]}}\n"
        "constraints: ['params <= 20000', 'latency_ms <= 5']\n",
    )
    report = spec_report(spec, samples=6, seed=1)
    assert isinstance(report, SpecReport) and report.name == "s"
    assert report.dimensions == {
        "model.patch_size": "choice 2, 4",
        "model.stages[0].depth": "int [1, 3]",
        "model.stages[0].width": "choice 16, 32",
        "model.stages[0].mixer": "choice attention, fourier",
        "train.lr": "choice 0.001, 0.01",
    }
    assert report.size == 2 * 3 * 2 * 2 * 2  # patch sizes, depths, widths, mixers, learning rates
    assert report.constraints == ["params <= 20000", "latency_ms <= 5"]
    assert report.constraints_checked_when_trials_run == ["latency_ms <= 5"]
    assert len(report.samples) == 6 and report.continues is None and not report.refused
    assert spec_report(spec, samples=6, seed=1) == report  # seeded


def test_a_sampled_model_has_the_cost_of_the_model_built_from_it(tmp_path):
    spec = _spec(
        tmp_path,
        "model: {patch_size: 4, stages: [{depth: 2, width: 32, mixer: attention}]}\nconstraints: ['params <= 20000']\n",
    )
    arch = ArchSpec(
        image_size=(16, 16),
        num_classes=4,
        stages=(StageSpec(depth=2, width=32, mixer=MixerSpec("attention")),),
        embedding=EmbeddingSpec("patch", 4),
    )
    params = sum(p.numel() for p in build(arch).parameters())
    assert params > 20000  # so the constraint breaks
    (row,) = spec_report(spec, samples=1).samples
    assert row["summary"] == summary(arch) and row["params"] == params
    assert row["gmacs"] == pytest.approx(counted_cost(arch)["gmacs"]) and row["gflops"] == 2 * row["gmacs"]
    assert row["refused"] == ["breaks params <= 20000"]


def test_an_ablation_reports_its_arms(tmp_path):
    spec = _spec(
        tmp_path,
        "model: {stages: [{depth: 1, width: 16, mixer: attention}]}\n"
        "constraints: ['params <= 20000']\n"
        "ablation: {factors: {'model.stages[0].width': [16, 64]}, seeds: 1}\n",
    )
    rows = spec_report(spec).samples
    assert [r["summary"].split(":")[0] for r in rows] == [arm.name for arm in spec.ablation.arms]
    assert len(rows) == 2  # the base (width 16) and width 64, which breaks the constraint
    assert [bool(r["refused"]) for r in rows] == ["@64]" in r["summary"] for r in rows]


def test_the_json_form_has_null_for_an_infinite_size_and_no_continuation(tmp_path):
    spec = _spec(
        tmp_path,
        "model: {stages: [{depth: 1, width: 16, mixer: fourier}]}\ntrain: {lr: {float: [0.001, 0.01]}}\n",
    )
    data = spec_report(spec, samples=2).to_json()
    assert data["size"] is None and "continues" not in data
    shown = ["name", "dimensions", "size", "objectives", "constraints", "constraints_checked_when_trials_run"]
    assert list(data) == [*shown, "samples"]  # in the order validate --json prints them
    json.dumps(data, allow_nan=False)

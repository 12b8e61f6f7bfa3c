"""Good specs: defaults, extends, overrides, the typed result."""

from pathlib import Path

import pytest

from search.space import Choice, FloatRange
from search.spec import SpecError, load

ROOT = Path(__file__).resolve().parents[2]


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

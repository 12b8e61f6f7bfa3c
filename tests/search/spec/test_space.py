"""Sampling a space: define-by-run names, conditional sub-spaces, flat params, sizes."""

import optuna
import pytest

from search.spec.space import Choice, FloatRange, IntRange, Option, dimensions, flatten, sample, size

SPACE = {
    "width": Choice((Option(32), Option(64))),
    "depth": IntRange(1, 3),
    "lr": FloatRange(1e-4, 1e-2, log=True),
    "mixer": Choice((Option("attention", {"heads": Choice((Option(2), Option(4)))}), Option("fourier", {}))),
    "fixed": [1, 2],
}


def test_sample_names_every_dimension_by_key_path_and_conditions_sub_spaces():
    trial = optuna.trial.FixedTrial(
        {"m.width": 64, "m.depth": 2, "m.lr": 1e-3, "m.mixer": "attention", "m.mixer.attention.heads": 4}
    )
    value = sample(SPACE, trial, "m")
    assert value == {
        "width": 64,
        "depth": 2,
        "lr": 1e-3,
        "mixer": {"name": "attention", "options": {"heads": 4}},
        "fixed": [1, 2],
    }
    fourier = sample(
        SPACE, optuna.trial.FixedTrial({"m.width": 32, "m.depth": 1, "m.lr": 1e-3, "m.mixer": "fourier"}), "m"
    )
    assert fourier["mixer"] == {"name": "fourier", "options": {}}  # no heads drawn for fourier


def test_sampling_in_a_study_stays_inside_the_space():
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    for _ in range(30):
        trial = study.ask()
        v = sample(SPACE, trial, "m")
        assert v["width"] in (32, 64) and 1 <= v["depth"] <= 3 and 1e-4 <= v["lr"] <= 1e-2
        study.tell(trial, 0.0)
    names = {n for t in study.trials for n in t.params}
    assert names == {"m.width", "m.depth", "m.lr", "m.mixer", "m.mixer.attention.heads"}


def test_dimensions_and_size():
    assert set(dimensions(SPACE, "m")) == {"m.width", "m.depth", "m.lr", "m.mixer", "m.mixer.attention.heads"}
    finite = {k: v for k, v in SPACE.items() if k != "lr"}
    assert size(finite) == 2 * 3 * (2 + 1)
    assert size(SPACE) == float("inf")
    assert size(FloatRange(0.0, 1.0, step=0.25)) == 5


def test_flatten_names_params_as_sample_names_dimensions():
    value = {"stages": [{"depth": 2, "mixer": {"name": "attention", "options": {"heads": 4}}}], "patch_size": 2}
    assert flatten(value, "model") == {
        "model.stages.0.depth": 2,
        "model.stages.0.mixer": "attention",
        "model.stages.0.mixer.attention.heads": 4,
        "model.patch_size": 2,
    }
    params = {"m.width": 64, "m.depth": 2, "m.lr": 1e-3, "m.mixer": "attention", "m.mixer.attention.heads": 2}
    flat = flatten(sample(SPACE, optuna.trial.FixedTrial(params), "m"), "m")
    assert flat == {**params, "m.fixed": [1, 2]}  # every Optuna parameter, by its own name


@pytest.mark.parametrize("step", [1, 2])
def test_int_ranges_respect_step(step):
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = {sample(IntRange(0, 8, step), study.ask(), "x") for _ in range(40)}
    assert all(v % step == 0 for v in seen) and len(seen) > 2

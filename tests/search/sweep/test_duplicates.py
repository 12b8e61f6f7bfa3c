"""A repeated draw is answered from the earlier trial, not trained, and uses none of the
budget: what counts as the same draw, and the Ray backend's part (its searcher and
trainable, in this process with Tune's two calls replaced: no Ray runtime), down to when
the searcher finishes the experiment. The local backend's sweep is in
tests/e2e/test_sweep.py."""

from types import SimpleNamespace

import optuna
import yaml
from mlflow import MlflowClient
from optuna.trial import TrialState

from runs.tracking import Tracker, embedded_store
from search.spec import load
from search.sweep import budget, study
from search.sweep.pipeline import draw_key, trial_params

STAGE = {"depth": 1, "width": 8, "mlp_ratio": 2, "mixer": {"name": "fourier", "options": {}}}
TRAIN = {"epochs": 1, "lr": 0.003}


def test_the_same_draw_is_the_same_params_whatever_the_seed_and_a_left_out_stage():
    model = {"patch_size": 2, "stages": [STAGE, {**STAGE, "depth": 0}]}
    key = draw_key(model, TRAIN)
    left_out_wider = {"patch_size": 2, "stages": [STAGE, {**STAGE, "depth": 0, "width": 64}]}
    assert draw_key(left_out_wider, TRAIN) == key  # a stage of depth 0 is not built
    assert trial_params(left_out_wider, TRAIN, 1) == {**trial_params(model, TRAIN, 2), "seed": 1}
    assert "model.stages.1.width" not in trial_params(model, TRAIN, 0)
    assert draw_key({"patch_size": 2, "stages": [STAGE, {**STAGE, "width": 64}]}, TRAIN) != key
    assert draw_key(model, {**TRAIN, "lr": 0.004}) != key


def _ray_spec(tmp_path, trials: int = 2):
    """A space of two points (width 8 or 16); ``_width_8`` makes every draw the first."""
    spec = {
        "name": "dup",
        "data": {"dataset": "synthetic", "image_size": 8, "num_classes": 4, "samples": 64, "channels": 1},
        "model": {"patch_size": 2, "stages": [{"depth": 1, "width": {"choice": [8, 16]}, "mixer": "fourier"}]},
        "train": TRAIN,
        "objectives": [{"val_accuracy": "max"}, {"gmacs": "min"}],
        "constraints": ["params <= 1e6"],
        "search": {"sampler": "random", "trials": trials, "seed": 0},
        "backend": {"kind": "ray"},
        "tracking": {"dir": str(tmp_path / "store")},
    }
    path = tmp_path / "dup.yaml"
    path.write_text(yaml.safe_dump(spec))
    return load(str(path))


class _Width(optuna.samplers.RandomSampler):
    """Draws the given width every time: every draw after the first repeats it."""

    def __init__(self, width: int) -> None:
        super().__init__(seed=0)
        self.width = width

    def sample_independent(self, study, trial, name, distribution):
        return (
            self.width
            if name == "model.stages.0.width"
            else super().sample_independent(study, trial, name, distribution)
        )


def _width_8(search) -> None:
    search.study.sampler = _Width(8)


def test_on_ray_the_driver_spots_a_repeat_and_the_trainable_answers_it_untrained(tmp_path, monkeypatch):
    from search.sweep.pipeline import Outcome
    from search.sweep.ray import driver, searcher, worker

    spec = _ray_spec(tmp_path)
    uri = embedded_store(tmp_path / "store")
    tracker = Tracker(uri, spec.experiment, artifacts=tmp_path / "store" / "artifacts")
    parent = tracker.sweep_run(spec.name, spec.name, {})
    original = tracker.trial_run(parent, spec.name, 0, "t00", {}, {})
    reported, current = [], ["b"]
    monkeypatch.setattr(worker.tune, "report", lambda result, checkpoint=None: reported.append(result))
    monkeypatch.setattr(worker.tune, "get_context", lambda: SimpleNamespace(get_trial_id=lambda: current[0]))
    monkeypatch.setattr(worker, "_dataset", lambda *a: (_ for _ in ()).throw(AssertionError("it trains")))

    search = searcher.ArchSearch(spec)
    _width_8(search)
    assert search.suggest("a")["repeat"] is None
    metrics = {"val_accuracy": 0.5, "gmacs": 0.1, "params": 532.0, "epochs": 1.0}
    done = {"number": 0, "run_id": original, "arch": "fourier", "state": "complete", **metrics}
    outcome = Outcome("complete", "", metrics, (0.5, 0.1), (-999468.0, 0.0))
    search.on_trial_complete("a", {**done, "outcome": outcome.as_text()})
    config = search.suggest("b")
    assert config["repeat"]["duplicate_of"] == 0
    worker.trainable(config, spec=spec, parent=parent, uri=uri)  # in a Ray worker, this
    search.on_trial_complete("b", reported[-1])

    first, repeat = search.study.trials
    assert repeat.user_attrs["state"] == "duplicate" and repeat.user_attrs["duplicate_of"] == 0
    assert repeat.constraints == first.constraints
    assert repeat.user_attrs["metrics"] == first.user_attrs["metrics"] == metrics
    # told PRUNED: off Optuna's front, a duplicate that uses none of the budget
    assert repeat.state == TrialState.PRUNED and repeat.values is None
    assert study.state_of(repeat) == "duplicate" and not study.counted(repeat) and study.counted(first)
    assert [t.number for t in search.study.best_trials] == [0]
    run = MlflowClient(uri).get_run(reported[-1]["run_id"])
    assert run.info.status == "FINISHED" and run.data.metrics == metrics
    assert run.data.tags["archsweep.duplicate_of"] == "0" and run.data.tags["archsweep.state"] == "duplicate"
    assert run.data.tags["archsweep.trial"] == "1" and run.data.params["seed"] == str(spec.search.seed)

    sweep = driver.RaySweep(spec)  # the driver's bookkeeping counts it, and has its line to print
    driver._Bookkeeper(sweep).on_trial_complete(0, [], SimpleNamespace(last_result=reported[-1]))
    assert sweep.progress.duplicate == 1 and sweep.progress.done == 0
    line = sweep.progress.ended[0]
    assert (line["trial"], line["state"], line["duplicate_of"], line["reason"]) == (
        1,
        "duplicate",
        0,
        "same draw as t00",
    )
    assert line["metrics"]["val_accuracy"] == 0.5


def _told(search, trial_id: str, width: int) -> None:
    """Tune's trial ``trial_id`` ends as a worker reports it: complete, or a repeat answered."""
    from search.sweep.pipeline import Outcome

    config = search.suggest(trial_id)
    assert config["model"]["stages"][0]["width"] == width
    metrics = {"val_accuracy": 0.5, "gmacs": 0.1 * width, "params": 66.0 * width, "epochs": 1.0}
    outcome = (
        Outcome.from_dict(config["repeat"])
        if config["repeat"]
        else Outcome("complete", "", metrics, (0.5, 0.1 * width), (-1.0, 0.0))
    )
    search.on_trial_complete(trial_id, {"number": config["number"], "outcome": outcome.as_text()})


def test_on_ray_the_searcher_finishes_when_the_distinct_budget_is_met_running_draws_included(tmp_path):
    """Tune runs as many trials as the searcher suggests (num_samples=-1): a repeat is a Tune
    trial that uses none of the budget; a new draw still running counts as planned."""
    from ray.tune.search import Searcher

    from search.sweep.ray import searcher

    search = searcher.ArchSearch(_ray_spec(tmp_path, trials=2))
    _width_8(search)
    _told(search, "a", 8)
    _told(search, "b", 8)  # a repeat: the budget still has one architecture left
    assert [study.counted(t) for t in search.study.trials] == [True, False]
    search.study.sampler = _Width(16)
    assert search.suggest("c")["repeat"] is None  # new, running: the budget is planned in full
    assert search.suggest("d") == Searcher.FINISHED and search.stopped == ""
    assert len(search.study.trials) == 3  # nothing asked of the study for d


def test_on_ray_the_searcher_finishes_when_the_space_is_exhausted_and_says_so(tmp_path):
    from ray.tune.search import Searcher

    from search.sweep.ray import searcher

    search = searcher.ArchSearch(_ray_spec(tmp_path, trials=5))
    for trial_id, width in (("a", 8), ("b", 16)):
        search.study.sampler = _Width(width)
        _told(search, trial_id, width)
    assert search.suggest("c") == Searcher.FINISHED
    assert search.stopped == (
        "the space is exhausted: all 2 architectures were tried; 3 of the requested 5 trials had nothing left to try"
    )


def test_on_ray_the_searcher_finishes_when_its_sampler_only_redraws(tmp_path, monkeypatch):
    from ray.tune.search import Searcher

    from search.sweep.ray import searcher

    monkeypatch.setattr(budget, "REPEATS", 3)
    search = searcher.ArchSearch(_ray_spec(tmp_path, trials=2))
    _width_8(search)
    for trial_id in "abcd":
        _told(search, trial_id, 8)  # one trained, then three repeats in a row
    assert search.suggest("e") == Searcher.FINISHED
    assert search.stopped.startswith("the sampler kept drawing architectures already tried (3 repeats in a row)")
    assert search.stopped.endswith("1 of the requested 2 trials were not run")

"""How the trial pipeline records outcomes in a real Optuna study (no training: outcomes
are made from a table), read back with Optuna's own tools: ``best_trials``, its Pareto
plot, and what TPE learns from trials refused before training."""

import matplotlib

matplotlib.use("Agg")

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from runs.tags import CONTINUES_TAG
from runs.trial import Infeasible
from search.pruners.mo_asha import RUNGS_ATTR
from search.spec import load
from search.sweep import pipeline, study

SPEC = {
    "name": "table",
    "data": {"dataset": "synthetic", "image_size": 8, "num_classes": 4, "samples": 40, "channels": 1},
    "model": {"patch_size": 2, "stages": [{"depth": 1, "width": 8, "mixer": "fourier"}]},
    "objectives": [{"val_accuracy": "max"}, {"gmacs": "min"}],
    "constraints": ["params <= 1000"],
}


@pytest.fixture
def spec(tmp_path):
    path = tmp_path / "table.yaml"
    path.write_text(yaml.safe_dump(SPEC))
    return load(path)


def _study(spec, sampler=None) -> optuna.Study:
    return study.create(spec, optuna.storages.InMemoryStorage(), sampler=sampler)


def _tell(s: optuna.Study, spec, outcome: pipeline.Outcome) -> None:
    pipeline.tell(s, s.ask(), spec, outcome)


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")  # its matplotlib plots
def test_refused_trials_stay_off_optunas_front_and_plot(spec):
    s = _study(spec)
    trained = {"val_accuracy": 0.9, "gmacs": 0.002, "params": 800.0}
    _tell(s, spec, pipeline.completed(spec, trained))
    _tell(s, spec, pipeline.refused(spec, Infeasible("refused by the builder: no", {}, [1.0])))
    costly = {"params": 5000.0, "gmacs": 0.001}
    _tell(s, spec, pipeline.refused(spec, Infeasible("breaks params <= 1000", costly, [4000.0])))
    trained_too_big = {"val_accuracy": 0.95, "gmacs": 0.003, "params": 1200.0}
    _tell(s, spec, pipeline.completed(spec, trained_too_big))

    states = [(t.state, study.state_of(t)) for t in s.trials]
    assert states == [
        (TrialState.COMPLETE, "complete"),
        (TrialState.PRUNED, "infeasible"),  # nothing measured: no values to plot
        (TrialState.PRUNED, "infeasible"),  # cost measured, accuracy never: no values either
        (TrialState.COMPLETE, "infeasible"),  # trained, then broke a constraint: real values
    ]
    assert [t.constraints for t in s.trials[1:3]] == [
        {"params <= 1000": 1.0, "buildable": 1.0},
        {"params <= 1000": 4000.0, "buildable": 0.0},
    ]
    assert [t.number for t in s.best_trials] == [0]
    axes = optuna.visualization.matplotlib.plot_pareto_front(s)
    plotted = [tuple(p) for c in axes.collections for p in c.get_offsets()]
    assert sorted(plotted) == [(0.9, 0.002), (0.95, 0.003)]  # as (val_accuracy, gmacs); no made-up point


def test_a_refused_trial_has_values_when_every_objective_is_a_measured_cost(tmp_path):
    path = tmp_path / "costs.yaml"
    path.write_text(yaml.safe_dump({**SPEC, "objectives": [{"params": "min"}, {"gmacs": "min"}]}))
    spec = load(path)
    outcome = pipeline.refused(spec, Infeasible("breaks params <= 1000", {"params": 5000.0, "gmacs": 0.1}, [4000.0]))
    s = _study(spec)
    _tell(s, spec, outcome)
    assert s.trials[0].state == TrialState.COMPLETE and s.trials[0].values == [5000.0, 0.1]
    assert s.best_trials == []  # infeasible: Optuna leaves it off the front


def test_tpe_learns_to_avoid_a_choice_whose_trials_are_refused(spec):
    """A choice whose every draw is refused before training (told PRUNED) is drawn less
    and less by TPE; random search keeps drawing it half the time."""

    def bad_share(sampler) -> float:
        s = _study(spec, sampler)
        drawn = []
        for _ in range(60):
            trial = s.ask()
            choice = trial.suggest_categorical("mixer", ["good", "bad"])
            width = trial.suggest_int("width", 8, 64)
            drawn.append(choice)
            if choice == "bad":
                outcome = pipeline.refused(spec, Infeasible("refused by the builder", {}, [1.0]))
            else:
                metrics = {"val_accuracy": width / 64, "gmacs": width / 1000, "params": 10.0 * width}
                outcome = pipeline.completed(spec, metrics)
            pipeline.tell(s, trial, spec, outcome)
        return drawn[30:].count("bad") / 30

    tpe = bad_share(optuna.samplers.TPESampler(seed=0, n_startup_trials=10))
    random = bad_share(optuna.samplers.RandomSampler(seed=0))
    assert tpe < 0.2 and random > 0.3, (tpe, random)


def test_a_draw_travels_as_plain_data(spec):
    """What the Ray backend's config and result carry: the Draw and its answer, as plain
    data, back to the same records."""
    s = _study(spec)
    first = s.ask()
    drawn = pipeline.draw(spec, s, first)
    assert drawn.repeat is None
    pipeline.tell(s, first, spec, pipeline.completed(spec, {"val_accuracy": 0.5, "gmacs": 0.1, "params": 100.0}))
    again = pipeline.draw(spec, s, s.ask())  # a one-point space: the same draw
    assert again.repeat is not None and again.repeat.duplicate_of == 0
    assert pipeline.Draw.from_dict(again.as_dict()) == again


def _prune(s: optuna.Study, trial, spec, epochs: int) -> None:
    """``trial`` stopped after ``epochs`` epochs in all, as MO-ASHA's judge leaves it."""
    trial.set_user_attr(RUNGS_ATTR, [[epochs, 0, [0.5, 0.1]]])
    metrics = {"val_accuracy": 0.5, "gmacs": 0.1, "epochs": float(epochs)}
    pipeline.tell(s, trial, spec, pipeline.Outcome("pruned", f"pruned at epoch {epochs}", metrics, None, (0.0, 0.0)))


def test_a_draw_of_a_pruned_trial_continues_it_with_its_seed_and_counts_once(spec):
    """A one-point space: every draw is the same architecture. Pruned after 2 epochs, it
    is continued (from 2 epochs, the first trial's seed); pruned again after 4, continued
    from 4, still with the first seed; completed, it answers the next draw. Only the
    first trial uses the budget."""
    s = _study(spec)
    first = s.ask()
    assert pipeline.draw(spec, s, first).continues is None
    _prune(s, first, spec, 2)
    second = s.ask()
    drawn = pipeline.draw(spec, s, second)
    assert (drawn.continues, drawn.trained, drawn.seed) == (0, 2, pipeline.trial_seed(spec, 0))
    assert drawn.tags == {CONTINUES_TAG: "0"} and drawn.repeat is None
    assert pipeline.run_name(drawn, "fourier").startswith("t01 continues t00")
    assert pipeline.Draw.from_dict(drawn.as_dict()) == drawn
    _prune(s, second, spec, 4)
    third = s.ask()
    drawn = pipeline.draw(spec, s, third)
    assert (drawn.continues, drawn.trained, drawn.seed) == (1, 4, pipeline.trial_seed(spec, 0))
    pipeline.tell(s, third, spec, pipeline.completed(spec, {"val_accuracy": 0.9, "gmacs": 0.1, "params": 100.0}))
    answered = pipeline.draw(spec, s, s.ask())
    assert answered.repeat is not None and answered.repeat.duplicate_of == 2 and answered.continues is None
    assert answered.seed == pipeline.trial_seed(spec, 0)  # the seed its result came from
    trials = s.get_trials(deepcopy=False)
    assert [study.counted(t) for t in trials[:3]] == [True, False, False]
    assert [t.number for t in s.best_trials] == [2]


def test_a_pruned_trial_s_epochs_are_read_from_what_each_pruner_leaves_on_it():
    def pruned(**kwargs):
        return optuna.trial.create_trial(state=TrialState.PRUNED, **kwargs)

    mo_asha = pruned(user_attrs={RUNGS_ATTR: [[2, 0, [0.1, 0.1]], [4, 1, [0.2, 0.1]]]})  # any backend
    replayed = pruned(user_attrs={"metrics": {"val_accuracy": 0.2, "epochs": 8.0}})
    reported = pruned(intermediate_values={0: 0.1, 1: 0.2, 2: 0.3})  # Optuna's pruners: step epoch - 1
    assert [pipeline.trained_epochs(t) for t in (mo_asha, replayed, reported, pruned())] == [4, 8, 3, 0]

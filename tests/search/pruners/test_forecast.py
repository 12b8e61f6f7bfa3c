"""MO-ASHA's forecast of a trial's final values from a rung (``search.pruners.forecast``)
and what the rung judge does with it (``search.pruners.mo_asha.RungJudge``): halving's
decisions stand until the forecast says otherwise; a trial whose optimistic final would
join the completed front goes on, and (when asked) one whose optimistic final is
dominated by it stops. Hand-made trials, no table, no Optuna sweep."""

import numpy as np
import optuna
import pytest
from optuna.distributions import FloatDistribution

from search.pruners import forecast
from search.pruners.forecast import Forecast, Map, isotonic
from search.pruners.mo_asha import RUNGS_ATTR, RungJudge
from search.pruners.rungs import Rungs

EPOCHS = 15
RUNGS = [2, 4, 8]
METRICS = ["val_accuracy", "gmacs"]


def test_isotonic_is_the_least_squares_non_decreasing_fit():
    x = np.array([0.1, 0.2, 0.3, 0.4, 0.5])
    y = np.array([1.0, 3.0, 2.0, 4.0, 4.0])
    knots, fitted = isotonic(x, y)
    assert list(knots) == list(x) and list(fitted) == [1.0, 2.5, 2.5, 4.0, 4.0]
    rng = np.random.default_rng(0)
    x, y = rng.random(60), rng.random(60)
    knots, fitted = isotonic(x, y)
    assert np.all(np.diff(fitted) >= -1e-12)
    # no other non-decreasing fit is closer: any small monotone nudge costs squares
    at = np.interp(x, knots, fitted)
    best = np.sum((y - at) ** 2)
    for _ in range(50):
        nudged = np.maximum.accumulate(fitted + 0.01 * rng.standard_normal(len(fitted)))
        assert np.sum((y - np.interp(x, knots, nudged)) ** 2) >= best - 1e-12


def test_the_spread_is_local_wide_where_the_finals_scatter():
    x = np.linspace(0.1, 0.9, 40)
    y = 0.5 + 0.5 * x + np.where(x < 0.5, 0.2, 0.01) * np.sin(np.arange(40) * 2.1)
    fitted = Map(x, y)
    low, high = fitted.spread([0.15, 0.85])
    assert low > 5 * high and high >= forecast.FLOOR * np.ptp(y)


def test_a_map_needs_enough_pairs_and_a_trial_counts_once():
    book = Forecast()
    for i in range(forecast.MIN_PAIRS - 1):
        book.add(2, "val_accuracy", 0.1 * i, 0.5 + 0.05 * i, key=i)
    assert book.predict(2, "val_accuracy", 0.3) is None
    book.add(2, "val_accuracy", 0.2, 0.9, key=0)  # trial 0 again: replaces its pair
    assert book.size(2, "val_accuracy") == forecast.MIN_PAIRS - 1
    book.add(2, "val_accuracy", 0.9, 0.95, key="last")
    mean, spread = book.predict(2, "val_accuracy", [0.0, 0.95])
    assert mean[0] <= mean[1] and (spread > 0).all()


# -- the judge ------------------------------------------------------------------------------


def _judge(**options) -> RungJudge:
    return RungJudge(Rungs(RUNGS, ["max", "min"], 2), METRICS, epochs=EPOCHS, **options)


def _curve(final: float, epochs: int) -> float:
    """A made-up accuracy after ``epochs`` epochs that ends at ``final``."""
    return final * (1 - np.exp(-epochs / 4)) / (1 - np.exp(-EPOCHS / 4))


def _complete(judge: RungJudge, number: int, final: float, gmacs: float) -> None:
    """Every epoch of a trial to its end, whatever was decided on the way (the judge is fed
    completed trials here; how they got there is not the point)."""
    for epochs in range(1, EPOCHS + 1):
        judge.after_epoch(number, epochs, {"val_accuracy": _curve(final, epochs), "gmacs": gmacs})


def _fed(judge: RungJudge) -> RungJudge:
    """Twelve trials completed, one after another, accuracy rising with cost: the completed
    front spans 0.0002 to 0.0013 GMACs."""
    for i in range(12):
        _complete(judge, i, 0.80 + 0.015 * i, 0.0002 + 0.0001 * i)
    return judge


def test_halving_alone_prunes_what_the_forecast_protects():
    """A trial a little slower at epoch 2 than the cheapest completed one, and a little
    costlier: halving ranks it behind the twelve trials at the rung (the cheapest dominates
    it there) and stops it; its forecast final at one spread beats that trial's final, so
    it would join the completed front: the judge lets it go on, and says why."""
    cheap = {"val_accuracy": 0.30, "gmacs": 0.00025}
    plain = _fed(_judge()).after_epoch(99, 2, cheap)
    assert not plain.proceed
    guarded = _fed(_judge(protect=1.0)).after_epoch(99, 2, cheap)
    assert guarded.proceed and "forecast final" in guarded.reason and "would not be dominated" in guarded.reason
    assert guarded.position == plain.position  # halving's own ranking is still what the reason says


def test_the_forecast_does_not_protect_what_the_completed_front_dominates():
    """As costly as the costliest completed trial and far behind at the rung: even its
    optimistic final is dominated, so halving's decision stands."""
    judge = _fed(_judge(protect=1.0))
    hopeless = judge.after_epoch(99, 2, {"val_accuracy": 0.05, "gmacs": 0.0014})
    assert not hopeless.proceed and "forecast" not in hopeless.reason


def test_a_trial_refused_after_training_is_off_the_completed_front():
    """Trials that trained to the end and then broke a device-measured constraint are not
    the front a forecast is held against: with the trials that dominate it refused, the
    hopeless trial above would join what is left, and goes on."""
    judge = _fed(_judge(protect=1.0))
    for number in range(12):
        judge.ended(number, "complete" if number < 2 else "infeasible")  # the two cheapest stay
    assert not judge.after_epoch(99, 2, {"val_accuracy": 0.05, "gmacs": 0.0014}).proceed  # dominated by them
    for number in range(2):
        judge.ended(number, "infeasible")
    kept = judge.after_epoch(98, 2, {"val_accuracy": 0.05, "gmacs": 0.0014})
    assert kept.proceed and "by the 0 completed" in kept.reason


def test_the_converse_stops_what_halving_would_let_go_on():
    """Among the first at a new rung a trial continues under halving; with ``stop`` its
    optimistic final, dominated by the completed front, stops it there."""
    judge = _fed(_judge(stop=0.5))
    fresh = {"val_accuracy": _curve(0.80, 8), "gmacs": 0.0014}  # far below what 0.0013 GMACs reached
    book = Rungs(RUNGS, ["max", "min"], 2)
    assert book.judge("99", 8, list(fresh.values())).proceed  # alone at a fresh book: halving lets it on
    judge.book = book  # the same forecast and completed front, a book where halving lets it on
    stopped = judge.after_epoch(99, 8, fresh)
    assert not stopped.proceed and "dominated" in stopped.reason


def test_without_a_map_a_trial_halving_would_stop_goes_on():
    """Before enough trials completed, nothing says a trial cannot reach the front."""
    judge = _judge(protect=1.0)
    judge.after_epoch(0, 2, {"val_accuracy": 0.9, "gmacs": 0.0001})
    second = judge.after_epoch(1, 2, {"val_accuracy": 0.1, "gmacs": 0.0005})  # dominated at the rung
    assert second.proceed and "too few completed trials" in second.reason


def test_a_continued_trial_pairs_its_pruned_trial_s_rungs_with_its_final():
    judge = _judge(protect=1.0)
    judge.after_epoch(5, 2, {"val_accuracy": 0.3, "gmacs": 0.0003})  # then pruned; continued by 9
    for epochs in range(3, EPOCHS + 1):
        judge.after_epoch(9, epochs, {"val_accuracy": 0.97, "gmacs": 0.0003}, continues=5)
    assert judge.forecast.pairs[(2, "val_accuracy")] == {9: (0.3, 0.97)}
    assert judge.forecast.size(4, "val_accuracy") == 1 and judge.forecast.size(2, "gmacs") == 0  # costs are exact


def test_a_restored_judge_decides_as_the_judge_that_saw_the_trials():
    """A resumed sweep's judge, rebuilt from the study's trials (rung records and values),
    takes the decision the live judge takes."""
    live = _fed(_judge(protect=1.0))
    trials = []
    for number, rungs in live.reached.items():
        final = [_curve(0.80 + 0.015 * number, EPOCHS), 0.0002 + 0.0001 * number]
        trials.append(
            optuna.trial.create_trial(
                params={"x": 0.0},
                distributions={"x": FloatDistribution(0, 1)},
                values=final,
                user_attrs={RUNGS_ATTR: rungs, "state": "complete"},
            )
        )
        trials[-1].number = number
    restored = _judge(protect=1.0).restore(trials)
    for vector in ({"val_accuracy": 0.30, "gmacs": 0.00025}, {"val_accuracy": 0.05, "gmacs": 0.0014}):
        assert restored.after_epoch(99, 2, vector).proceed == live.after_epoch(99, 2, vector).proceed
    assert restored.forecast.pairs == live.forecast.pairs


@pytest.mark.parametrize("rejudge", [True, False])
def test_a_continued_trial_is_judged_at_later_rungs_unless_told_not_to(rejudge):
    judge = _fed(_judge(rejudge=rejudge))
    decision = judge.after_epoch(99, 4, {"val_accuracy": 0.01, "gmacs": 0.0014}, continues=50)
    assert decision.proceed == (not rejudge)

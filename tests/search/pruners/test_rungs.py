"""MO-ASHA's rung decisions: the order against a brute-force reference, promotion on hand
examples, and the decision a backend tags its MLflow run with."""

import random

import pytest

from search.pruners.rungs import RungDecision, decide, order, promotable, rung_epochs

ACC_GMACS = ["max", "min"]  # (accuracy at the rung, cost known before training)


# -- a reference written another way: peel fronts with an O(n^2) check, textbook crowding --


def _better(a: float, b: float, direction: str) -> bool:
    return a > b if direction == "max" else a < b


def _dominates(p, q, directions) -> bool:
    pairs = list(zip(p, q, directions, strict=True))
    return all(not _better(b, a, d) for a, b, d in pairs) and any(_better(a, b, d) for a, b, d in pairs)


def _reference_order(points, directions) -> list[int]:
    remaining, fronts = list(range(len(points))), []
    while remaining:
        front = [i for i in remaining if not any(_dominates(points[j], points[i], directions) for j in remaining)]
        fronts.append(front)
        remaining = [i for i in remaining if i not in front]
    result = []
    for front in fronts:
        distance = dict.fromkeys(front, 0.0)
        for m, d in enumerate(directions):
            # ascending in "worse to better" terms: a maximised objective sorts on its negation
            value = {i: -points[i][m] if d == "max" else points[i][m] for i in front}
            by_value = sorted(front, key=lambda i: (value[i], i))
            lo, hi = value[by_value[0]], value[by_value[-1]]
            if hi == lo:
                continue
            for pos in range(1, len(by_value) - 1):
                distance[by_value[pos]] += (value[by_value[pos + 1]] - value[by_value[pos - 1]]) / (hi - lo)
            distance[by_value[0]] = distance[by_value[-1]] = float("inf")
        result += sorted(front, key=lambda i: (-distance[i], i))
    return result


def _random_rung(rng: random.Random) -> tuple[list[list[float]], list[str]]:
    k, n = rng.choice([2, 3]), rng.randint(1, 30)
    directions = [rng.choice(["max", "min"]) for _ in range(k)]
    if rng.random() < 0.5:  # a coarse grid: many ties in single objectives
        points = [[float(rng.randint(0, 4)) for _ in range(k)] for _ in range(n)]
    else:
        points = [[rng.random() for _ in range(k)] for _ in range(n)]
    for _ in range(rng.randint(0, n // 3)):  # duplicate points
        points[rng.randrange(n)] = list(points[rng.randrange(n)])
    return points, directions


def test_the_order_matches_a_brute_force_reference_on_random_rungs():
    rng = random.Random(20240611)
    several_fronts = []
    for _ in range(300):
        points, directions = _random_rung(rng)
        expected = _reference_order(points, directions)
        assert order(points, directions) == expected, (points, directions)
        assert sorted(expected) == list(range(len(points)))
        several_fronts.append(any(_dominates(p, q, directions) for p in points for q in points))
    assert 0 < sum(several_fronts) < 300  # rungs with one front and with several were drawn


def test_crowding_breaks_ties_within_a_front_and_arrival_breaks_the_rest():
    # one front, both minimised; boundaries first, then (6, 2) (crowding 0.9 + 0.9) before (1, 9) (0.6 + 0.8)
    assert order([(0, 10), (1, 9), (6, 2), (10, 0)], ["min", "min"]) == [0, 3, 2, 1]
    # equal points: neither dominates, crowding is equal, the earlier arrival first
    assert order([(0.5, 3.0), (0.5, 3.0), (0.5, 3.0)], ACC_GMACS) == [0, 1, 2]
    # a dominated point after the whole front, however isolated it is
    assert order([(0.2, 9.0), (0.9, 1.0), (0.8, 0.5)], ACC_GMACS) == [1, 2, 0]


def test_directions_decide_what_is_better():
    points = [(0.9, 5.0), (0.5, 1.0)]
    assert order(points, ["max", "max"]) == [0, 1]  # (0.9, 5) dominates
    assert order(points, ["min", "min"]) == [1, 0]  # (0.5, 1) dominates
    assert order(points, ["minimize", "minimize"]) == [1, 0]  # Optuna's names mean the same
    assert order(points, ["maximize", "maximize"]) == [0, 1]
    mixed = [*points, (0.4, 6.0)]
    assert order(mixed, ["min", "max"])[0] == 2  # lowest first value and highest second: dominates both
    assert order(mixed, ["max", "min"])[-1] == 2  # (0.9, 5) dominates it


# -- promotion ---------------------------------------------------------------------------


def test_a_dominated_point_among_four_is_pruned_and_front_points_continue():
    points = [(0.9, 1.0), (0.8, 2.0), (0.7, 0.5), (0.6, 3.0)]  # (0.6, 3) and (0.8, 2) dominated by (0.9, 1)
    assert [promotable(i, points, ACC_GMACS, 2) for i in range(4)] == [True, False, True, False]


def test_the_first_point_at_a_rung_continues_and_the_next_only_if_best_so_far():
    assert promotable(0, [(0.1, 100.0)], ACC_GMACS, 2)
    assert not promotable(1, [(0.5, 1.0), (0.4, 2.0)], ACC_GMACS, 2)  # dominated, and only 1 of 2 goes on
    assert promotable(1, [(0.5, 1.0), (0.6, 0.5)], ACC_GMACS, 2)  # dominates the first
    assert not promotable(1, [(0.5, 1.0), (0.6, 2.0)], ACC_GMACS, 2)  # non-dominated, but the place is taken


def test_with_eta_3_and_9_points_exactly_the_top_3_continue():
    chain = [(0.1 * i, 10.0 - i) for i in range(9)]  # each point dominates those before it
    assert [i for i in range(9) if promotable(i, chain, ACC_GMACS, 3)] == [6, 7, 8]
    rng = random.Random(7)
    for _ in range(50):
        points = [(rng.random(), rng.random()) for _ in range(9)]
        winners = {i for i in range(9) if promotable(i, points, ACC_GMACS, 3)}
        assert winners == set(_reference_order(points, ACC_GMACS)[:3])


def test_a_cheap_less_accurate_model_on_the_front_is_not_pruned():
    points = [(0.95, 10.0), (0.85, 12.0), (0.75, 5.0), (0.80, 1.0)]  # the cheap one arrives last
    assert promotable(3, points, ACC_GMACS, 2)
    assert not promotable(1, points, ACC_GMACS, 2)  # more accurate than it, but dominated
    # on accuracy alone (single-objective ASHA) the cheap model is third of four: pruned
    assert not promotable(3, [p[:1] for p in points], ["max"], 2)


def test_rung_epochs():
    assert rung_epochs(1, 2, 16) == [1, 2, 4, 8]
    assert rung_epochs(1, 3, 27) == [1, 3, 9]
    assert rung_epochs(2, 2, 10) == [2, 4, 8]
    assert rung_epochs(1, 2, 1) == []  # one epoch: nothing to decide before the end
    assert rung_epochs(5, 2, 5) == []
    for args in [(0, 2, 10), (1, 1, 10), (1, 2, 0)]:
        with pytest.raises(ValueError):
            rung_epochs(*args)


def test_what_cannot_be_ranked_is_refused():
    with pytest.raises(ValueError, match="directions"):
        order([(1.0, 2.0)], ["max", "up"])
    with pytest.raises(ValueError, match="2 values for 3 objectives"):
        order([(1.0, 2.0, 3.0), (1.0, 2.0)], ["max", "min", "min"])
    with pytest.raises(ValueError, match="finite"):
        order([(float("nan"), 2.0)], ACC_GMACS)
    with pytest.raises(ValueError, match="reduction_factor"):
        promotable(0, [(1.0, 2.0)], ACC_GMACS, 1)
    with pytest.raises(ValueError, match="candidate"):
        promotable(1, [(1.0, 2.0)], ACC_GMACS, 2)


# -- decide: the helper both backends call with stored records -----------------------------


def test_decide_appends_the_candidate_last_and_says_why():
    records = {f"t{i}": (0.1 * i, 10.0 - i) for i in range(8)}  # a chain: later keys dominate earlier ones
    decision = decide("t8", 2, (0.35, 6.5), records, ACC_GMACS, 3, epoch=4)
    # better than t0..t3, worse than t4..t7: fifth of nine, and only three continue
    assert decision == RungDecision(False, 4, 3, 4, 2, 9, 4)
    assert decision.reason == (
        "pruned at rung 2 (epoch 4): position 5 of 9 by non-dominated sorting (behind 4 fronts), the top 3 continue"
    )
    best = decide("t8", 0, (0.9, 0.5), records, ACC_GMACS, 3)
    assert (best.proceed, best.position, best.front) == (True, 0, 0)
    assert (
        best.reason
        == "continues past rung 0: position 1 of 9 by non-dominated sorting (on the front), the top 3 continue"
    )
    assert decide("t1", 1, (0.5, 1.0), {}, ACC_GMACS, 2).reason.endswith("only the top 1 continues")


def test_decide_keeps_the_records_arrival_order_for_ties():
    same = (0.5, 1.0)
    earlier_b = decide("c", 0, same, {"b": same, "a": same, "x": (0.1, 9.0)}, ACC_GMACS, 3)
    assert (earlier_b.proceed, earlier_b.position, earlier_b.front) == (False, 2, 0)  # behind b and a, cut 1
    first = decide("a", 0, same, {"b": (0.1, 9.0)}, ACC_GMACS, 2)
    assert first.proceed  # ahead of a dominated b


def test_decide_counts_a_retried_candidate_once_at_its_first_place():
    records = {"a": (0.5, 1.0), "b": (0.5, 1.0), "c": (0.1, 9.0), "d": (0.2, 8.0)}
    again = decide("a", 0, (0.5, 1.0), records, ACC_GMACS, 2)
    assert (again.size, again.position, again.proceed) == (4, 0, True)  # not a fifth point, still before b
    worse = decide("a", 0, (0.05, 10.0), records, ACC_GMACS, 2)
    assert (worse.size, worse.position, worse.proceed) == (4, 3, False)  # judged on its new vector

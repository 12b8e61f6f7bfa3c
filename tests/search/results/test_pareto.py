"""The non-dominated set and its hypervolume against brute force and hand values."""

import itertools
import random

from runs.metrics import Objective
from search.results.pareto import hypervolume, nondominated

OBJ = (Objective("val_accuracy", "max"), Objective("gmacs", "min"))


def rows(points):
    return [{"val_accuracy": a, "gmacs": g} for a, g in points]


def test_nondominated_matches_brute_force_on_random_points():
    rng = random.Random(0)
    for _ in range(50):
        pts = [(rng.choice([0.5, 0.7, 0.9]), rng.choice([1.0, 2.0, 3.0])) for _ in range(8)]
        expected = [
            i for i, (a, g) in enumerate(pts) if not any(a2 >= a and g2 <= g and (a2, g2) != (a, g) for a2, g2 in pts)
        ]
        assert nondominated(rows(pts), OBJ) == expected


def test_hypervolume_of_a_staircase():
    # Front (0.9, 2), (0.8, 1); worst acc 0.7, worst gmacs 3; ranges 0.2 and 2.
    r = rows([(0.9, 2.0), (0.8, 1.0), (0.7, 3.0)])
    volume, ref = hypervolume(r, OBJ)
    ref_acc, ref_g = -0.7 + 0.02, 3.0 + 0.2
    assert ref == [ref_acc, ref_g]
    # In minimisation form: points (-0.9, 2) and (-0.8, 1) against the reference.
    expected = (ref_acc + 0.9) * (ref_g - 2.0) + (ref_acc + 0.8) * (2.0 - 1.0)
    assert abs(volume - expected) < 1e-9


def test_single_objective_front_is_the_best():
    r = [{"val_accuracy": a} for a in (0.3, 0.9, 0.5)]
    assert nondominated(r, OBJ[:1]) == [1]
    assert list(itertools.chain(nondominated([], OBJ))) == []


def test_nondominated_matches_brute_force_in_three_objectives_with_ties():
    objectives = (*OBJ, Objective("params", "min"))
    rng = random.Random(1)
    for _ in range(200):
        pts = [(rng.randint(0, 5), rng.randint(0, 5), rng.randint(0, 3)) for _ in range(rng.randint(1, 40))]

        def dominated(p, pts=pts):
            return any(q[0] >= p[0] and q[1] <= p[1] and q[2] <= p[2] and q != p for q in pts)

        table = [{"val_accuracy": a, "gmacs": g, "params": n} for a, g, n in pts]
        assert nondominated(table, objectives) == [i for i, p in enumerate(pts) if not dominated(p)]

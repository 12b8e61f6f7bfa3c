"""The peers bench search holds archsweep's samplers against, beside Optuna's: pymoo's
SMS-EMOA and NSGA-II on the same recorded tables, as their users would run them on a
finite space (integer encoding with rounding repair, duplicates eliminated within a
population, population 20). Each candidate is looked up in the table; one evaluated
before is answered from the first evaluation (a repeat: no training), as a sweep answers
a repeated draw, so that both count distinct evaluations alike.

pymoo is a bench and test dependency (requirements-dev.txt), never a runtime one."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from pymoo.algorithms.moo.nsga2 import NSGA2
from pymoo.algorithms.moo.sms import SMSEMOA
from pymoo.core.evaluator import Evaluator
from pymoo.core.problem import Problem
from pymoo.core.termination import NoTermination
from pymoo.operators.crossover.sbx import SBX
from pymoo.operators.mutation.pm import PM
from pymoo.operators.repair.rounding import RoundingRepair
from pymoo.operators.sampling.rnd import IntegerRandomSampling
from pymoo.problems.static import StaticProblem

from search.tables.table import Row

POPULATION = 20
ALGORITHMS = {"pymoo-smsemoa": SMSEMOA, "pymoo-nsga2": NSGA2}
PATIENCE = 50  # populations in a row without a new architecture: the algorithm has converged


def _algorithm(name: str):
    """pymoo's integer-variable recipe: SBX and polynomial mutation on floats, rounded."""
    return ALGORITHMS[name](
        pop_size=POPULATION,
        sampling=IntegerRandomSampling(),
        crossover=SBX(prob=1.0, eta=3.0, vtype=float, repair=RoundingRepair()),
        mutation=PM(prob=1.0, eta=3.0, vtype=float, repair=RoundingRepair()),
        eliminate_duplicates=True,
    )


def replay(
    name: str,
    rows: dict[str, Row],
    choices: Sequence[int],
    key: Callable[[list[int]], str],
    objectives,
    *,
    seed: int,
    evaluations: int,
) -> list[tuple[str, int, dict, str]]:
    """pymoo's ``name`` on a table (``rows`` by key) whose architectures are ``choices[i]``
    options per dimension and ``key(x)`` names the row of option indices ``x``, until
    ``evaluations`` distinct ones were evaluated (or it converged: ``PATIENCE``). Every
    candidate in the order asked: (complete or duplicate, epochs trained, metrics, key)."""
    sign = np.array([-1.0 if o.direction == "max" else 1.0 for o in objectives])
    problem = Problem(n_var=len(choices), n_obj=len(objectives), xl=0, xu=np.array(choices) - 1, vtype=int)
    algorithm = _algorithm(name)
    algorithm.setup(problem, seed=seed, termination=NoTermination(), verbose=False)
    records, seen, stale = [], set(), 0
    while len(seen) < evaluations and stale < PATIENCE:
        population = algorithm.ask()
        values, before = [], len(seen)
        for x in np.round(population.get("X")).astype(int).tolist():
            row = rows[key(x)]
            metrics, fresh = row.metrics(), row.key not in seen
            seen.add(row.key)
            records.append(("complete" if fresh else "duplicate", len(row.curve) if fresh else 0, metrics, row.key))
            if len(seen) == evaluations:  # the budget: the rest of this population is never trained
                return records
            values.append(sign * np.array([metrics[o.metric] for o in objectives]))
        Evaluator().eval(StaticProblem(problem, F=np.array(values)), population)
        algorithm.tell(infills=population)
        stale = stale + 1 if len(seen) == before else 0
    return records

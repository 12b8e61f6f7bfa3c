"""A sweep's progress as the live view shows it, and the states a trial ends in."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Progress:
    """What the live view shows; updated by the objective as trials run."""

    requested: int
    done: int = 0
    duplicate: int = 0
    failed: int = 0
    infeasible: int = 0
    pruned: int = 0
    running: dict[int, str] = field(default_factory=dict)  # trial number -> what it is doing
    front: list[dict] = field(default_factory=list)
    ended: list[dict] = field(default_factory=list)  # a row per trial ended, in order (Sweep.ended)
    stopped: str = ""  # why the sweep stopped before its budget was used up (search.sweep.budget)


# The states a trial ends in, and Progress's counter of each.
COUNTERS = dict(complete="done", duplicate="duplicate", infeasible="infeasible", pruned="pruned", failed="failed")

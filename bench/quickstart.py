"""The real quickstart with two samplers, side by side: each sweep trains into a store of
its own (``out/bench/quickstart/<sampler>``), then each front is read back from its MLflow
store (``main.py show``'s reading) and their hypervolumes are taken at one reference
point, the joint front's nadir moved out by 1% of its range.

    .venv/bin/python -m bench.quickstart nsga2 frontier   # two real sweeps: minutes
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from search.results import review
from search.results.pareto import hypervolume_at, nondominated

ROOT = Path(__file__).resolve().parents[1]


def compare(samplers: list[str], out: Path = ROOT / "out" / "bench" / "quickstart") -> list[dict]:
    fronts, rows = {}, []
    for sampler in samplers:
        store = out / sampler
        started = time.perf_counter()
        overrides = [f"search.sampler={sampler}", f"tracking.dir={store}"]
        command = [sys.executable, str(ROOT / "main.py"), "run", str(ROOT / "spaces" / "quickstart.yaml")]
        if subprocess.run([*command, *(a for o in overrides for a in ("-o", o))], cwd=ROOT).returncode:
            raise SystemExit(f"the {sampler} sweep failed")
        with review.opened(str(store), None) as uri:
            _, objectives, fronts[sampler] = review.front(uri, "quickstart")
        rows.append({"sampler": sampler, "wall_s": time.perf_counter() - started})
    joint = [r for front in fronts.values() for r in front]
    joint = [joint[i] for i in nondominated(joint, objectives)]
    reference = []
    for o in objectives:
        values = [r[o.metric] for r in joint]
        worst, best = (min(values), max(values)) if o.direction == "max" else (max(values), min(values))
        reference.append(worst - 0.01 * (best - worst))
    whole = hypervolume_at(joint, objectives, reference)
    for row in rows:
        hv = hypervolume_at(fronts[row["sampler"]], objectives, reference)
        row |= {"hypervolume": hv, "share_of_joint": hv / whole, "front": len(fronts[row["sampler"]])}
        print(row)
    print("reference", reference)
    return rows


if __name__ == "__main__":
    compare(sys.argv[1:] or ["nsga2", "frontier"])

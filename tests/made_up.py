"""A made-up table over the digits table's space, for tests of search logic: every distinct
draw, with costs growing with width, depth and tokens, and accuracy curves that saturate in
the epochs, are higher for larger models and wobble per draw, so that the front is not
trivial. Test data, not a measurement (the recorded table is spaces/tables)."""

import math
from pathlib import Path

from search.spec import load
from search.sweep.record import enumerate_draws
from search.tables.table import Row, Table

ROOT = Path(__file__).resolve().parents[1]
DIGITS_SPEC = ROOT / "spaces" / "tables" / "digits.yaml"
EPOCHS = 15


def _costs(model: dict) -> tuple[float, float]:
    tokens = (8 // model["patch_size"]) ** 2
    stages = [s for s in model["stages"] if s["depth"]]
    params = sum(s["depth"] * 12 * s["width"] ** 2 for s in stages)
    return float(params), params * tokens / 1e9


def digits_table():
    """(the digits table's spec, a made-up Table over its 640 draws)."""
    spec = load(DIGITS_SPEC)
    rows = []
    for i, (key, model, _train) in enumerate(enumerate_draws(spec)):
        params, gmacs = _costs(model)
        top = 0.80 + 0.15 * (1 - math.exp(-gmacs * 400)) + 0.02 * math.sin(i * 1.7)
        # the wobble in the early epochs reorders trials between rungs, as real curves do
        curve = tuple(top * (1 - math.exp(-(e + 1) / 4)) + 0.01 * math.sin(i * (e + 2)) for e in range(EPOCHS))
        rows.append(Row(key, f"draw {i}", {"params": params, "gmacs": gmacs}, curve, 1.0 + 1e3 * gmacs))
    return spec, Table("made-up", tuple(rows))

"""The committed digits table holds every row's zero-cost proxies, as a trial of that row
scores them (``runs.trial.run_trial``), and passes its integrity check."""

import dataclasses
import math
from pathlib import Path

import pytest

from runs import data as datasets
from runs.metrics import PROXY_METRICS
from runs.proxies import PROXY_BATCH
from runs.trial import run_trial
from search.spec import load as load_spec
from search.sweep import pipeline
from search.sweep.record import _train_one, add_proxies, enumerate_draws
from search.tables.table import Table, TableError, load, save

ROOT = Path(__file__).resolve().parents[3]
TABLE = ROOT / "spaces" / "tables" / "digits.jsonl.gz"
SPEC = ROOT / "spaces" / "tables" / "digits.yaml"
ALL = "search.proxies=[" + ", ".join(PROXY_METRICS) + "]"


@pytest.fixture(scope="module")
def table() -> Table:
    return load(TABLE)  # the SHA-256 of its rows checked against its header


@pytest.fixture(scope="module")
def spec():
    return load_spec(SPEC, [ALL])


def test_every_row_of_both_seeds_holds_every_proxy(table):
    assert len(table.rows) == 680 and {r.seed for r in table.rows} == {0, 1}
    for row in table.rows:
        assert {*PROXY_METRICS, "proxy_s"} <= set(row.costs), row.arch
        assert all(math.isfinite(row.costs[p]) for p in PROXY_METRICS)
    meta = table.meta["proxies"]
    assert meta["names"] == list(PROXY_METRICS) and meta["batch"] == PROXY_BATCH and meta["torch"]


class _Scored(Exception):
    """Stops a trial once its costs are measured: nothing trains."""


def _trial_scores(spec, row, data) -> dict[str, float]:
    """The proxies a trial of ``row``'s draw and seed measures, by run_trial itself."""
    model, train = next((m, t) for k, m, t in enumerate_draws(spec) if k == row.key)
    arch, cfg, line = pipeline.materialise(spec, pipeline.Draw(0, model, train, row.seed), data)
    assert line == row.arch
    costs = {}

    def stop(cost):
        costs.update(cost)
        raise _Scored

    with pytest.raises(_Scored):
        run_trial(arch, cfg, data, seed=row.seed, on_cost=stop, proxies=spec.search.proxies)
    return {p: costs[p] for p in PROXY_METRICS}


@pytest.mark.slow
def test_a_trial_of_a_row_scores_what_the_table_holds(table, spec):
    """A seed-1 row and the seed-0 row of the same architecture (the weights differ)."""
    data = datasets.load(spec.data, seed=spec.search.seed)
    again = next(r for r in table.rows if r.seed == 1)
    first = table.by_key(0)[again.key]
    for row in (first, again):
        assert _trial_scores(spec, row, data) == pytest.approx({p: row.costs[p] for p in PROXY_METRICS}, rel=1e-5)
    assert first.costs["naswot"] != again.costs["naswot"]


@pytest.mark.slow
def test_add_proxies_scores_a_table_in_place_and_refuses_a_row_of_another_space(table, spec, tmp_path):
    rows = tuple(dataclasses.replace(r, costs={"params": r.costs["params"]}) for r in table.rows[:3])
    path = tmp_path / "t.jsonl.gz"
    save(Table("t", rows, {"recorded": "then"}), path)
    scored = add_proxies(spec, path)
    assert load(path) == scored and scored.meta["recorded"] == "then"
    for mine, committed in zip(scored.rows, table.rows[:3], strict=True):
        expected = {p: committed.costs[p] for p in PROXY_METRICS}
        assert {p: mine.costs[p] for p in PROXY_METRICS} == pytest.approx(expected, rel=1e-5)
    save(Table("t", (dataclasses.replace(rows[0], arch="something else"),)), path)
    with pytest.raises(TableError, match="row 1 was recorded as something else"):
        add_proxies(spec, path)


def test_a_recorded_row_holds_the_proxies_its_spec_names():
    """What `record` writes for a row (one epoch here): search.proxies', no others."""
    spec = load_spec(SPEC, ["train.epochs=1", "search.proxies=[synflow, snip]"])
    key, model, train = next(enumerate_draws(spec))
    row = _train_one(spec, key, model, train, seed=0, threads=1)
    assert {"synflow", "snip", "proxy_s"} <= set(row["costs"]) and "naswot" not in row["costs"]
    assert len(row["curve"]) == 1

"""bench/proxies.py on a made-up table: its rows and columns, and that a proxy that orders
the architectures as their accuracy does is measured so."""

import math

import pytest

from bench import proxies
from runs.metrics import PROXY_METRICS
from search.tables.table import Row, Table
from tests.made_up import digits_table


@pytest.fixture(scope="module")
def made_up():
    """The made-up digits table with made-up proxies: naswot is the accuracy itself,
    grad_norm its opposite, the others wobble."""
    spec, table = digits_table()
    rows = []
    for i, r in enumerate(table.rows):
        made_up = {p: math.sin(i * (k + 1.3)) for k, p in enumerate(PROXY_METRICS)}
        made_up |= {"naswot": r.curve[-1], "grad_norm": -r.curve[-1]}
        rows.append(Row(r.key, r.arch, {**r.costs, **made_up}, r.curve, r.train_s, r.seed))
    return spec, Table(table.name, tuple(rows))


def test_correlations_give_a_row_per_score_with_its_columns(made_up):
    _, table = made_up
    rows = {r["score"]: r for r in proxies.correlations(table)}
    assert list(rows) == [*PROXY_METRICS, "params", "gmacs"]
    columns = {"table", "score", "architectures", "spearman_all", "kendall_all"}
    assert all(columns | {"spearman_within_gmacs", "kendall_within_gmacs"} == set(r) for r in rows.values())
    assert rows["naswot"]["kendall_all"] == pytest.approx(1.0) and rows["naswot"]["kendall_within_gmacs"] > 0.99
    assert rows["grad_norm"]["spearman_all"] == pytest.approx(-1.0)
    assert all(r["architectures"] == 640 for r in rows.values())


def test_predictors_compare_params_the_surrogate_and_the_surrogate_with_proxies(made_up):
    spec, table = made_up
    rows = proxies.predictors(table, spec, trained=(20,), seeds=1)
    names = [r["predictor"] for r in rows]
    assert names == ["+params", "surrogate", "surrogate+proxies", *(f"surrogate+{p}" for p in PROXY_METRICS)]
    columns = {"table", "predictor", "trained", "kendall_all", "kendall_within_cost", "gain_all", "better_splits"}
    assert all(set(r) == columns for r in rows)
    by = {r["predictor"]: r for r in rows}
    assert by["surrogate"]["gain_all"] == 0 and by["surrogate"]["better_splits"] == "0/1"
    perfect = by["surrogate+naswot"]  # a proxy that is the accuracy helps
    assert perfect["kendall_all"] > by["surrogate"]["kendall_all"] and perfect["better_splits"] == "1/1"
    assert perfect["gain_all"] == pytest.approx(perfect["kendall_all"] - by["surrogate"]["kendall_all"])

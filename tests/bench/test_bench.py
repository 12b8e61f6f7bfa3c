"""Each bench runs at a tiny size and writes well-formed CSV and PNG. No timing is checked."""

import csv
import re
from pathlib import Path

import pytest

import main
from bench.common import fit_exponent, predicted_over_cap, timed
from bench.conv import crossover_kernel

ROOT = Path(__file__).resolve().parents[2]
EXPECTED = {
    "scaling": {
        "scaling.csv": ["mixer", "tokens", "gmacs", "forward_ms", "step_ms", "peak_mb", "status"],
        "scaling_exponents.csv": ["mixer", "exponent"],
    },
    "conv": {
        "conv.csv": ["map", "kernel", "direct_ms", "fft_ms", "speedup"],
        "conv_crossover.csv": ["map", "crossover_kernel"],
    },
    "funnel": {"funnel.csv": ["layout", "step_ms", "peak_mb", "activation_mb", "step_saving_%", "activation_saving_%"]},
    "search": {
        "search.csv": ["table", "strategy", "seeds", "evaluations_to_0.99", "epochs_to_0.99", "final_hv_ratio"],
        "search_curves.csv": ["table", "strategy", "seed", "trials", "evaluations", "epochs", "hv_ratio", "regret"],
    },
    "amend": {
        "amend.csv": [
            "seed",
            "kept",
            "outside",
            "amended_evals_to_earlier_hv",
            "fresh_evals_to_earlier_hv",
            "warm_given",
            "warm_evals_to_cold_hv",
        ],
    },
    "trial": {
        "trial_loop.csv": ["loop", "images_per_s", "relative_throughput"],
        "trial_overhead.csv": ["backend", "trials", "sum_train_time_s", "overhead_per_trial_s"],
    },
}


SLOW_BENCHES = {"trial", "search", "funnel", "amend", "scaling"}  # 2-30 s each at --quick, under load


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow if n in SLOW_BENCHES else ()) for n in sorted(EXPECTED)]
)
def test_bench_quick_writes_csv_and_png(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main.main(["bench", name, "--quick", "--repeats", "1", "--out", str(tmp_path)]) == 0
    folder = tmp_path / name
    assert (folder / f"{name}.png").stat().st_size > 1000
    for file, columns in EXPECTED[name].items():
        rows = list(csv.DictReader((folder / file).open()))
        assert rows, file
        for row in rows:
            assert set(columns) <= set(row), (file, row.keys())
            assert row["threads"] and row["torch"] and row["device"] and row["repeats"] == "1"


def test_fit_exponent_recovers_a_power_law():
    xs = [64, 256, 1024, 4096]
    assert fit_exponent(xs, [3 * x**2 for x in xs]) == pytest.approx(2.0)
    assert fit_exponent(xs, [0.5 * x for x in xs]) == pytest.approx(1.0)


def test_hopeless_and_out_of_memory_configurations_are_dnf_not_crashes():
    assert predicted_over_cap(1e15, 1e10, 3, 60).startswith("DNF: predicted 300,000 s")
    assert predicted_over_cap(1e9, 1e10, 3, 60) == ""

    def oom():
        raise RuntimeError("DefaultCPUAllocator: not enough memory: you tried to allocate 1 TB")

    value, status = timed(oom, cap_s=10)
    assert value is None and status == "DNF: out of memory"


def test_crossover_is_the_kernel_from_which_fft_stays_faster():
    rows = [{"map": 8, "kernel": k, "speedup": s} for k, s in [(3, 0.5), (7, 1.1), (11, 0.9), (15, 1.5), (19, 2.0)]]
    assert crossover_kernel(rows, 8) == 15
    assert crossover_kernel([{"map": 8, "kernel": 3, "speedup": 0.5}], 8) is None


def test_sizes_cover_the_papers_settings():
    """The scaling bench times the settings its results are held against: the FiT spec's
    ViT (its dataset's image size at its patch), every "At NxN, patch P" that BENCHMARKS.md
    compares with the papers, and the rows of BENCHMARKS.md's table are the bench's own
    mixers and sizes (a changed SIZES leaves no stale table)."""
    from bench.scaling import MIXERS, SIZES
    from runs.data import geometry
    from search.spec import load

    fit = load(ROOT / "spaces" / "reproduce" / "fit.yaml", check_data=False)
    height, width = geometry(fit.data).image_size
    assert height == width and (height, fit.model["patch_size"]) in SIZES

    text = (ROOT / "BENCHMARKS.md").read_text()
    section = text.split("## Scaling with the token count")[1].split("\n## ")[0]
    compared = {(int(n.replace(",", "")), int(p)) for n, p in re.findall(r"At ([\d,]+)x\1, patch (\d+)", section)}
    assert len(compared) >= 2 and compared <= set(SIZES), compared
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in section.splitlines() if line.startswith("| ")]
    rows = [(c[0], int(c[1].replace(",", "")), int(c[2])) for c in cells if c[0] in MIXERS and len(c) > 2]
    assert rows == [(m, size, patch) for size, patch in SIZES for m in MIXERS]


def test_search_curves_count_evaluations_epochs_and_the_front_found():
    from bench.search import _curve, _reached
    from runs.metrics import Objective

    objectives = [Objective("val_accuracy", "max"), Objective("gmacs", "min")]
    ref = (0.0, 10.0)
    a, b = {"val_accuracy": 0.5, "gmacs": 2.0}, {"val_accuracy": 0.9, "gmacs": 6.0}
    exact = 0.5 * 8 + 0.4 * 4  # the front {a, b}: a staircase up to the reference
    records = [
        ("complete", 15, a, "a"),
        ("duplicate", 0, a, "a"),  # answered: no evaluation, no epochs
        ("pruned", 1, {**b, "val_accuracy": 0.2}, "b"),  # a front member pruned
        ("complete", 14, b, "b"),  # continued after all: the same evaluation, 14 more epochs
    ]
    rows = {r["trials"]: r for r in _curve(records, objectives, ref, exact, {"a", "b"})}
    assert [rows[i]["evaluations"] for i in (1, 2, 3, 4)] == [1, 1, 2, 2]
    assert [rows[i]["epochs"] for i in (1, 2, 3, 4)] == [15, 15, 16, 30]
    assert rows[1]["hv_ratio"] == pytest.approx(4.0 / exact) and rows[4]["hv_ratio"] == pytest.approx(1.0)
    assert rows[3]["front_pruned"] == 1 and rows[4]["front_pruned"] == 0 and rows[4]["front_found"] == 2
    curve = list(rows.values())
    assert _reached(curve, 0.99, "epochs") == 30 and _reached(curve, 0.5, "evaluations") == 1
    assert _reached(curve[:3], 0.99, "evaluations") == float("inf")


def test_a_sweep_cut_at_an_epoch_budget_keeps_only_what_fits():
    from bench.mo_asha_variants import _at_epochs
    from runs.metrics import Objective

    objectives = [Objective("val_accuracy", "max"), Objective("gmacs", "min")]
    a, b = {"val_accuracy": 0.5, "gmacs": 2.0}, {"val_accuracy": 0.9, "gmacs": 6.0}
    exact = 0.5 * 8 + 0.4 * 4
    records = [("complete", 15, a, "a"), ("pruned", 5, b, "b"), ("complete", 15, b, "c")]
    assert _at_epochs(records, 34, objectives, (0.0, 10.0), exact) == (pytest.approx(4.0 / exact), 20, 1)
    assert _at_epochs(records, 35, objectives, (0.0, 10.0), exact) == (pytest.approx(1.0), 35, 2)
    assert _at_epochs(records, 14, objectives, (0.0, 10.0), exact) == (0.0, 0, 0)


@pytest.mark.parametrize("name", ["pymoo-smsemoa", "pymoo-nsga2"])
def test_the_peers_search_a_spec_space_and_count_distinct_evaluations(name):
    """pymoo's algorithms on the digits space as bench search runs them: each vector of
    option indices is the draw a sweep would make of those parameters, a row of the table;
    a row evaluated before is a repeat (no epochs); the same seed, the same search."""
    from bench import peers
    from bench.search import _encoding
    from tests.made_up import EPOCHS, digits_table

    spec, table = digits_table()
    rows = table.by_key()
    choices, key = _encoding(spec)
    assert len({key([i % n for n in choices]) for i in range(max(choices))}) == max(choices)  # distinct draws
    records = peers.replay(name, rows, choices, key, spec.objectives, seed=0, evaluations=60)
    fresh = [r for r in records if r[0] == "complete"]
    assert len(fresh) == 60 == len({r[3] for r in fresh}) and all(r[1] == EPOCHS for r in fresh)
    first = {}
    for i, (state, epochs, metrics, row) in enumerate(records):
        first.setdefault(row, i)
        assert metrics == rows[row].metrics()
        assert (state == "complete") == (first[row] == i) and (epochs == 0) == (state == "duplicate")
    assert peers.replay(name, rows, choices, key, spec.objectives, seed=0, evaluations=60) == records
    assert peers.replay(name, rows, choices, key, spec.objectives, seed=1, evaluations=60) != records


def test_costing_compares_the_meta_count_with_the_cpu_count_on_the_same_architectures():
    from bench import costing

    row = costing.run("spaces/quickstart.yaml", archs=4, rounds=1, say=lambda _: None)
    assert row["architectures"] == 4 and row["differing_counts"] == 0
    assert row["meta_ms"] > 0 and row["cpu_ms"] > 0


def test_forecast_errors_are_read_on_the_architectures_not_fitted():
    from bench import forecast

    (row,) = forecast.run(rungs=(10,), fitted=(40,), splits=1, say=lambda _: None)
    assert set(row) >= {"map", "map+residual", "forest+rung", "forest", "blend"}
    assert 0 < row["map"] < row["forest"]  # after 10 of 15 epochs the rung value says more than the layout
    assert row["front_spreads"] > 1  # the front's members end above the map: more than a spread, for one


def test_store_times_built_and_copied_stores_that_mlflow_opens(monkeypatch):
    import os

    from bench import store

    monkeypatch.setenv("XDG_CACHE_HOME", "/nonexistent-before")
    row = store.run(stores=1, say=lambda _: None)  # each store made takes a run, or this raises
    assert row["stores"] == 1 and row["built_s"] > 0 and row["copied_s"] > 0
    assert os.environ["XDG_CACHE_HOME"] == "/nonexistent-before"  # the caller's, given back

"""The paired statistics of an ablation's arms, and its report (the arms themselves:
tests/search/spec/test_ablation.py)."""

import math

import numpy as np
import pytest
from scipy import stats

from search.results.stats import paired, report
from search.spec.ablation import Ablation, Arm


def test_paired_statistics_match_the_textbook_formulas():
    arm = [0.91, 0.88, 0.93, 0.90, 0.89]
    base = [0.87, 0.86, 0.90, 0.88, 0.88]
    d = np.array(arm) - np.array(base)
    n, mean, sd = len(d), d.mean(), d.std(ddof=1)
    half = stats.t.ppf(0.975, n - 1) * sd / math.sqrt(n)
    t_stat = mean / (sd / math.sqrt(n))
    p = 2 * stats.t.sf(abs(t_stat), n - 1)
    out = paired(arm, base)
    assert out["diff"] == pytest.approx(mean)
    assert (out["ci_low"], out["ci_high"]) == pytest.approx((mean - half, mean + half))
    assert out["p"] == pytest.approx(p)


def test_paired_statistics_with_one_seed_have_no_interval():
    out = paired([0.9], [0.8])
    assert out["diff"] == pytest.approx(0.1) and math.isnan(out["p"])


def test_report_means_diffs_and_refused_arms():
    ablation = Ablation(
        {}, "one-at-a-time", 2, (Arm("base", {}, {}, {}), Arm("b", {}, {}, {}), Arm("c", {}, {}, {}, "refused: no"))
    )
    trials = [
        {"arm": 0, "seed": 0, "acc": 0.5},
        {"arm": 0, "seed": 1, "acc": 0.7},
        {"arm": 1, "seed": 0, "acc": 0.6},
        {"arm": 1, "seed": 1, "acc": 0.9},
    ]
    rows = report(ablation.arms, trials, ["acc"])
    assert rows[0]["acc_mean"] == pytest.approx(0.6) and rows[0]["acc_std"] == pytest.approx(np.std([0.5, 0.7], ddof=1))
    assert rows[1]["acc_diff"] == pytest.approx(0.15)
    assert rows[2]["refused"] == "refused: no" and rows[2]["seeds"] == 0

"""An ablation over 3 factors with 3 seeds on digits, end to end."""

import csv
import io
import math
from pathlib import Path

import numpy as np
import pytest
import yaml
from scipy import stats

import main
from tests.e2e.conftest import runs_of

SPEC = {
    "name": "tiny",
    "data": {"dataset": "digits"},
    "model": {
        "patch_size": 2,
        "head": "cls",
        "stages": [{"depth": 1, "width": 16, "mlp_ratio": 2, "mixer": {"attention": {"heads": 2}}}],
    },
    "train": {"epochs": 1, "batch_size": 128, "lr": 0.003},
    "objectives": [{"val_accuracy": "max"}],
    "ablation": {
        "factors": {
            "model.stages[*].mixer": [{"attention": {"heads": 2}}, "fourier", "global_filter"],
            "model.positional": ["learned", "sincos"],
            "model.patch_size": [2, 4],
        },
        "design": "one-at-a-time",
        "seeds": 3,
    },
    "tracking": {"dir": "store"},
}


def test_ablation_report_equals_what_the_child_runs_say(workdir):
    path = workdir / "ablation.yaml"
    path.write_text(yaml.safe_dump(SPEC))
    assert main.main(["ablate", str(path)]) == 0
    client, parents, children = runs_of(workdir)
    assert len(parents) == 1 and len(children) == 4 * 3  # 5 arms, global_filter refused
    by_arm = {}
    for c in children:
        by_arm.setdefault(c.data.tags["archsweep.arm"], {})[int(c.data.tags["archsweep.seed"])] = c.data.metrics[
            "val_accuracy"
        ]
    assert all(len(seeds) == 3 for seeds in by_arm.values())
    text = Path(client.download_artifacts(parents[0].info.run_id, "ablation.csv", str(workdir))).read_text()
    rows = {r["arm"]: r for r in csv.DictReader(io.StringIO(text))}
    assert set(rows) == {
        "base",
        "stages[*].mixer=fourier",
        "stages[*].mixer=global_filter",
        "positional=sincos",
        "patch_size=4",
    }
    refused = rows["stages[*].mixer=global_filter"]
    assert refused["seeds"] == "0" and "cannot carry a class token" in refused["refused"]
    base = by_arm["base"]
    for name, seeds in by_arm.items():
        values = [seeds[s] for s in range(3)]
        assert float(rows[name]["val_accuracy_mean"]) == pytest.approx(np.mean(values))
        assert float(rows[name]["val_accuracy_std"]) == pytest.approx(np.std(values, ddof=1))
        if name != "base":
            diffs = [seeds[s] - base[s] for s in range(3)]
            assert float(rows[name]["val_accuracy_diff"]) == pytest.approx(np.mean(diffs))
            p = float(rows[name]["val_accuracy_p"])
            expected = stats.ttest_rel([seeds[s] for s in range(3)], [base[s] for s in range(3)]).pvalue
            assert (math.isnan(p) and math.isnan(expected)) or p == pytest.approx(expected)
    artifacts = {a.path for a in client.list_artifacts(parents[0].info.run_id)}
    assert {"ablation.csv", "ablation.md", "ablation.png"} <= artifacts


def test_ablate_refuses_a_spec_without_an_ablation(workdir, capsys):
    path = workdir / "plain.yaml"
    plain = {k: v for k, v in SPEC.items() if k != "ablation"}
    path.write_text(yaml.safe_dump(plain))
    assert main.main(["ablate", str(path)]) == 2
    assert "has no ablation section" in capsys.readouterr().err


def test_ablation_can_start_from_a_trial_of_a_finished_sweep(workdir, capsys):
    from tests.e2e.conftest import TINY, write_spec

    sweep = write_spec(workdir, search={"sampler": "random", "trials": 2, "seed": 3})
    assert main.main(["run", str(sweep)]) == 0
    _, _, trials = runs_of(workdir)
    base_trial = next(t for t in trials if t.data.tags["archsweep.trial"] == "1")
    spec = {
        "name": "from-trial",
        "data": TINY["data"],
        "train": {"epochs": 1},
        "ablation": {
            "base": {"spec": "tiny.yaml", "trial": 1},
            "factors": {"model.positional": ["learned", "none"]},
            "seeds": 1,
        },
        "tracking": {"dir": "store"},
    }
    path = workdir / "from-trial.yaml"
    path.write_text(yaml.safe_dump(spec))
    assert main.main(["ablate", str(path)]) == 0
    _, _, arms = runs_of(workdir, "from-trial")
    assert len(arms) == 2
    for arm in arms:  # the base trial's architecture, only the factor changed
        assert arm.data.params["model.stages.0.mixer"] == base_trial.data.params["model.stages.0.mixer"]
        assert arm.data.params["model.stages.0.width"] == base_trial.data.params["model.stages.0.width"]
        assert arm.data.params["train.lr"] == base_trial.data.params["train.lr"]
    assert {a.data.params["model.positional"] for a in arms} == {"learned", "none"}
    spec["ablation"]["base"]["trial"] = 9
    path.write_text(yaml.safe_dump(spec))
    assert main.main(["ablate", str(path)]) == 2
    assert "tiny has no completed trial 9; completed: [0, 1]" in capsys.readouterr().err

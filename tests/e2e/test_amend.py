"""An amended resume (search.sweep.amend) with real training: a sweep continued after its
space gained a choice, a wider range and a new dimension, then lost a choice and part of a
range; a change that makes results incomparable is refused; a crash in the middle of an
amendment is undone by running again."""

from __future__ import annotations

import copy
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

import main
from runs.journal import journal_storage, read_study
from search.results import pareto
from search.spec import load
from search.sweep import amend, study
from tests.e2e.conftest import TINY, runs_of, write_spec

SPEC = copy.deepcopy(TINY)
SPEC["train"] = {"epochs": 1, "batch_size": 64, "lr": 0.005}
SPEC["model"]["stages"][0]["mixer"] = {"choice": ["fourier", {"attention": {"heads": 2}}]}
SPEC["search"]["trials"] = 3


def stage(spec: dict) -> dict:
    return spec["model"]["stages"][0]


def trials(folder) -> list:
    return read_study(folder / "store", "tiny").get_trials(deepcopy=False)


def run(folder, spec: dict) -> int:
    return main.main(["run", str(write_spec(folder, **spec))])


def test_a_sweep_continues_through_amendments_of_its_space(workdir, monkeypatch):
    assert run(workdir, SPEC) == 0

    # A new choice, a wider range and a new dimension (earlier trials had its default, pre).
    wider = copy.deepcopy(SPEC)
    stage(wider)["mixer"]["choice"].append("global_filter")
    stage(wider)["width"] = {"choice": [8, 16, 24]}
    stage(wider)["block"] = {"choice": ["pre", "post"]}
    wider["search"]["trials"] = 6
    # A crash after the study was rebuilt and before the parent run took the new spec...
    with monkeypatch.context() as patched:
        patched.setattr(
            "search.sweep.base.Sweep._record_amendment", lambda self: (_ for _ in ()).throw(RuntimeError("crash"))
        )
        with pytest.raises(RuntimeError, match="crash"):
            run(workdir, wider)
    # ... is undone by running again: the same amendment, recorded once.
    assert run(workdir, wider) == 0
    after = trials(workdir)  # six architectures trained, and the repeats drawn on the way (uncounted)
    assert [t.number for t in after] == list(range(len(after))) and sum(study.counted(t) for t in after) == 6
    assert all(study.state_of(t) in ("complete", "duplicate") for t in after)  # a repeat is PRUNED to Optuna
    assert all(t.params["model.stages.0.block"] == "pre" for t in after[:3])  # the default they trained with
    archive = amend.archive_name("tiny", load(write_spec(workdir, **SPEC)).resolved)
    kept = optuna.load_study(study_name=archive, storage=journal_storage(workdir / "store/optuna/tiny.journal"))
    assert [t.values for t in kept.trials] == [t.values for t in after[:3]]  # the earlier study, kept whole

    # A removed choice and a narrowed range: earlier trials of either are outside the space.
    narrower = copy.deepcopy(wider)
    stage(narrower)["mixer"]["choice"] = [{"attention": {"heads": 2}}, "global_filter"]
    stage(narrower)["width"] = {"choice": [8, 24]}
    narrower["search"]["trials"] = 8
    assert run(workdir, narrower) == 0
    final = trials(workdir)
    client, parents, children = runs_of(workdir)
    assert sum(study.counted(t) for t in final) == 8
    assert len(children) == len(final) == len({c.data.tags["archsweep.trial"] for c in children})
    assert {c.info.status for c in [*children, *parents]} == {"FINISHED"}
    by_number = {int(c.data.tags["archsweep.trial"]): c for c in children}
    drawn = {
        n: (c.data.params["model.stages.0.mixer"], c.data.params["model.stages.0.width"]) for n, c in by_number.items()
    }
    earlier = len(after)
    expected_outside = {
        n for n, (mixer, width) in drawn.items() if n < earlier and (mixer == "fourier" or width == "16")
    }
    assert expected_outside  # the seeds drew some, or this checks nothing
    outside = {t.number for t in final if study.state_of(t) == "outside"}
    assert outside == expected_outside
    assert all(t.state == TrialState.FAIL for t in final if t.number in outside)  # no sampler breeds from them
    assert all("archsweep.outside_space" in by_number[n].data.tags for n in outside)
    assert not any("archsweep.outside_space" in by_number[n].data.tags for n in set(by_number) - outside)
    assert all(drawn[n][0] != "fourier" and drawn[n][1] != "16" for n in range(earlier, len(final)))  # inside
    # The front, recomputed from the runs: every trial that trained to completion, outside ones included.
    objectives = load(write_spec(workdir, **narrower)).objectives
    complete = [
        {"trial": n, **{o.metric: c.data.metrics[o.metric] for o in objectives}}
        for n, c in by_number.items()
        if c.data.tags["archsweep.state"] == "complete"
    ]
    front = {complete[i]["trial"] for i in pareto.nondominated(complete, objectives)}
    assert front == {n for n, c in by_number.items() if c.data.tags.get("archsweep.pareto") == "true"}
    record = client.download_artifacts(parents[0].info.run_id, "amendments.txt", str(workdir))
    text = Path(record).read_text()
    assert text.count("## amendment ") == 2 and "global_filter" in text and "outside the amended space" in text

    # The removed choice back: its trials return (their runs untagged); the narrowed width keeps its own out.
    readmitted = copy.deepcopy(narrower)
    stage(readmitted)["mixer"]["choice"].append("fourier")
    assert run(workdir, readmitted) == 0  # nothing to train: the amendment alone
    still = {n for n in outside if drawn[n][1] == "16"}
    assert still != outside and {t.number for t in trials(workdir) if study.state_of(t) == "outside"} == still
    tagged = {
        int(c.data.tags["archsweep.trial"]) for c in runs_of(workdir)[2] if "archsweep.outside_space" in c.data.tags
    }
    assert tagged == still

    # Another number of epochs makes earlier results incomparable: refused, nothing written.
    longer = copy.deepcopy(narrower)
    longer["train"]["epochs"] = 2
    longer["search"]["trials"] = 9
    assert run(workdir, longer) == 2
    assert len(trials(workdir)) == len(final) == len(runs_of(workdir)[2])


def test_a_sweep_warm_starts_from_an_earlier_one(workdir):
    """The earlier sweep's front, inside the new space, given to the sampler without
    training when the training matches; queued to train first when it does not."""
    assert run(workdir, SPEC) == 0
    earlier = {t.number: t for t in trials(workdir)}
    related = copy.deepcopy(SPEC)
    related["name"] = "warm"
    stage(related)["mixer"]["choice"].append("global_filter")
    related["search"] |= {"trials": 2, "warm_start": {"from": "tiny", "take": "front"}}
    assert run(workdir, related) == 0
    warm = read_study(workdir / "store", "warm").get_trials(deepcopy=False)
    given = [t for t in warm if "warm_from" in t.user_attrs]
    _, parents, children = runs_of(workdir, "warm")
    front = {
        int(c.data.tags["archsweep.trial"]) for c in runs_of(workdir)[2] if c.data.tags["archsweep.pareto"] == "true"
    }
    assert sorted(t.user_attrs["warm_from"] for t in given) == [f"tiny:t{n:02d}" for n in sorted(front)]
    assert all(t.values == earlier[int(t.user_attrs["warm_from"][-2:])].values for t in given)
    # the budget is what this sweep trains (its repeats answered besides)
    assert sum(study.counted(t) for t in warm) == 2 and len(children) == len(warm) - len(given)
    assert "given as completed" in parents[0].data.tags["archsweep.warm_start"]

    # Other training settings: the same architectures, queued to be trained first.
    longer = copy.deepcopy(related)
    longer["name"], longer["train"] = "longer", {**related["train"], "epochs": 2}
    assert run(workdir, longer) == 0
    queued = read_study(workdir / "store", "longer").get_trials(deepcopy=False)
    assert [t.user_attrs.get("warm_queued") for t in queued[: len(given)]] == [t.user_attrs["warm_from"] for t in given]
    assert len(queued) == 2 and all(t.state == TrialState.COMPLETE for t in queued)  # trained, and counted

"""The Python API (api.py) against the command line: the same specs, the report that
``validate --json`` prints, and a finished sweep read back as ``main.py run`` wrote it
to MLflow."""

import json

import pytest
import torch
import yaml

import api
import main
from tests.e2e.conftest import TINY, runs_of

# A replayed sweep of the bundled digits table: nothing trains, seconds.
DIGITS = ["search.replay=digits.jsonl.gz", "search.trials=3", "tracking.dir=store"]


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_a_spec_from_a_file_a_bundled_name_or_a_dict_is_one_spec(workdir):
    by_path = api.load(api.SPACES / "quickstart.yaml", ["search.trials=4"])
    by_name = api.load("quickstart", ["search.trials=4"])
    as_dict = api.load(yaml.safe_load((api.SPACES / "quickstart.yaml").read_text()), ["search.trials=4"])
    assert by_name.resolved == by_path.resolved == as_dict.resolved
    assert by_name.search.trials == 4
    assert list(workdir.iterdir()) == []  # the dict's passing file is gone
    assert api.spec_path("tables/digits") == api.SPACES / "tables" / "digits.yaml"
    with pytest.raises(api.SpecError) as refused:
        api.load({**TINY, "search": {"trials": 0}})
    assert any("search.trials" in str(issue) for issue in refused.value.issues)
    with pytest.raises(api.SpecError):
        api.load("no-such-space")


def test_validate_is_the_report_validate_json_prints(workdir, capsys):
    assert main.main(["validate", "quickstart", "--json", "--samples", "3"]) == 0
    printed = json.loads(capsys.readouterr().out)
    report = api.validate("quickstart", samples=3)
    assert json.loads(json.dumps(report.to_json(), default=str)) == printed
    assert report.name == "quickstart" and len(report.samples) == 3


@pytest.mark.slow
def test_a_sweep_the_command_ran_reads_back_as_mlflow_holds_it(workdir):
    assert main.main(["run", "tables/digits", *(a for o in DIGITS for a in ("-o", o))]) == 0
    sweep = api.open_sweep("store")
    _, [parent], children = runs_of(workdir, "digits-table")
    assert (sweep.run_id, sweep.name, sweep.experiment) == (parent.info.run_id, parent.info.run_name, "digits-table")
    assert sweep.objectives == ["val_accuracy:max", "gmacs:min"]
    by_id = {c.info.run_id: c for c in children}
    assert sorted(sweep.trials["run_id"]) == sorted(by_id)
    assert set(sweep.trials["state"]) == {"complete"}
    assert set(sweep.front["run_id"]) == {i for i, c in by_id.items() if c.data.tags["archsweep.pareto"] == "true"}
    for row in sweep.front.itertuples():
        assert row.val_accuracy == by_id[row.run_id].data.metrics["val_accuracy"]
        assert row.trial == int(by_id[row.run_id].data.tags["archsweep.trial"])
    assert sweep.hypervolume == parent.data.metrics["hypervolume"] > 0
    again = api.run("tables/digits", DIGITS)  # resumed: every trial kept, nothing run twice
    assert again.run_id == sweep.run_id and again.trials["run_id"].tolist() == sweep.trials["run_id"].tolist()


@pytest.mark.slow
def test_run_a_dict_spec_and_load_a_front_model_as_export_gives_it(workdir):
    spec = {**TINY, "search": {"sampler": "random", "trials": 2, "seed": 0}}
    sweep = api.run(spec, ["tracking.models=pareto"])
    assert len(sweep.trials) == 2 and len(sweep.front) >= 1
    run_id = sweep.front["run_id"].iloc[0]
    model = sweep.load_model(run_id)
    assert main.main(["export", run_id, "--out", "exported", "--store", "store"]) == 0
    probe = torch.load(workdir / "exported" / "probe.pt", weights_only=True)
    with torch.no_grad():
        torch.testing.assert_close(model(probe["x"]).float(), probe["logits"])
    assert sweep.load_model(int(sweep.front["trial"].iloc[0])).state_dict().keys() == model.state_dict().keys()

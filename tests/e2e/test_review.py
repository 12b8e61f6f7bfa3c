"""Reviewing a sweep as a person does, on the quickstart's results: the MLflow UI in a
real headless Chromium (Debian's package, driven by Playwright), the terminal's ``show``,
and a Pareto model taken away with ``export`` and used in a fresh process. Screenshots
go to the test's tmp folder, or to the folder ``ARCHSWEEP_SHOTS`` names, to keep them
(``ARCHSWEEP_SHOTS=docs`` retakes the README's)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

import main
from tests.e2e.conftest import runs_of

ROOT = Path(__file__).resolve().parents[2]
SHOTS_ENV = "ARCHSWEEP_SHOTS"  # a folder to keep the screenshots in (default: the test's tmp_path)
MODEL_TAG = "archsweep.model"


def _main(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "main.py"), *args], cwd=cwd, capture_output=True, text=True, timeout=300
    )


def _chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.skip("no Chromium: `make test` installs Debian's chromium package when apt-get can run as root")
    return path


def test_the_sweep_reads_in_the_mlflow_ui(quickstart_ui, quickstart, tmp_path):
    ui = quickstart_ui
    shots = Path(os.environ.get(SHOTS_ENV) or tmp_path)
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is in requirements-dev.txt")
    client, parents, children = runs_of(quickstart, "quickstart", "out")
    parent = parents[0]
    experiment = parent.info.experiment_id
    front = [c for c in children if c.data.tags.get("archsweep.pareto") == "true"]
    behind = [c for c in children if c.data.tags.get("archsweep.pareto") == "false"]
    assert front and behind
    shots.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=_chromium(), args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1500, "height": 950})
        page.goto(f"{ui}/#/experiments/{experiment}/runs")
        assistant = page.get_by_role("button", name="Close")  # MLflow's chat panel: half the page
        with contextlib.suppress(sync_api.Error):
            assistant.click(timeout=10_000)
        page.get_by_text("Model training", exact=True).click()  # the UI's mode for runs and models
        # The parent run, named after the sweep, and its nested trials behind its expander.
        sync_api.expect(page.get_by_text(parent.info.run_name, exact=True).first).to_be_visible(timeout=60_000)
        page.locator("button[data-component-id*='runnamecellrenderer']").first.click()  # the "+" of the parent
        for child in children[:8]:  # the table shows the first rows; enough to know they are there
            sync_api.expect(page.get_by_text(child.info.run_name, exact=True).first).to_be_visible()
        page.get_by_role("button", name="Columns").click()  # the sweep's metrics as columns, as a person sets them
        columns = page.get_by_placeholder("Search columns")
        for name in ("Dataset", "Source", "val_accuracy", "gmacs", "params"):  # two off, three on
            columns.fill(name)
            page.get_by_text(name, exact=True).last.click()  # the menu's entry (the table's header comes first)
        page.keyboard.press("Escape")
        sync_api.expect(page.get_by_role("columnheader", name="val_accuracy").first).to_be_visible()
        page.screenshot(path=str(shots / "review-runs.png"))
        # The Pareto tag as a filter: only the front's trials remain.
        search = page.get_by_test_id("search-box")
        search.fill("tags.`archsweep.pareto` = 'true'")
        search.press("Enter")
        for child in behind:  # gone from the table (the front's parent stays, as their context)
            sync_api.expect(page.get_by_text(child.info.run_name, exact=True)).to_have_count(0, timeout=30_000)
        for child in front:  # each with its logged model in the Models column
            sync_api.expect(page.get_by_text(child.info.run_name, exact=True).first).to_be_visible()
            model = f"quickstart-t{int(child.data.tags['archsweep.trial']):02d}"
            sync_api.expect(page.get_by_text(model, exact=True).first).to_be_visible()
        page.screenshot(path=str(shots / "review-pareto-filter.png"))
        # The Pareto plot among the parent run's artifacts, drawn by the browser.
        page.goto(f"{ui}/#/experiments/{experiment}/runs/{parent.info.run_id}/artifacts/pareto.png")
        image = page.locator("img[src^='blob:']").first  # the viewer fetches the file into a blob
        sync_api.expect(image).to_be_visible(timeout=60_000)
        from PIL import Image

        png = Image.open(client.download_artifacts(parent.info.run_id, "pareto.png", str(quickstart)))
        drawn = image.evaluate("img => [img.complete, img.naturalWidth, img.naturalHeight]")
        assert drawn == [True, *png.size]  # the browser decoded our plot, pixel size for pixel size
        page.screenshot(path=str(shots / "review-pareto-plot.png"))
        # The HTML report in the artifact viewer: every front run named in its front table.
        page.get_by_text("report.html", exact=True).click()
        report = page.frame_locator("iframe").first
        sync_api.expect(report.locator("h1")).to_have_text("quickstart", timeout=60_000)
        first_table = report.locator("table").first
        for child in front:
            sync_api.expect(first_table.get_by_text(child.data.tags["archsweep.arch"], exact=True)).to_have_count(1)
        sync_api.expect(report.locator("svg").first).to_be_visible()
        page.screenshot(path=str(shots / "review-report.png"))
        browser.close()


def test_show_prints_the_front_with_run_ids(quickstart, capsys):
    _, _, children = runs_of(quickstart, "quickstart", "out")
    store = str(quickstart / "out")
    assert main.main(["show", "--store", store]) == 0
    shown = capsys.readouterr().out
    for child in children:
        on_front = child.data.tags.get("archsweep.pareto") == "true"
        assert (child.info.run_id in shown) == on_front, child.info.run_name
    assert main.main(["show", "quickstrat", "--store", store]) == 2
    assert "did you mean 'quickstart'" in capsys.readouterr().err


_FRESH = """
import json, sys
import mlflow.pytorch, torch
folder, data = sys.argv[1], torch.load(sys.argv[2])
model = mlflow.pytorch.load_model(folder)
probe = torch.load(folder + "/probe.pt")
with torch.no_grad():
    same = torch.allclose(model(probe["x"]), probe["logits"], rtol=1e-4, atol=1e-5)  # any thread count
    hits = sum((model(data["x"][i : i + 512]).argmax(1) == data["y"][i : i + 512]).sum().item()
               for i in range(0, len(data["y"]), 512))
print(json.dumps({"same_logits": same, "accuracy": hits / len(data["y"]), "module": type(model).__module__,
                  "blocks_from": sys.modules["blocks"].__file__}))
"""


def test_an_exported_pareto_model_works_in_a_fresh_process(quickstart, tmp_path):
    import torch.nn.functional as F
    from sklearn.datasets import load_digits

    from blocks import build, from_dict
    from blocks.cost import LATENCY_SPREAD_LIMIT, LATENCY_WAIT_LIMIT, count_params
    from runs import data as datasets
    from search.spec import load

    _, _, children = runs_of(quickstart, "quickstart", "out")
    front = [c for c in children if c.data.tags.get("archsweep.pareto") == "true"]
    assert front and all(MODEL_TAG in c.data.tags for c in front)  # every Pareto trial has its model
    assert not [c for c in children if c.data.tags.get("archsweep.pareto") != "true" and MODEL_TAG in c.data.tags]
    best = max(front, key=lambda c: c.data.metrics["val_accuracy"])
    for child in front:  # its latency says how far it can be trusted, as a metric and a tag
        m = child.data.metrics
        busy = m["latency_spread"] > LATENCY_SPREAD_LIMIT or m["latency_wait"] > LATENCY_WAIT_LIMIT
        assert m["latency_unreliable"] == busy and child.data.tags["archsweep.latency_unreliable"] == str(busy).lower()
    out = tmp_path / "winner"
    exported = _main("export", best.info.run_id, "--out", str(out), "--store", str(quickstart / "out"), cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr

    # In a fresh process outside the project (no archsweep on its path): MLflow's loader, on
    # digits prepared the plain way (pixel values / 16, the sweep's split, resized as runs.data
    # resizes): no statistics of the training split, the model normalises its input itself.
    spec = load(str(ROOT / "spaces" / "quickstart.yaml"))
    digits = load_digits()
    x = torch.tensor(digits.images / 16, dtype=torch.float32).unsqueeze(1)  # (N, 1, 8, 8) in [0, 1]
    _, _, val_x, val_y = datasets._split(x, torch.tensor(digits.target), spec.data.val_fraction)
    val_x = F.interpolate(val_x, size=(spec.data.image_size,) * 2, mode="bilinear", align_corners=False)
    torch.save({"x": val_x, "y": val_y}, tmp_path / "val.pt")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    fresh = subprocess.run(
        [sys.executable, "-c", _FRESH, str(out), str(tmp_path / "val.pt")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert fresh.returncode == 0, fresh.stderr[-3000:]
    result = json.loads(fresh.stdout.strip().splitlines()[-1])
    assert result["same_logits"]  # the logits the trial's own process gave these images
    assert result["accuracy"] == best.data.metrics["val_accuracy"]  # what the sweep measured
    assert result["module"] == "blocks.model" and result["blocks_from"].startswith(str(out))

    # The YAML alone rebuilds the architecture, its input statistics too; with weights.pt, the same model.
    arch = from_dict(yaml.safe_load((out / "arch.yaml").read_text()))
    assert arch.input_mean is not None and len(arch.input_std) == 1
    rebuilt = build(arch)
    assert count_params(rebuilt)[0] == best.data.metrics["params"]
    rebuilt.load_state_dict(torch.load(out / "weights.pt", weights_only=True))
    probe = torch.load(out / "probe.pt", weights_only=True)
    with torch.no_grad():
        assert torch.equal(rebuilt.eval()(probe["x"]), probe["logits"])


def test_export_refuses_without_side_effects(quickstart, tmp_path, capsys):
    _, _, children = runs_of(quickstart, "quickstart", "out")
    behind = next(c for c in children if c.data.tags.get("archsweep.pareto") == "false")
    front = next(c for c in children if c.data.tags.get("archsweep.pareto") == "true")
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "mine.txt").write_text("keep")
    cases = [
        (behind.info.run_id, tmp_path / "a", "not on the Pareto front"),
        ("0" * 32, tmp_path / "b", "error: no run"),
        (front.info.run_id, taken, "not an empty folder"),
    ]
    for run_id, out, why in cases:
        assert main.main(["export", run_id, "--out", str(out), "--store", str(quickstart / "out")]) == 2
        error = capsys.readouterr().err
        assert why in error and len(error.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"] and [p.name for p in taken.iterdir()] == ["mine.txt"]

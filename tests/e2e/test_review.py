"""Reviewing a sweep as a person does: the MLflow UI in a real headless Chromium (Debian's
package, driven by Playwright), and the terminal's ``show``. Screenshots are kept under
out/test-artifacts/ (the README's comes from here)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import main
from runs.tracking import free_port
from tests.e2e.conftest import runs_of, wait_for_health, write_spec

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "out" / "test-artifacts"


def _chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.skip("no Chromium: `make test` installs Debian's chromium package when apt-get can run as root")
    return path


@pytest.fixture
def ui(workdir):
    """A finished 6-trial sweep and `main.py ui` serving its store on 127.0.0.1."""
    spec = write_spec(workdir, search={"sampler": "random", "trials": 6, "seed": 0})
    assert main.main(["run", str(spec)]) == 0
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, str(ROOT / "main.py"), "ui", "--store", "store", "--port", str(port)],
        cwd=workdir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_health(url, server, "the UI")
        yield url, workdir
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def test_the_sweep_reads_in_the_mlflow_ui(ui):
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is in requirements-dev.txt")
    url, workdir = ui
    client, parents, children = runs_of(workdir)
    parent = parents[0]
    experiment = parent.info.experiment_id
    front = [c for c in children if c.data.tags["archsweep.pareto"] == "true"]
    behind = [c for c in children if c.data.tags["archsweep.pareto"] == "false"]
    assert front and behind
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=_chromium(), args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1500, "height": 950})
        page.goto(f"{url}/#/experiments/{experiment}/runs")
        # The parent run, named after the sweep, and its nested trials behind its expander.
        sync_api.expect(page.get_by_text(parent.info.run_name, exact=True).first).to_be_visible(timeout=60_000)
        page.locator("button[data-component-id*='runnamecellrenderer']").first.click()  # the "+" of the parent
        for child in children:
            sync_api.expect(page.get_by_text(child.info.run_name, exact=True).first).to_be_visible()
        page.screenshot(path=str(SHOTS / "review-runs.png"))
        # The Pareto tag as a filter: only the front's trials remain.
        search = page.get_by_test_id("search-box")
        search.fill("tags.`archsweep.pareto` = 'true'")
        search.press("Enter")
        for child in behind:  # gone from the table (the front's parent stays, as their context)
            sync_api.expect(page.get_by_text(child.info.run_name, exact=True)).to_have_count(0, timeout=30_000)
        for child in front:
            sync_api.expect(page.get_by_text(child.info.run_name, exact=True).first).to_be_visible()
        page.screenshot(path=str(SHOTS / "review-pareto-filter.png"))
        # The Pareto plot among the parent run's artifacts, drawn by the browser.
        page.goto(f"{url}/#/experiments/{experiment}/runs/{parent.info.run_id}/artifacts/pareto.png")
        image = page.locator("img[src^='blob:']").first  # the viewer fetches the file into a blob
        sync_api.expect(image).to_be_visible(timeout=60_000)
        from PIL import Image

        png = Image.open(client.download_artifacts(parent.info.run_id, "pareto.png", str(workdir)))
        drawn = image.evaluate("img => [img.complete, img.naturalWidth, img.naturalHeight]")
        assert drawn == [True, *png.size]  # the browser decoded our plot, pixel size for pixel size
        page.screenshot(path=str(SHOTS / "review-pareto-plot.png"))
        browser.close()

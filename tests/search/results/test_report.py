"""What a sweep reports: the HTML report (read back with the standard library's HTML
parser), and the lines it prints when the output is not a terminal."""

from html.parser import HTMLParser

import matplotlib

matplotlib.use("Agg")
import io

import matplotlib.pyplot as plt
import yaml
from rich.console import Console

from search.results.progress import Progress
from search.results.report import html
from search.results.view import LiveView, tally
from search.spec import load


class Page(HTMLParser):
    """Tables as lists of rows (cells' text, the row's class), the text of <pre>, tags seen."""

    def __init__(self) -> None:
        super().__init__()
        self.tables, self.pre, self.tags = [], [], []
        self._cell = self._row = None

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self._row = ([], dict(attrs).get("class"))
        elif tag in ("td", "th"):
            self._cell = ""
        elif tag == "pre":
            self.pre.append("")

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self._row[0].append(self._cell)
            self._cell = None
        elif tag == "tr":
            self.tables[-1].append(self._row)

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data
        elif self.tags and self.tags[-1] == "pre":
            self.pre[-1] += data


def _spec(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "name": "r",
                "description": "a <b>bold</b> claim",
                "data": {"dataset": "synthetic", "image_size": 8, "num_classes": 4, "samples": 64, "channels": 1},
                "model": {"patch_size": 2, "stages": [{"depth": 1, "width": 8, "mixer": "fourier"}]},
                "objectives": [{"val_accuracy": "max"}, {"gmacs": "min"}],
            }
        )
    )
    return load(str(path))


def test_front_all_trials_and_spec_survive_any_text(tmp_path):
    spec = _spec(tmp_path)
    trials = [
        {"trial": 0, "state": "complete", "arch": "a > b", "val_accuracy": 0.9, "gmacs": 2.0, "params": 10.0},
        {"trial": 1, "state": "complete", "arch": "<script>x</script>", "val_accuracy": 0.5, "gmacs": 1.0},
        {"trial": 2, "state": "failed", "arch": "c & d", "reason": "RuntimeError: <oops>"},
        {"trial": 3, "state": "complete", "arch": "e", "val_accuracy": 0.4, "gmacs": 3.0},
    ]
    front = [trials[1], trials[0]]
    figure = plt.figure()
    svg = io.StringIO()
    figure.savefig(svg, format="svg")
    plt.close(figure)
    page = Page()
    page.feed(html(spec, front, trials, {"trials_complete": 3.0}, svg.getvalue()))
    assert "script" not in page.tags and "b" not in page.tags  # text stays text
    assert "svg" in page.tags
    front_table, all_table = page.tables
    header, *rows = front_table
    assert header[0][:3] == ["trial", "val_accuracy", "gmacs"]
    assert [r[0][0] for r in rows] == ["0", "1"]  # best first by the first objective
    assert rows[1][0][-1] == "<script>x</script>"
    header, *rows = all_table
    assert [r[0][0] for r in rows] == ["0", "1", "2", "3"]
    assert [r[1] for r in rows] == ["front", "front", None, None]
    failed = dict(zip(header[0], rows[2][0], strict=True))
    assert failed["state"] == "failed" and failed["reason"] == "RuntimeError: <oops>" and failed["gmacs"] == ""
    assert yaml.safe_load(page.pre[-1]) == dict(spec.resolved)


ENDED = [
    {"trial": 0, "state": "complete", "arch": "[fourier x1 @8]", "reason": "", "metrics": {"val_accuracy": 0.5}},
    {"trial": 1, "state": "infeasible", "arch": "a", "reason": "breaks params <= 10", "metrics": {"params": 99.0}},
    {"trial": 2, "state": "duplicate", "arch": "[fourier x1 @8]", "reason": "same draw as t00", "duplicate_of": 0},
    {"trial": 3, "state": "failed", "arch": "b", "reason": "oom: out of memory"},
    {"trial": 4, "state": "infeasible", "arch": "c", "reason": "breaks params <= 10"},
    {"trial": 5, "state": "infeasible", "arch": "d", "reason": "refused by the builder: stages[0].width"},
]


def test_without_a_terminal_each_ended_trial_is_a_line_once(tmp_path):
    objectives = _spec(tmp_path).objectives
    for terminal in (False, True):
        out = io.StringIO()
        view, progress = LiveView(objectives, Console(file=out, force_terminal=terminal, width=40)), Progress(6)
        for row in ENDED[:3]:
            progress.ended.append({"metrics": {}, **row})
            view.update(progress)
            view.update(progress)  # a progress update without a new trial prints nothing
        if terminal:  # the live display shows it instead
            assert out.getvalue() == ""
            continue
        assert out.getvalue().splitlines() == [  # whole lines, the architecture's brackets as they are
            "t00 complete: val_accuracy 0.5 | [fourier x1 @8]",
            "t01 infeasible: breaks params <= 10 | a",
            "t02 duplicate: same draw as t00 | [fourier x1 @8]",
        ]


def test_the_final_tally_counts_states_and_groups_reasons():
    assert tally(ENDED) == [
        "6 trials: 1 complete, 1 duplicate, 3 infeasible, 1 failed",
        "3 infeasible: breaks params <= 10 (2), refused by the builder: stages[0].width (1)",
        "1 failed: oom: out of memory (1)",
        "1 duplicate (the same draw again, answered without training, not counted in search.trials): t02 = t00",
    ]


def test_the_live_view_says_why_a_sweep_stops_short_of_its_budget(tmp_path):
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=200)
    view, progress = LiveView(_spec(tmp_path).objectives, console), Progress(20)
    view.update(progress)
    console.print(view)
    assert "stopping" not in out.getvalue() and "20 requested, repeats not counted" in out.getvalue()
    progress.stopped = (
        "the space is exhausted: all 8 architectures were tried; 12 of the requested 20 trials had nothing"
    )
    console.print(view)
    assert f"stopping: {progress.stopped}" in out.getvalue()

"""The sweep's Optuna journal on disk: a last record cut short (a crash or a full disk
mid-write) is set aside and the sweep goes on from the whole records; a damaged line
before the last is a located refusal; and a repeated draw stands once on Optuna's front.

The sweeps are replayed (``search.replay``): the local backend's whole path, MLflow
included, in about half a second a run, and nothing trains."""

from __future__ import annotations

import collections
import shutil
from datetime import UTC, datetime
from pathlib import Path

import optuna
import pytest
from mlflow import MlflowClient
from optuna.trial import TrialState

import main
import runs.journal
from runs.journal import DamagedJournal, journal_path, mend_journal, read_study
from runs.metrics import Objective
from search.results import pareto
from search.sweep import study
from search.tables.table import save
from tests.made_up import DIGITS_SPEC, digits_table

NAME = "digits-table"  # the spec's name, and its MLflow experiment's
TRIALS = 4  # in the sweep whose journal is cut
CUTS = 20  # byte offsets of its last record


@pytest.fixture(scope="module")
def table(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("table") / "made-up.jsonl.gz"
    save(digits_table()[1], path)
    return path


def _run(table: Path, store: Path, trials: int, *overrides: str) -> int:
    args = ["run", str(DIGITS_SPEC)]
    for o in (f"search.replay={table}", f"tracking.dir={store}", "tracking.models=none", f"search.trials={trials}"):
        args += ["-o", o]
    for o in overrides:
        args += ["-o", o]
    return main.main(args)


@pytest.fixture(scope="module")
def swept(table, tmp_path_factory) -> Path:
    """A finished replayed sweep's store (copied, never changed, by each test)."""
    store = tmp_path_factory.mktemp("swept") / "store"
    assert _run(table, store, TRIALS) == 0
    return store


def _copy(swept: Path, folder: Path) -> tuple[Path, Path]:
    """(a copy of the swept store in ``folder``, its journal)."""
    store = Path(shutil.copytree(swept, folder / "store"))
    return store, journal_path(store, NAME)


def _last_line_start(data: bytes) -> int:
    return data.rstrip(b"\n").rfind(b"\n") + 1


def _plain_study(journal: Path, name: str = NAME) -> optuna.Study:
    """The study as Optuna's own reader reads it (what optuna-dashboard and users open)."""
    backend = optuna.storages.journal.JournalFileBackend(str(journal))
    return optuna.load_study(study_name=name, storage=optuna.storages.JournalStorage(backend))


def _runs(store: Path):
    """(parent runs, trial runs) of the sweep's MLflow experiment."""
    client = MlflowClient(f"sqlite:///{store / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(NAME)
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    parents = [r for r in runs if r.data.tags.get("archsweep.trial") == "parent"]
    return parents, [r for r in runs if r.data.tags.get("archsweep.trial") != "parent"]


# -- a torn last record ------------------------------------------------------------------


def _torn_variants() -> list[tuple[str, int | bytes]]:
    """What a crash leaves at the end: the last record cut after k of its bytes (``CUTS``
    offsets from its first byte to all but its newline, spread evenly), or garbage in its
    place: bytes that are not UTF-8 ending a line, a full disk's zeros."""
    cuts = [("cut", i) for i in range(CUTS)]
    return [*cuts, ("garbage", b"\xff\xfe{not utf-8\n"), ("garbage", b"\x00" * 512)]


@pytest.mark.slow  # a resumed sweep for each of CUTS + 2 variants
@pytest.mark.parametrize(("kind", "how"), _torn_variants(), ids=lambda v: str(v)[:12])
def test_a_journal_whose_last_record_was_cut_is_continued_from_its_whole_records(
    table, swept, tmp_path, capsys, kind, how
):
    store, journal = _copy(swept, tmp_path)
    whole = journal.read_bytes()
    start = _last_line_start(whole)
    if kind == "cut":  # k bytes of the last record kept, 1 <= k <= all but its newline
        record = whole[start:]
        keep = 1 + how * (len(record) - 2) // (CUTS - 1)
        torn = record[:keep]
    else:
        torn = how
    journal.write_bytes(whole[:start] + torn)
    before = read_study(store, NAME).get_trials(deepcopy=False)  # the torn line left out
    capsys.readouterr()

    assert _run(table, store, TRIALS + 1) == 0
    err = capsys.readouterr().err
    kept = list(journal.parent.glob(f"{journal.name}.torn-*"))
    assert len(kept) == 1 and kept[0].read_bytes() == torn  # set aside, whole
    said = [line for line in err.splitlines() if "last record was cut short" in line]
    assert len(said) == 1 and kept[0].name in said[0] and f"({len(torn)} bytes" in said[0], err
    assert journal.read_bytes().startswith(whole[:start])  # the whole records, as they were

    after = {t.number: t for t in _plain_study(journal).trials}  # Optuna's own reader
    for t in before:
        if t.state.is_finished():
            again = after[t.number]
            assert (again.state, again.values, again.params, again.user_attrs) == (
                t.state,
                t.values,
                t.params,
                t.user_attrs,
            )
    assert sum(study.counted(t) for t in after.values()) == TRIALS + 1
    parents, children = _runs(store)
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    per_trial = collections.Counter(r.data.tags["archsweep.trial"] for r in children)
    assert max(per_trial.values()) == 1, per_trial  # no trial run twice in MLflow
    ids = [t.user_attrs["mlflow_run_id"] for t in after.values() if "mlflow_run_id" in t.user_attrs]
    assert len(set(ids)) == len(ids) and set(ids) <= {r.info.run_id for r in children}
    assert not [r for r in children if r.info.status == "RUNNING"]


def test_each_torn_record_is_kept_in_a_file_of_its_own(swept, tmp_path, monkeypatch):
    """Never over an earlier one, even at the same instant."""
    _, journal = _copy(swept, tmp_path)
    instant = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    monkeypatch.setattr(runs.journal, "datetime", type("Frozen", (), {"now": staticmethod(lambda tz: instant)}))
    whole = journal.read_bytes()
    for torn in (b'{"op_code":', b'{"op_code":4,"wor'):
        journal.write_bytes(whole + torn)
        assert "continuing from its" in mend_journal(journal)
        assert journal.read_bytes() == whole
    kept = sorted(journal.parent.glob(f"{journal.name}.torn-*"))
    assert [p.name.split(".torn-")[1] for p in kept] == ["20260102T030405000000Z", "20260102T030405000000Z-2"]
    assert [p.read_bytes() for p in kept] == [b'{"op_code":', b'{"op_code":4,"wor']
    assert mend_journal(journal) is None  # whole: nothing to do


@pytest.mark.parametrize("tail", [b'{"op_code":6,"wor', b"\xff\xfe\x00garbage\n", b"[1, 2]\n"])
def test_a_reader_leaves_out_a_last_line_that_is_no_record(swept, tmp_path, tail):
    """Optuna's own reader skips a last line without its newline, but raises on one that
    is not UTF-8: archsweep's reader (``show``, ``validate``, warm starts) skips either."""
    store, journal = _copy(swept, tmp_path)
    expected = [(t.number, t.state, t.values) for t in read_study(store, NAME).trials]
    journal.write_bytes(journal.read_bytes() + tail)
    assert [(t.number, t.state, t.values) for t in read_study(store, NAME).trials] == expected
    assert journal.read_bytes().endswith(tail)  # a reader mends nothing


# -- a damaged line before the last ------------------------------------------------------


def _damage_middle(journal: Path, how: str) -> int:
    """Line 10 of the journal made garbage, with records after it; its line number."""
    lines = journal.read_bytes().splitlines(keepends=True)
    if how == "not utf-8":
        lines[9] = b"\xff\xfe\x00\x00garbage\n"
    else:  # what Optuna's writer made of a torn record: the next record written onto it
        lines[9] = lines[9][: len(lines[9]) // 2] + lines[10]
    journal.write_bytes(b"".join(lines))
    return 10


@pytest.mark.parametrize("how", ["not utf-8", "a record written onto a torn one"])
def test_a_damaged_line_before_the_last_is_a_located_refusal(table, swept, tmp_path, capsys, how):
    store, journal = _copy(swept, tmp_path)
    number = _damage_middle(journal, how)
    damaged = journal.read_bytes()
    with pytest.raises(DamagedJournal, match=f"damaged at line {number} "):
        read_study(store, NAME)
    capsys.readouterr()

    assert _run(table, store, TRIALS + 1) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in captured.err + captured.out, captured.err
    assert lines[0].startswith(f"error: the Optuna journal {journal.resolve()} is damaged at line {number} ")
    assert "restore it from a copy" in lines[0]
    assert journal.read_bytes() == damaged  # refused: nothing written, nothing set aside
    assert not list(journal.parent.glob("*.torn-*"))


# -- a repeated draw on Optuna's front ---------------------------------------------------

# Four draws of the digits table's space (depth 1 or 2, width 32 or 64; the second stage
# left out, so its choices make no difference): a sweep of 12 trials repeats them, and
# stops when all four were tried.
TINY_SPACE = [
    "name=tiny",
    "model.embedding=patch",
    "model.patch_size=2",
    "model.positional=learned",
    "model.stages[0].mixer=fourier",
    "model.stages[1].depth=0",
    "search.sampler=random",
]


@pytest.mark.slow
def test_a_repeated_draw_stands_once_on_optunas_front_and_uses_none_of_the_budget(table, tmp_path):
    store = tmp_path / "store"
    assert _run(table, store, 12, *TINY_SPACE) == 0
    found = _plain_study(journal_path(store, "tiny"), "tiny")
    client = MlflowClient(f"sqlite:///{store / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("tiny").experiment_id], max_results=1000)
    runs = {int(r.data.tags["archsweep.trial"]): r for r in runs if r.data.tags["archsweep.trial"] != "parent"}
    complete = [n for n, r in runs.items() if r.data.tags["archsweep.state"] == "complete"]
    objectives = [Objective("val_accuracy", "max"), Objective("gmacs", "min")]
    front = [complete[i] for i in pareto.nondominated([runs[n].data.metrics for n in complete], objectives)]
    assert sorted(t.number for t in found.best_trials) == sorted(front)  # each once, no repeat
    assert {n for n, r in runs.items() if r.data.tags.get("archsweep.pareto") == "true"} == set(front)
    repeats = [t for t in found.trials if study.state_of(t) == "duplicate"]
    assert len(repeats) >= 6 and all(t.state == TrialState.PRUNED and t.values is None for t in repeats)
    assert all(runs[t.number].data.tags["archsweep.duplicate_of"] == str(t.user_attrs["duplicate_of"]) for t in repeats)

    assert sum(study.counted(t) for t in found.trials) == 4  # the four architectures; the repeats are free
    assert _run(table, store, 14, *TINY_SPACE) == 0  # the space is exhausted: nothing is drawn again
    assert len(_plain_study(journal_path(store, "tiny"), "tiny").trials) == len(found.trials)

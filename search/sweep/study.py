"""The Optuna study a sweep owns: where its journal lives, how it is opened, its sampler
and pruner, and what a trial's state in it means to archsweep.

A study holds every trial with the user attributes ``arch``, ``mlflow_run_id``,
``metrics`` and ``state`` (see ``state_of``); a sampled trial's ``draw``, and
``duplicate_of`` when that draw had been trained before. Trials refused before training
have no accuracy to report: they are told PRUNED with their constraint violations, so
Optuna's plots and ``best_trials`` leave them out while TPE still learns from them
(``search.sweep.pipeline.tell``); a repeat is told PRUNED too, so that Optuna's front
does not hold it beside its original (``state_of``: duplicate, ``counted``: yes).

The journal is Optuna's, read and written through ``journal_storage``: a last record a
crash cut short is set aside before a sweep writes (``mend_journal``), and a damaged line
before the last is a located refusal (``DamagedJournal``), not a decoding traceback.
"""

from __future__ import annotations

import json
import os
import sys
import time
import warnings
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

from search.spec import Spec
from search.spec.space import Choice, FloatRange, IntRange, dimensions, param
from search.sweep import moasha

optuna.logging.set_verbosity(optuna.logging.ERROR)  # failures are recorded and shown by the view


def journal_path(store: Path | str, name: str) -> Path:
    """The journal of sweep ``name`` in ``store`` (``name`` is an identifier: see
    ``search.spec.schema.sweep_name``)."""
    return Path(store) / "optuna" / f"{name}.journal"


class StoreError(Exception):
    """A sweep that must not open as things are; the message says why and what to do
    (``main`` prints it as ``error: ...``, exit 2). Raised and imported from
    ``search.sweep.preflight``, which holds the refusals; defined here, because a damaged
    journal is one too (``DamagedJournal``), and preflight imports this module."""


class DamagedJournal(StoreError):
    """A journal with a damaged line before its last: the records after it cannot be
    trusted to continue from, so it is neither read nor written."""


def journal_storage(path: Path, *, owned: bool = False) -> optuna.storages.JournalStorage:
    """The Optuna journal at ``path``. Optuna guards its writes with a symlink
    ``<journal>.lock -> <journal path as given>``: given a relative path, the link dangles, so
    the lock a killed process leaves is never judged stale and the next writer spins forever.
    Hence the absolute path (a stale lock is then broken after Optuna's 30 s). ``owned``: this
    process is the journal's only writer (the local sweep's lock, the Ray driver) and is not
    writing yet, so a lock there can only be a dead process's: removed at once, and a last
    record a dead process cut short is set aside (``mend_journal``) before anything is
    appended to it. DamagedJournal (a StoreError) when a line before the last is damaged."""
    path = path.resolve()
    if owned:
        Path(f"{path}.lock").unlink(missing_ok=True)
        said = mend_journal(path)
        if said:
            print(f"warning: {said}", file=sys.stderr)
    return optuna.storages.JournalStorage(_JournalFile(str(path)))


def read_study(store: Path | str, name: str) -> optuna.Study:
    """A finished or running sweep's study, for reading (no lock is taken): a last record
    cut short is left out, as one being written; DamagedJournal for a damaged line before it."""
    return optuna.load_study(study_name=name, storage=journal_storage(journal_path(store, name)))


# -- the journal on disk -----------------------------------------------------------------
# Optuna appends one JSON object per line. A crash or a full disk mid-write leaves the last
# line cut short; Optuna's reader skips it, but its writer appends the next record onto it,
# and from then on that line, no longer last, stops every reader with a JSONDecodeError.


def _record(line: bytes) -> dict | None:
    """The journal record on ``line``, or None when it holds none: cut short (no newline),
    not UTF-8, not JSON, or not an Optuna operation."""
    if not line.endswith(b"\n"):
        return None
    try:
        record = json.loads(line.decode("utf-8"))
    except ValueError:  # UnicodeDecodeError, JSONDecodeError
        return None
    return record if isinstance(record, dict) and "op_code" in record else None


def _damaged(path: str, number: int, offset: int, line: bytes) -> DamagedJournal:
    """The refusal of a journal whose line ``number`` (0-based) is damaged and not last."""
    try:
        json.loads(line.decode("utf-8"))
        what = "not an Optuna record"
    except UnicodeDecodeError:
        what = "not UTF-8 text"
    except ValueError:
        what = "not JSON"
    return DamagedJournal(
        f"the Optuna journal {path} is damaged at line {number + 1} (byte {offset}: {what}) and has"
        " records after it, so it cannot be read or continued: restore it from a copy; or move it"
        f" aside (mv {path} {path}.damaged) and give the spec a new name (name: in the spec, or"
        " -o name=NEW) to start the sweep afresh"
    )


class _JournalFile(optuna.storages.journal.JournalFileBackend):
    """Optuna's journal file, read as Optuna reads it (incrementally, from the offsets it
    knows) but for damage: a last line that holds no record is skipped (a writer may be
    writing it; Optuna would raise on one that is not UTF-8), and a damaged line with lines
    after it is a located DamagedJournal (Optuna: a bare JSONDecodeError or UnicodeDecodeError)."""

    def read_logs(self, log_number_from: int):
        offsets = self._log_number_offset  # Optuna's own: line number -> byte offset
        start = log_number_from if log_number_from in offsets else 0
        with open(self._file_path, "rb") as f:
            f.seek(offsets[start])
            size = os.fstat(f.fileno()).st_size - offsets[start]  # what is there as reading begins
            damaged = None
            for number, line in enumerate(f, start=start):
                size -= len(line)
                if size < 0:  # appended while this was read: the next read takes it
                    break
                if damaged is not None:
                    raise _damaged(self._file_path, *damaged)
                record = _record(line)
                if record is None:
                    damaged = (number, offsets[number], line)
                    continue
                offsets[number + 1] = offsets[number] + len(line)
                if number >= log_number_from:
                    yield record


def mend_journal(path: Path) -> str | None:
    """Before a writer appends to the journal at ``path`` (alone: under the sweep's lock): a
    last record cut short by a crash or a full disk is moved to a file beside it
    (``<journal>.torn-<UTC time>``, never overwritten) and cut off the journal, so that the
    next record starts a line of its own. Says so in a line; None when the journal is whole.
    DamagedJournal when a damaged line has records after it (not a torn end: refused)."""
    if not path.exists() or _record(_last_line(path)) is not None:
        return None  # whole: the common case, without reading it all
    reader = _JournalFile(str(path))
    whole = sum(1 for _ in reader.read_logs(0))
    end, size = reader._log_number_offset[whole], path.stat().st_size
    if end == size:
        return None
    aside = _keep_aside(path, end)
    with open(path, "r+b") as f:
        f.truncate(end)
        os.fsync(f.fileno())
    return (
        f"the journal {path}'s last record was cut short ({size - end} bytes, kept in {aside.name});"
        f" continuing from its {whole} whole records"
    )


def _last_line(path: Path) -> bytes:
    """The journal's last line (its last record, or what is left of it), read from the end."""
    with open(path, "rb") as f:
        end = f.seek(0, os.SEEK_END)
        start, window = end, 1 << 16
        while start > 0:
            start = max(0, end - window)
            f.seek(start)
            tail = f.read(end - start)
            newline = tail.rfind(b"\n", 0, len(tail) - 1)
            if newline >= 0:
                return tail[newline + 1 :]
            window *= 2
        return tail if end else b""


def _keep_aside(path: Path, end: int) -> Path:
    """The bytes of ``path`` from ``end`` on, copied to a new file beside it and on disk
    before the journal is cut (a crash in between leaves them in both, never in neither)."""
    with open(path, "rb") as f:
        f.seek(end)
        torn = f.read()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    for k in range(1, 1000):
        aside = path.with_name(f"{path.name}.torn-{stamp}" + (f"-{k}" if k > 1 else ""))
        try:
            with open(aside, "xb") as out:  # x: never over an earlier one
                out.write(torn)
                out.flush()
                os.fsync(out.fileno())
            break
        except FileExistsError:
            continue
    else:
        raise FileExistsError(f"{aside}: too many torn records kept at {stamp}")
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)  # its name too
    finally:
        os.close(folder)
    return aside


def directions(spec: Spec) -> list[str]:
    return ["maximize" if o.direction == "max" else "minimize" for o in spec.objectives]


def create(spec: Spec, storage, *, sampler=None, pruner=None, load: bool = True) -> optuna.Study:
    """The sweep's study in ``storage``, its objectives named (see ``name_metrics``)."""
    study = optuna.create_study(
        study_name=spec.name,
        storage=storage,
        directions=directions(spec),
        sampler=sampler,
        pruner=pruner,
        load_if_exists=load,
    )
    name_metrics(study, spec)
    return study


def name_metrics(study: optuna.Study, spec: Spec) -> None:
    """The objectives' names on the study, so that Optuna's own tools (optuna-dashboard,
    ``study.trials_dataframe()``) show ``val_accuracy`` and ``gmacs``, not "Objective 0"."""
    names = [o.metric for o in spec.objectives]
    if study.metric_names != names:
        with warnings.catch_warnings():  # experimental in Optuna 5, stable in use since 3.2
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(names)


# -- sampler and pruner ------------------------------------------------------------------


def _grid_space(spec: Spec) -> dict[str, list]:
    space = {}
    for path, dim in {**dimensions(spec.model, "model"), **dimensions(spec.train, "train")}.items():
        path = param(path)
        if isinstance(dim, Choice):
            space[path] = dim.labels()
        elif isinstance(dim, IntRange):
            space[path] = list(range(dim.low, dim.high + 1, dim.step))
        elif isinstance(dim, FloatRange):
            n = round((dim.high - dim.low) / dim.step)
            space[path] = [dim.low + i * dim.step for i in range(n + 1)]
    return space


def make_sampler(spec: Spec, drawn: int = 0) -> optuna.samplers.BaseSampler:
    """The spec's sampler for a study that has ``drawn`` trials already. A sampler seeded
    anew draws what it drew the first time: a resumed sweep would draw its first trials
    again (and answer them as duplicates), so the seed takes in how far the sweep got."""
    s = spec.search
    seed = s.seed if not drawn else int(np.random.SeedSequence([s.seed, drawn]).generate_state(1)[0])
    return sampler(s.sampler, seed, s.trials, grid=_grid_space(spec) if s.sampler == "grid" else None)


def sampler(name: str, seed: int, trials: int, *, grid: dict | None = None) -> optuna.samplers.BaseSampler:
    """Sampler ``name`` (``search.sampler``) for a sweep of ``trials`` trials: what sweeps,
    replays and ``bench search`` all use. Feasibility reaches it through
    ``trial.set_constraint`` (pipeline.tell)."""
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(population_size=max(4, min(50, trials // 3)), seed=seed)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "gp":  # Gaussian process, log expected hypervolume improvement
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=min(10, trials // 2 or 1))
    if name == "grid":
        return optuna.samplers.GridSampler(grid, seed=seed)
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(10, trials // 2 or 1))


def make_pruner(spec: Spec) -> optuna.pruners.BasePruner:
    """Optuna's pruner for the local backend (the Ray backend uses Tune's schedulers)."""
    if spec.search.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1)
    if spec.search.pruner == "asha":  # asynchronous successive halving, as on the ray backend
        s = spec.search
        first, eta = s.halving()
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=first, reduction_factor=eta)
    if spec.search.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1)
    return optuna.pruners.NopPruner()  # mo_asha is archsweep's own: rungs()


RUNGS_ATTR = "rungs"  # a trial's MO-ASHA records: [[epochs, arrival, vector], ...]


def rung_entry(epochs: int, vector) -> list:
    """One rung record: the epochs, when the trial reached them (its arrival among all
    rungs, for a resumed sweep's order) and its objective vector there."""
    return [epochs, time.time_ns(), [float(v) for v in vector]]


def record_rung(trial, epochs: int, vector) -> None:
    """The vector a trial reached a rung with, kept on the trial (a resumed sweep reads it)."""
    trial.set_user_attr(RUNGS_ATTR, [*trial.user_attrs.get(RUNGS_ATTR, []), rung_entry(epochs, vector)])


def rung_records(study: optuna.Study) -> list[tuple[int, str, list[float]]]:
    """Every recorded (epochs, trial key, vector), in the order the trials reached them."""
    found = [
        (arrival, epochs, str(t.number), vector)
        for t in study.get_trials(deepcopy=False)
        for epochs, arrival, vector in t.user_attrs.get(RUNGS_ATTR, [])
    ]
    return [(epochs, key, vector) for _, epochs, key, vector in sorted(found)]


def max_epochs(spec: Spec) -> int:
    """The most epochs a trial of ``spec`` trains (a range's top)."""
    epochs = spec.train.get("epochs", 10)
    return int(max(epochs.values()) if hasattr(epochs, "values") else epochs)


def rungs(spec: Spec, earlier: optuna.Study | None = None) -> moasha.Rungs | None:
    """MO-ASHA's rung book for ``spec`` (``pruner: mo_asha``), else None: rung epochs
    min_epochs x reduction_factor^k below the trials' epochs, judged on every objective.
    With ``earlier`` (a resumed sweep's study), the rungs its trials reached, in order."""
    s = spec.search
    if s.pruner != "mo_asha":
        return None
    directions = [o.direction for o in spec.objectives]
    first, eta = s.halving()
    book = moasha.Rungs(moasha.rung_epochs(first, eta, max_epochs(spec)), directions, eta)
    for done, key, vector in rung_records(earlier) if earlier is not None else ():
        book.restore(key, done, vector)
    return book


# -- what a trial's state means ----------------------------------------------------------


OUTSIDE_ATTR = "outside"  # why an earlier trial is outside an amended space (search.sweep.amend)


def state_of(trial: FrozenTrial) -> str:
    """complete, duplicate, infeasible, pruned, failed; interrupted (a failure without a
    reason: it runs again); outside (an earlier trial an amended space cannot draw);
    running or waiting."""
    if trial.state in (TrialState.COMPLETE, TrialState.PRUNED):
        return trial.user_attrs.get("state", trial.state.name.lower())
    if trial.state == TrialState.FAIL:
        if OUTSIDE_ATTR in trial.user_attrs:
            return "outside"
        return "failed" if "fail_reason" in trial.user_attrs else "interrupted"
    return trial.state.name.lower()


def counted(trial: FrozenTrial) -> bool:
    """Trials that use up the budget: finished ones, failures with a reason, repeats; not
    trials interrupted by Ctrl-C or a killed process (those are run again)."""
    if "warm_from" in trial.user_attrs:  # an earlier sweep's result, given without training
        return False
    if trial.state in (TrialState.COMPLETE, TrialState.PRUNED):
        return True
    return trial.state == TrialState.FAIL and "fail_reason" in trial.user_attrs


def feasible(study: optuna.Study) -> list[FrozenTrial]:
    """The trials that trained and keep every constraint: the ones a front is made of."""
    return feasible_of(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL)))


def feasible_of(trials: list[FrozenTrial]) -> list[FrozenTrial]:
    """``feasible`` of a list of trials: complete ones, and earlier trials outside an
    amended space that completed (FAIL to the samplers, which must not breed from them;
    the objectives and constraints they met are unchanged)."""
    return [
        t
        for t in trials
        if state_of(t) == "complete" or (state_of(t) == "outside" and t.user_attrs.get("was") == "complete")
    ]

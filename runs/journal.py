"""The Optuna journal a sweep's study lives in (``<store>/optuna/<name>.journal``), read
and written as Optuna reads and writes it but for damage: a last record a crash cut short
is set aside before a sweep writes (``mend_journal``), and a damaged line before the last
is a located refusal (``DamagedJournal``), not a decoding traceback."""

from __future__ import annotations

import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path

import optuna

from runs.store import StoreError


def journal_path(store: Path | str, name: str) -> Path:
    """The journal of sweep ``name`` in ``store`` (``name`` is an identifier: see
    ``search.spec.schema.sweep_name``)."""
    return Path(store) / "optuna" / f"{name}.journal"


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

"""The sweep's store (``tracking.dir``) as one folder that can be moved, copied and shared.

MLflow records where artifacts are as absolute ``file://`` URIs (of experiments, runs,
logged models and model versions), so a store moved elsewhere would point at its old
place. The store keeps the artifacts URI its records were written for (the table
``archsweep_store``) and, opened at another place, rewrites them to where it now is.
A store this process cannot write (read-only, another user's) is read through a copy
of its database, rewritten the same way. No mlflow import here: plain SQLite.

A new store's database starts as a copy of the user's template for the installed MLflow
(an empty store as MLflow's sixty-odd migrations leave it, 2-7 s to build), rewritten by
the same means to where the new store is.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import sqlite3
import stat
import tempfile
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path


class StoreError(Exception):
    """A sweep that must not open as things are, its store (MLflow's database, the journal,
    the folders) being what it is; the message says why and what to do (``main`` prints it
    as ``error: ...``, exit 2)."""


LOCK = ".archsweep.lock"
# Every column in which MLflow 3 records an artifact location (a table may be absent in
# an older schema). Tags, params and metrics hold none.
LOCATIONS = (
    ("experiments", "artifact_location"),
    ("runs", "artifact_uri"),
    ("logged_models", "artifact_location"),
    ("model_versions", "source"),
    ("model_versions", "storage_location"),
)


def artifacts_uri(store: Path) -> str:
    """Where the store's artifacts are now, as MLflow records it."""
    return (store / "artifacts").resolve().as_uri()


@contextmanager
def locked(store: Path) -> Iterator[None]:
    """The store's lock, held while its database is created or rewritten: one process at
    a time (flock ends with the process, even a killed one)."""
    with open(store / LOCK, "a") as file:
        fcntl.flock(file, fcntl.LOCK_EX)
        yield


def writable(store: Path) -> bool:
    return os.access(store, os.W_OK) and os.access(store / "mlflow.db", os.W_OK)


def check_intact(db: Path) -> None:
    """Raise ``sqlite3.DatabaseError`` when ``db`` is damaged (SQLite's quick_check: its
    pages and indexes, in a fraction of a second for a sweep's store), before a sweep or
    a reader relies on it: a damaged page would otherwise surface mid-sweep.

    Opened for writing where the store can be written: a process killed inside a write
    leaves a hot journal, which SQLite rolls back on opening, and which a read-only
    connection refuses as "attempt to write a readonly database"."""
    mode = "rw" if writable(db.parent) else "ro"
    with closing(sqlite3.connect(f"{db.resolve().as_uri()}?mode={mode}", uri=True)) as con:
        found = [row[0] for row in con.execute("PRAGMA quick_check(1)")]
    if found != ["ok"]:
        raise sqlite3.DatabaseError(f"{db}: database disk image is malformed (SQLite's quick_check)")


def record(db: Path, uri: str) -> None:
    """Note in a new database that its records were written for artifacts at ``uri``."""
    with closing(sqlite3.connect(db)) as con, con:
        _write_record(con, uri)


def relocate(db: Path, uri: str) -> bool:
    """Rewrite the artifact locations recorded under the store's former artifacts URI to
    ``uri`` in one transaction; True when the store had moved. The caller holds the
    store's lock (or owns ``db``, a private copy)."""
    with closing(sqlite3.connect(db, timeout=60, isolation_level=None)) as con:
        old = _recorded(con)
        if old == uri:
            return False
        con.execute("BEGIN IMMEDIATE")  # waits for a writer; nothing reads a half-rewritten store
        try:
            if old is not None:
                tables = {row[0] for row in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
                for table, column in LOCATIONS:
                    if table in tables:
                        con.execute(
                            f"UPDATE {table} SET {column} = ? || substr({column}, ?)"
                            f" WHERE {column} = ? OR substr({column}, 1, ?) = ?",
                            (uri, len(old) + 1, old, len(old) + 1, old + "/"),
                        )
            _write_record(con, uri)
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
    return old is not None


@contextmanager
def reading(store: Path) -> Iterator[Path]:
    """The store's database to read from: itself (rewritten first if the store moved) or,
    where the store cannot be written, a rewritten copy that lives as long as the context."""
    db = store / "mlflow.db"
    check_intact(db)
    if writable(store):
        with locked(store):
            relocate(db, artifacts_uri(store))
        yield db
        return
    with tempfile.TemporaryDirectory(prefix="archsweep-store-") as folder:
        copy = Path(folder) / "mlflow.db"
        # SQLite's backup: a consistent copy even of a database opened read-only.
        source = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)
        with closing(source), closing(sqlite3.connect(copy)) as target:
            source.backup(target)
        relocate(copy, artifacts_uri(store))
        yield copy


def _recorded(con: sqlite3.Connection) -> str | None:
    """The artifacts URI the records were written for; for a store made before it was
    noted, the one MLflow gave its default experiment (``<artifacts>/0``)."""
    try:
        row = con.execute("SELECT value FROM archsweep_store WHERE key = 'artifacts'").fetchone()
    except sqlite3.OperationalError:  # no such table
        row = None
    if row is not None:
        return row[0]
    row = con.execute("SELECT artifact_location FROM experiments WHERE experiment_id = 0").fetchone()
    if row is None or not row[0].startswith("file://") or not row[0].endswith("/0"):
        return None
    return row[0][: -len("/0")]


def _write_record(con: sqlite3.Connection, uri: str) -> None:
    con.execute("CREATE TABLE IF NOT EXISTS archsweep_store (key TEXT PRIMARY KEY, value TEXT)")
    con.execute("INSERT OR REPLACE INTO archsweep_store VALUES ('artifacts', ?)", (uri,))


TEMPLATE_LIMIT = 16 * 2**20  # an empty store's database is under 1 MB


def template_path(mlflow_version: str) -> Path:
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "archsweep" / f"mlflow-{mlflow_version}-empty.db"


def from_template(mlflow_version: str, side: Path, uri: str) -> bool:
    """Write into ``side`` an empty database for artifacts at ``uri``, copied from the
    template; False (and no ``side``) where there is no sound one: a regular file within
    TEMPLATE_LIMIT, intact, holding the schema's version, the default experiment and the
    record of its artifacts URI, and nothing else."""
    try:
        fd = os.open(template_path(mlflow_version), os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return False
    try:
        with os.fdopen(fd, "rb") as source:
            found = os.fstat(source.fileno())
            if not stat.S_ISREG(found.st_mode) or found.st_size > TEMPLATE_LIMIT:
                return False
            with open(side, "wb") as target:
                shutil.copyfileobj(source, target)
        check_intact(side)
        with closing(sqlite3.connect(side)) as con, con:
            if _rows(con, "alembic_version") != 1 or _rows(con, "experiments") != 1 or _recorded(con) is None:
                raise sqlite3.DatabaseError("not an empty store")
            if _rows(con, "runs") != 0:
                raise sqlite3.DatabaseError("not an empty store")
            now = int(time.time() * 1000)  # the default experiment's, made now as MLflow would make it
            con.execute("UPDATE experiments SET creation_time = ?, last_update_time = ?", (now, now))
        relocate(side, uri)
    except (OSError, sqlite3.DatabaseError):
        side.unlink(missing_ok=True)
        return False
    return True


def keep_as_template(mlflow_version: str, built: Path) -> None:
    """Keep a copy of ``built``, an empty store's database just made, as the template:
    complete or not at all (renamed into place); where the cache cannot be written, none."""
    path = template_path(mlflow_version)
    part = path.with_name(f"{path.name}.{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(built, part)
        os.replace(part, path)
    except OSError:
        part.unlink(missing_ok=True)


def _rows(con: sqlite3.Connection, table: str) -> int:
    return con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # the caller's constant

"""Before a sweep writes anything: the refusals that keep its record whole.

A sweep's record is two stores that must agree: the Optuna study (``optuna/NAME.journal``;
on Ray also Tune's saved state) and the MLflow runs. A sweep whose MLflow store or
journal is gone, or that is run again with a changed spec, would crash later or mix
trials that cannot be compared; so would a journal damaged before its last record (a
torn last record is set aside when the sweep opens it: ``runs.journal.mend_journal``). Each is
refused with what to do (``StoreError``, exit 2), and a folder the sweep deletes must be
provably its own.
"""

from __future__ import annotations

import shutil
import types
from pathlib import Path

import optuna
import yaml

from runs.journal import journal_path, journal_storage
from runs.server import check_server
from runs.store import StoreError
from runs.tracking import Tracker, embedded_store
from search.spec import Spec
from search.sweep import amend

# What may change between runs of one sweep: how many trials and for how long, where and
# how they run, what is logged and where the store is, the description.
MAY_CHANGE = ("description", "search.trials", "search.timeout", "search.proxies", "backend", "tracking")
NEW_NAME = "give the spec a new name (name: in the spec, or -o name=NEW) to start another sweep"


def own(store: Path, *parts: str) -> Path:
    """``store/parts``, provided it is the store's own: strictly inside the resolved store,
    with no link or ``..`` on the way to take it elsewhere (StoreError otherwise)."""
    root = store.resolve()
    path = root.joinpath(*parts)
    if root not in path.parents or path.resolve() != path:
        links = [p for p in (store.joinpath(*parts[:i]) for i in range(1, len(parts) + 1)) if p.is_symlink()]
        fix = f"remove the link {links[0]}" if links else "name it without '..'"
        raise StoreError(
            f"{store.joinpath(*parts)} leads to {path.resolve()}, not to a folder of the store {root}:"
            f" a sweep deletes only its own; {fix}"
        )
    return path


def remove_own(store: Path, *parts: str) -> None:
    """Delete ``store/parts`` if it is the store's own (see ``own``); else leave it."""
    try:
        path = own(store, *parts)
    except StoreError:
        return
    shutil.rmtree(path, ignore_errors=True)


def check(sweep) -> None:
    """Raise StoreError for a sweep that would lose or mix its record (nothing written)."""
    spec, store = sweep.spec, sweep.store
    for folder in ("checkpoints", "weights", "paused"):
        own(store, folder, spec.name)
    journal = journal_path(store, spec.name)
    saved = _saved(sweep, journal)
    if not spec.tracking_uri and not (store / "mlflow.db").exists():
        if saved:
            raise StoreError(
                f"{saved} holds sweep {spec.name}'s trials but its MLflow store {store / 'mlflow.db'} is gone:"
                f" restore mlflow.db, or remove {saved} to start the sweep over, or {NEW_NAME}"
            )
        return
    tracker = _tracker(spec, store)
    parent = tracker.find_sweep(spec.name) if tracker else None
    where = f"MLflow experiment {spec.experiment!r} in {spec.tracking_uri or store / 'mlflow.db'}"
    if parent is None:
        if saved == str(journal):
            raise StoreError(
                f"{journal} holds trials of sweep {spec.name} but {where} has no run of it (was tracking.experiment"
                f" or tracking.uri changed?): run it with the experiment it started in, or remove {journal}"
                f" to start the sweep over, or {NEW_NAME}"
            )
        return
    if not saved and tracker.trial_runs(spec.name):
        raise StoreError(
            f"{where} holds trials of sweep {spec.name} but its Optuna study {journal} is gone:"
            f" restore the journal, or {NEW_NAME}"
        )
    started = tracker.text(parent.info.run_id, "spec.yaml")  # None: the sweep stopped as it began
    changes = spec_changes(yaml.safe_load(started), spec.resolved) if started is not None else []
    if changes:
        sweep.amendment = amendment(sweep, yaml.safe_load(started), changes, journal)


def continuation(spec: Spec):
    """What running ``spec`` would do to the sweep of its name in its store, read without
    writing (``validate``): None for a new sweep or an unchanged one, the amendment's plan
    (``search.sweep.amend.Plan``), or StoreError when it would be refused."""
    store = Path(spec.store)
    tracker = _tracker(spec, store) if (spec.tracking_uri or (store / "mlflow.db").exists()) else None
    parent = tracker.find_sweep(spec.name) if tracker else None
    started = tracker.text(parent.info.run_id, "spec.yaml") if parent is not None else None
    if started is None:
        return None
    changes = spec_changes(yaml.safe_load(started), spec.resolved)
    if not changes:
        return None
    sweep = types.SimpleNamespace(spec=spec, store=store)
    return amendment(sweep, yaml.safe_load(started), changes, journal_path(store, spec.name))


def amendment(sweep, earlier: dict, changes: list[str], journal: Path):
    """The plan of an amended resume (``search.sweep.amend``), or StoreError when the
    changes cannot continue this sweep."""

    spec, store = sweep.spec, sweep.store
    if spec.ablation is not None:
        raise StoreError(changed(spec, store, changes, "an ablation continues only with the spec it started with"))
    # The earlier study as it ran: its archive, where a crash left an amendment half done.
    storage = journal_storage(journal) if journal.exists() else None
    archive, pending = amend.archive_for(storage, spec.name, earlier)
    trials = _read_trials(journal, archive if pending else spec.name) or []
    try:
        found = amend.plan(earlier, spec, changes, trials, archive)
    except ValueError as err:
        raise StoreError(changed(spec, store, changes, f"its earlier spec no longer reads ({err})")) from None
    if found.refused:
        raise StoreError(changed(spec, store, found.refused, "these changes make earlier results incomparable"))
    return found


def changed(spec: Spec, store: Path, changes: list[str], why: str) -> str:
    """The refusal of a changed spec: why, a line per difference, then the ways out."""
    lines = "".join(f"\n  {line}" for line in changes)
    return (
        f"sweep {spec.name} in {store} was started with a different spec, and {why}:{lines}\neither give"
        " this spec a new name (name: in the spec, or -o name=NEW) to start another sweep (with"
        f" search.warm_start: {{from: {spec.name}}} to start from this one's results), or undo the changes"
        " to continue this one (its spec is spec.yaml on the sweep's MLflow parent run)"
    )


def spec_changes(old, new) -> list[str]:
    """``key.path: old -> new`` for each difference between two resolved specs, but for
    what may change between runs of one sweep (MAY_CHANGE)."""
    found: list[tuple[str, object, object]] = []
    _diff(_plain(old), _plain(new), "", found)
    return [f"{path}: {_show(a)} -> {_show(b)}" for path, a, b in found if not _may_change(path)]


_ABSENT = object()


def _diff(old, new, path: str, found: list) -> None:
    if isinstance(old, dict) and isinstance(new, dict):
        for key in dict.fromkeys([*old, *new]):
            child = f"{path}.{key}" if path else str(key)
            _diff(old.get(key, _ABSENT), new.get(key, _ABSENT), child, found)
    elif isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        for i, (a, b) in enumerate(zip(old, new, strict=True)):
            _diff(a, b, f"{path}[{i}]", found)
    elif old != new:
        found.append((path, old, new))


def _may_change(path: str) -> bool:
    return any(path == p or path.startswith((f"{p}.", f"{p}[")) for p in MAY_CHANGE)


def _plain(data):
    """As YAML gives it back (tuples become lists): the saved spec went through YAML."""
    return yaml.safe_load(yaml.safe_dump(data)) if data is not None else {}


def _show(value) -> str:
    if value is _ABSENT:
        return "(not set)"
    return yaml.safe_dump(value, default_flow_style=True, width=10**6).strip().removesuffix("...").strip()


def _saved(sweep, journal: Path) -> str:
    """Where the sweep's trials are saved ("" while it has none: a journal can be left
    empty by a sweep stopped as it began, before its MLflow store existed)."""
    if _trials(journal, sweep.spec.name):
        return str(journal)
    tune_state = getattr(sweep, "experiment_path", None)  # on Ray (the journal is written at the end)
    if tune_state is not None and sweep.resumable():
        return str(tune_state)
    return ""


def _tracker(spec: Spec, store: Path) -> Tracker | None:
    """The sweep's experiment, if it exists (looked up, not created)."""
    if spec.tracking_uri:
        uri, credentials = spec.tracking_uri, (spec.tracking_user, spec.tracking_password)
        if uri.startswith(("http://", "https://")):
            check_server(uri)  # first thing: MLflow's client would retry for minutes, silent
    else:
        uri, credentials = embedded_store(store), (None, None)  # rewritten first if the store moved
    try:
        return Tracker(uri, spec.experiment, credentials=credentials, create=False)
    except LookupError:
        return None


def _trials(journal: Path, name: str) -> int:
    if not journal.exists():
        return 0
    try:
        return len(optuna.load_study(study_name=name, storage=journal_storage(journal)).trials)
    except KeyError:  # no study of that name in it
        return 0


def _read_trials(journal: Path, name: str) -> list | None:
    """The trials of study ``name`` in the journal (read, no lock taken); None without it."""
    if not journal.exists():
        return None
    try:
        return optuna.load_study(study_name=name, storage=journal_storage(journal)).get_trials(deepcopy=False)
    except KeyError:
        return None

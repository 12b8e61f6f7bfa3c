"""In the driver: the sweep on Ray Tune (``RaySweep``), the Ray runtime it connects to,
and the bookkeeping its workers cannot do (``_Bookkeeper``). At the end the searcher's
study is copied into the sweep's Optuna journal. If the sweep's Ray runtime stops under
it, the driver ends its runs and exits (RUNTIME_LOST).

A Tune experiment runs trials until its searcher says it is finished (``num_samples=-1``;
``ArchSearch.suggest``): the budget counts distinct architectures (``search.sweep.budget``),
and repeats, answered by the worker, are Tune trials besides. A driver stopped mid-sweep
is resumed from Tune's saved state (``Tuner.restore``), its searcher handed this driver's
spec (``_reattach``: a changed ``search.trials`` is honoured, unless the searcher had
already finished). Tune's restore keeps the search space it saved, so a sweep continued
past its trials (more ``search.trials`` after the experiment ended, an amended space:
``search.sweep.amend``, a warm start: ``search.sweep.warm``) runs as a new Tune experiment
instead, its searcher's study seeded with the journal's trials; the earlier experiment is
set aside beside it (``ray/<name>~...``), kept."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import pickle
import shutil
import signal
import sys
import threading
from contextlib import ExitStack, contextmanager
from pathlib import Path

import optuna
import ray
import torch
from optuna.trial import TrialState
from ray import tune
from ray.tune.schedulers import FIFOScheduler
from ray.tune.search import ConcurrencyLimiter

from runs import faults
from runs.journal import journal_path, journal_storage, read_study
from runs.server import private_server
from runs.store import StoreError
from runs.tags import ATTEMPT_TAG, RUNG_TAG, WARM_TAG
from search.pruners.mo_asha import RUNGS_ATTR, RungJudge
from search.results.progress import COUNTERS
from search.spec import BackendSpec, Spec
from search.sweep import amend, study, warm
from search.sweep.base import Sweep
from search.sweep.budget import Budget
from search.sweep.pipeline import Outcome
from search.sweep.preflight import changed, own
from search.sweep.ray.cluster import HEAD_NODE, ended, ensure_token
from search.sweep.ray.searcher import ArchSearch, _Portable
from search.sweep.ray.worker import TRAINED, trainable

logging.getLogger("ray").setLevel(logging.ERROR)
PROJECT = Path(__file__).resolve().parents[3]  # the checkout; where installed, the archsweep package
INSTALLED = __name__.startswith("archsweep.")  # setup.py maps the packages into archsweep
# What the workers do not need of the project folder (Ray also honours .gitignore).
EXCLUDES = [".git", ".venv", "out", "data", "mlruns", "*.db", "*.journal", "__pycache__", ".*_cache"]
SEARCHER_COPY = ".archsweep-searcher.pkl"  # the searcher's own copy of its state (see _repair_searcher_state)
RUNTIME_LOST = 4  # the exit code when the sweep's Ray runtime stops under it


def _trials_of(journal: Path, name: str) -> list:
    """The trials of study ``name`` in the sweep's journal (none before its first end)."""
    if not journal.exists():
        return []
    try:
        return read_study(journal.parent.parent, name).get_trials(deepcopy=True)
    except KeyError:
        return []


def _reason(error: BaseException | None) -> str:
    if error is None:
        return "the trial ended without a result"
    cause = getattr(error, "cause", None) or error
    if isinstance(cause, ray.exceptions.RayActorError):
        return f"its worker died ({type(cause).__name__}); retries used up"
    return f"{type(cause).__name__}: {str(cause).strip().splitlines()[-1] if str(cause).strip() else ''}"


class _Bookkeeper(_Portable, tune.Callback):
    """Ends MLflow runs whose worker could not: a trial stopped early by the scheduler, or
    one whose worker died after its last retry; and keeps the live view current. Holds the
    driver's sweep, which its saved form leaves out (Tune pickles its callbacks)."""

    _unsaved = ("sweep",)

    def __init__(self, sweep: RaySweep) -> None:
        self.sweep = sweep

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        sweep = getattr(self, "sweep", None)
        if sweep is None:
            return
        # The rung records so far and, once pruned, why: into the result itself (Tune lets
        # callbacks amend it), so that the searcher's study keeps them like the local one's.
        number, judge = result.get("number"), sweep.judge
        if judge is not None and number in judge.reached:
            result[RUNGS_ATTR] = json.dumps(judge.reached[number])
        if judge is not None and number in judge.pruned:
            result["rung"], result["pruned_reason"] = judge.pruned[number].epoch, judge.pruned[number].reason
        if result.get("state") == "running":
            progress = sweep.progress
            doing = f"{result['arch']} epoch {result['epoch']}, val_accuracy {result['val_accuracy']:.3f}"
            progress.running[result["number"]] = doing
            sweep.on_change(progress)

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        sweep, last = getattr(self, "sweep", None), trial.last_result or {}
        if sweep is None:
            return
        sweep.progress.running.pop(last.get("number"), None)
        state, reason = last.get("state"), last.get("reason", "")
        if state == "running":  # the scheduler stopped it
            state = "pruned"
            reason = last.get("pruned_reason") or f"stopped early after epoch {last['epoch']}"
            if "rung" in last:
                sweep.tracker.set_tags(last["run_id"], {RUNG_TAG: str(last["rung"])})
            sweep.tracker.end_trial(last["run_id"], state, reason)
        if state in COUNTERS:  # counted, and a line of its own without a terminal
            outcome = Outcome.from_text(last["outcome"]) if "outcome" in last else None
            metrics, original = (outcome.metrics, outcome.duplicate_of) if outcome else ({}, None)
            sweep.ended(last["number"], state, last.get("arch", ""), metrics, reason, original)
        else:
            sweep.on_change(sweep.progress)

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        sweep = getattr(self, "sweep", None)
        if sweep is None:
            return
        for run in sweep.tracker.runs_with_key(sweep.spec.name, trial.trial_id):
            if run.info.status == "RUNNING":  # its worker died; else the worker recorded why
                sweep.tracker.end_trial(run.info.run_id, "failed", _reason(trial.get_pickled_error()))
        sweep.progress.failed += 1
        sweep.on_change(sweep.progress)


class _RungScheduler(_Portable, FIFOScheduler):
    """MO-ASHA on Ray: after each epoch Tune asks whether a trial goes on, and the sweep's
    rung judge answers (``search.pruners.mo_asha.RungJudge``, the local backend's and a
    replay's: one worker and one seed decide identically). Its saved form (Tune pickles its
    scheduler) leaves the judge out."""

    _unsaved = ("judge",)

    def __init__(self, judge: RungJudge) -> None:
        super().__init__()
        self.judge = judge

    def on_trial_result(self, tune_controller, trial, result) -> str:
        judge = getattr(self, "judge", None)
        if judge is not None and result.get("state") not in (None, "running") and "number" in result:
            judge.ended(result["number"], result["state"])  # the trial's outcome (search.sweep.ray.worker)
        if judge is None or result.get("state") != "running":
            return self.CONTINUE
        decision = judge.after_epoch(result["number"], result["epoch"], result, result.get("continues"))
        return self.STOP if decision is not None and not decision.proceed else self.CONTINUE


# -- in the driver: the sweep --------------------------------------------------------------


def _stop_now(signum, frame) -> None:
    """SIGINT while Tune stops a sweep gracefully (a second Ctrl-C): stop at once."""
    raise KeyboardInterrupt


# A bound str.format, not a function of archsweep: Tune pickles it into every trial's saved
# state, which then opens without archsweep (ray.tune.ExperimentAnalysis).
_trial_folder = "t{0.config[number]:03d}_{0.trial_id}".format


def _saved_results(tuner: tune.Tuner) -> list:
    """The trials' results a restored Tuner read from its saved state, or none where Tune
    could not read them (its ExperimentAnalysis failed: seen once in CI after a SIGKILL;
    Tune's own resume reads the saved state again and says what it cannot restore)."""
    try:
        return list(tuner.get_results())
    except RuntimeError:  # "Can't return results as experiment has not been run, yet"
        return []


def _restore_deleted_checkpoint(result) -> None:
    """Tune's saved state can name a checkpoint that ``num_to_keep`` has already deleted:
    the state reaches storage after the deletion, asynchronously, so a driver killed in
    between leaves a trial Tune cannot restore ("does not exist on storage anymore"). The
    trial's newer checkpoint, which replaced it, takes its name: the trial resumes from its
    newest training state (which names its own epoch), never from an older one."""
    named = Path(result.checkpoint.path) if result.checkpoint else None
    if named is None or named.exists() or not named.parent.is_dir():
        return
    newer = sorted(c for c in named.parent.glob("checkpoint_[0-9]*") if c.name > named.name)
    if newer:
        newer[-1].rename(named)


def _reattach(tuner: tune.Tuner, scheduler, callbacks: list, spec: Spec | None = None) -> ArchSearch | None:
    """A restored Tuner runs with the scheduler and callbacks its saved state held, which
    left out their handles on the sweep (``_Portable._unsaved``): this driver's take their
    place; and its searcher with this driver's ``spec`` (its budget: the saved one is the
    first driver's; Tune's restore of the searcher's state leaves the spec as it finds it).
    Tune has no public way to give a restored Tuner either (the only reach into Tuner's
    internals here). Returns that searcher: Tune restores its state in place when it runs."""
    internal = tuner._local_tuner
    internal._tune_config.scheduler = scheduler or FIFOScheduler()
    internal._run_config.callbacks = callbacks
    searcher = internal._tune_config.search_alg
    searcher = getattr(searcher, "searcher", searcher)  # inside a ConcurrencyLimiter
    if spec is not None and isinstance(searcher, ArchSearch):
        searcher.spec = spec
    return searcher if isinstance(searcher, ArchSearch) else None


@contextmanager
def runtime(backend: BackendSpec):
    """Connected to Ray for the duration: a private runtime on this machine (address
    local) or an existing cluster; the project folder (installed: the archsweep package)
    travels to the workers."""
    ensure_token()
    env = {"py_modules": [str(PROJECT)]} if INSTALLED else {"working_dir": str(PROJECT)}
    env["excludes"] = EXCLUDES
    if faults.plan():  # the hardening suite's faults reach the workers
        env["env_vars"] = {faults.ENV: faults.plan()}
    if backend.address == "local":
        ray.init(
            address="local",
            _node_ip_address=HEAD_NODE,
            include_dashboard=backend.dashboard,
            dashboard_host="127.0.0.1",
            object_store_memory=256 * 2**20,
            runtime_env=env,
            log_to_driver=False,
            logging_level=logging.ERROR,
        )
    else:
        ray.init(address=backend.address, runtime_env=env, log_to_driver=False, logging_level=logging.ERROR)
    try:
        yield
    finally:
        ray.shutdown()


def _lifelines() -> dict:
    """The Ray processes this driver cannot outlive, by name: the raylet it is attached to
    (its object store lives there) and, for a private runtime, the GCS."""
    import psutil  # after ray, which brings its own copy

    node = ray._private.worker.global_worker.node  # Ray has no public handle on its processes
    found = {}
    for kind in ("gcs_server", "raylet"):  # a private runtime: this driver started them
        if node.all_processes.get(kind):
            found[kind] = psutil.Process(node.all_processes[kind][0].process.pid)
    if "raylet" not in found:  # a cluster's node on this machine
        socket = f"--raylet_socket_name={node.raylet_socket_name}"
        for proc in psutil.process_iter(["cmdline"]):
            if socket in (proc.info["cmdline"] or []):
                found["raylet"] = proc
    return found


def _watch(processes: dict, on_lost) -> threading.Event:
    """Calls ``on_lost(what)`` once if one of ``processes`` ends before the returned event
    is set (set it before stopping Ray on purpose)."""
    stop = threading.Event()

    def watch() -> None:
        while not stop.wait(0.5):
            dead = [f"{name} pid {proc.pid}" for name, proc in processes.items() if ended(proc)]
            if dead and not stop.is_set():
                return on_lost(f"{', '.join(dead)} ended")

    threading.Thread(target=watch, name="archsweep-ray-lifeline", daemon=True).start()
    return stop


class RaySweep(Sweep):
    def __init__(self, spec: Spec, **kwargs) -> None:
        super().__init__(spec, **kwargs)
        self.storage = str(Path(spec.backend.storage_path or (self.store / "ray")).resolve())
        self.experiment_path = Path(self.storage) / spec.name
        self.stack = ExitStack()
        self.judge: RungJudge | None = None  # MO-ASHA's, for the scheduler and the bookkeeper (_tuner)
        self.searcher: ArchSearch | None = None  # the one Tune runs (_tuner): its study is the sweep's

    def resumable(self) -> bool:
        return tune.Tuner.can_restore(str(self.experiment_path))

    def preflight(self) -> None:
        super().preflight()
        if self.amendment is not None and self._unfinished():
            why = "its last run on Ray stopped before its trials ended; run it unchanged first to finish them"
            raise StoreError(changed(self.spec, self.store, self.amendment.changes, why))

    def open(self) -> None:
        self.preflight()  # its refusals come before anything is written
        journal = journal_path(self.store, self.spec.name)
        if self.amendment is not None:  # the spec changed since the sweep began
            journal.parent.mkdir(parents=True, exist_ok=True)
            storage = journal_storage(journal, owned=True)
            amend.rebuild(storage, self.spec, self.amendment, study.directions(self.spec))
        self.earlier = _trials_of(journal, self.spec.name)  # what a new Tune experiment starts from
        # Tune's saved state resumes a stopped driver; a sweep continued past it starts anew
        self.restoring = self.resumable() and self.amendment is None and (self._unfinished() or not self._to_run())
        if self.resumable() and not self.restoring:
            self._set_aside(self.amendment.archive if self.amendment else f"{self.spec.name}~{len(self.earlier)}")
        server = None if self.spec.tracking_uri else self.stack.enter_context(private_server(self.store))
        self.stack.enter_context(runtime(self.spec.backend))  # while the server starts: both take seconds
        if server is not None:  # on close: the server's shutdown while Ray's runs (a second each)
            self.stack.callback(server.stop_soon)
        self.uri = self.spec.tracking_uri or server.ready()
        self.open_tracking(self.uri)

    def close(self) -> None:
        self.stack.close()

    def trials_so_far(self) -> list:
        return self.earlier

    def _unfinished(self) -> bool:
        """Whether Tune's saved state has trials it started and never ended (a stopped driver's)."""
        saved = self._saved_study()
        return saved is not None and not all(t.state.is_finished() for t in saved.get_trials(deepcopy=False))

    def _to_run(self) -> int:
        """The trials a new Tune experiment would run: the budget less what the journal counts
        (none when the journal's trials exhausted the space: ``Budget.stop``)."""
        budget = Budget.of(self.spec, self.earlier)
        return 0 if budget.stop() else budget.left()

    def _set_aside(self, name: str) -> None:
        """The earlier Tune experiment moved beside the sweep's (kept: nothing is deleted)."""
        source = own(self.experiment_path.parent, self.experiment_path.name)
        target, k = source.with_name(name), 1
        while target.exists():
            k += 1
            target = source.with_name(f"{name}-{k}")
        source.rename(target)

    def _repair_searcher_state(self) -> None:
        """Tune writes the searcher's state in a staging folder and copies it to storage, not
        atomically: a driver killed during the copy leaves it empty there, and the sweep
        could not be resumed (EOFError). The searcher also keeps a copy of its own, replaced
        atomically at each save (``ArchSearch.save``), which then takes its place."""
        saved = sorted(self.experiment_path.glob("searcher-state-*.pkl"))
        mirror = self.experiment_path / SEARCHER_COPY
        if not saved or not mirror.exists():
            return
        try:
            with saved[-1].open("rb") as f:
                pickle.load(f)
        except (EOFError, pickle.UnpicklingError):
            shutil.copyfile(mirror, saved[-1])

    def _saved_study(self) -> optuna.Study | None:
        """The searcher's study as Tune last saved it (None before the first save)."""
        if not list(self.experiment_path.glob("searcher-state-*.pkl")):
            return None
        self._repair_searcher_state()
        searcher = ArchSearch(self.spec)
        searcher.restore_from_dir(str(self.experiment_path))
        return searcher.study

    def trained(self, number: int) -> dict | None:
        checkpoint = getattr(self, "last_checkpoints", {}).get(number)
        if checkpoint is None:
            return None
        with checkpoint.as_directory() as folder:
            path = Path(folder) / TRAINED
            return torch.load(path, map_location="cpu", weights_only=True) if path.exists() else None

    def remaining(self) -> int:
        if not self.restoring:
            return self._to_run()
        saved = self._saved_study()
        budget = Budget.of(self.spec, [] if saved is None else saved.get_trials(deepcopy=False))
        return 0 if budget.stop() else budget.left()

    def _trainable(self):
        b = self.spec.backend
        login = (self.spec.tracking_user, self.spec.tracking_password) if self.spec.tracking_uri else (None, None)
        # In Ray's object store (memory), not in Tune's saved state (the spec drops its password when pickled).
        # Pruned trials' training states beside Tune's experiment (shared storage, as Tune's
        # own checkpoints are), for a later draw of the same architecture to continue.
        paused = str(Path(self.storage) / f"{self.spec.name}.paused")
        fn = tune.with_parameters(
            trainable, spec=self.spec, parent=self.parent, uri=self.uri, credentials=login, paused=paused
        )
        resources = {"cpu": b.cpus_per_trial, "gpu": b.gpus_per_trial}
        if b.memory_per_trial:  # Ray places trials by it; worker.memory_cap enforces it
            resources["memory"] = int(b.memory_per_trial * 2**30)
        return tune.with_resources(fn, resources)

    def _scheduler(self):
        """Tune's scheduler: MO-ASHA's rung judge where the pruner has one (it holds this
        sweep's judge), else the pruner's Tune scheduler on the first objective (or none)."""
        if self.judge is not None:
            return _RungScheduler(self.judge)
        first = self.spec.objectives[0]
        return study.pruner_of(self.spec).tune_scheduler(first.metric, first.direction)

    def _tuner(self) -> tune.Tuner:
        """The Tuner, and this sweep's rung judge (``self.judge``, when its pruner has one)
        with the rungs the searcher's study holds as it starts."""
        path = str(self.experiment_path)
        if self.restoring:  # the driver stopped mid-sweep: Tune's state and the searcher's
            tuner = tune.Tuner.restore(path, trainable=self._trainable(), resume_unfinished=True, resume_errored=False)
            for result in _saved_results(tuner):  # what the saved state names, before anything runs
                _restore_deleted_checkpoint(result)
            self.judge = study.rung_judge(self.spec, self._saved_study().get_trials(deepcopy=False))
            self.searcher = _reattach(tuner, self._scheduler(), [_Bookkeeper(self)], self.spec)
            return tuner
        spec, b = self.spec, self.spec.backend
        searcher = ArchSearch(spec, self.earlier)
        searcher.mirror = str(self.experiment_path / SEARCHER_COPY)
        self.searcher = searcher
        if spec.search.warm_start and not any(study.counted(t) for t in self.earlier):
            given, queued, outside = warm.start(searcher.study, spec)
            line = f"{given} given as completed, {queued} queued to train, {outside} outside this space"
            self.tracker.set_tags(self.parent, {WARM_TAG: f"{spec.search.warm_start['from']}: {line}"})
        known = searcher.study.get_trials(deepcopy=False)
        # as the local backend seeds a resumed sweep's sampler: by how far the study got
        searcher.study.sampler = study.sampler_for(spec, len(known))
        self.judge = study.rung_judge(spec, known)
        search_alg = ConcurrencyLimiter(searcher, b.max_concurrent) if b.max_concurrent else searcher
        return tune.Tuner(
            self._trainable(),
            tune_config=tune.TuneConfig(
                search_alg=search_alg,
                scheduler=self._scheduler(),
                num_samples=-1,  # as many as the searcher suggests (ArchSearch.suggest)
                time_budget_s=spec.search.timeout,
                reuse_actors=True,  # a fresh worker spends seconds importing torch and mlflow
                trial_dirname_creator=_trial_folder,
            ),
            run_config=tune.RunConfig(
                name=spec.name,
                storage_path=self.storage,
                failure_config=tune.FailureConfig(max_failures=b.max_failures),
                checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
                callbacks=[_Bookkeeper(self)],
                verbose=0,
            ),
        )

    def run(self) -> None:
        tuner = self._tuner()
        # Tune keeps one trial pending at a time for a searcher; worker start-up would then
        # serialise the sweep. As many pending as can run at once.
        slots = self.spec.backend.max_concurrent or max(1, int(ray.cluster_resources().get("CPU", 1)))
        os.environ["TUNE_MAX_PENDING_TRIALS_PG"] = str(slots)
        self.stack.callback(_watch(_lifelines(), self._runtime_lost).set)  # before Ray is stopped on purpose
        main = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGINT, _stop_now) if main else None
        try:
            grid = tuner.fit()
            # Tune answers Ctrl-C by saving its state, stopping the trials and returning from
            # fit() as if the sweep were over; its handler puts back the one it replaced
            # (ours), which otherwise stays replaced. Said as the local backend says it.
            pressed = main and signal.getsignal(signal.SIGINT) is _stop_now
        finally:
            if main:
                signal.signal(signal.SIGINT, previous)
        unfinished = self._record(grid)
        why = Budget.of(self.spec, self.study.get_trials(deepcopy=False)).stop()
        if why:  # what the searcher saw when it finished, read back from the study
            self.stopped_early(why)
        if unfinished and pressed:
            raise KeyboardInterrupt

    def _runtime_lost(self, what: str) -> None:
        """Seen without this: Ray's core ends the process from C++ seconds later (exit 1, its
        object store lost), or Tune goes on as if the trials had failed (exit 0); neither
        leaves Python a failure to catch. So the runs are ended from here, it is said, and
        the process exits at once; the MLflow server and Ray's own processes end with it
        (they are bound to this process's life)."""
        try:
            for run in self.tracker.trial_runs(self.spec.name):
                if run.info.status == "RUNNING":
                    reason = "the sweep's Ray runtime stopped during this trial"
                    self.tracker.end_trial(run.info.run_id, "interrupted", reason)
            self.tracker.end_sweep(self.parent, "KILLED")
            marked = "its runs are marked KILLED"
        except Exception as err:
            marked = f"its runs could not be marked ({type(err).__name__}; the next run marks them KILLED)"
        print(f"error: the sweep's Ray runtime stopped ({what}); {marked}; run again to resume", file=sys.stderr)
        if sys.stdout.isatty():
            sys.stdout.write("\x1b[?25h")  # the live view hid the cursor
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(RUNTIME_LOST)

    def _record(self, grid) -> bool:
        """The searcher's study becomes the sweep's journal study, with the reasons of failed
        trials; MLflow runs of trials that Tune lost with a killed driver (created after its
        last saved state) are removed, since those trials ran again under the same number.
        True when trials were left unfinished (by Ctrl-C or the time budget: they run again
        on the next run). The study is the searcher's in this process, not Tune's saved copy
        of it: Tune logs a failed last snapshot and goes on, and an older copy would lose
        the trials after it, and their runs with them."""
        source = self.searcher.study if self.searcher is not None else self._saved_study()
        reasons = {r.config["number"]: _reason(r.error) for r in grid if r.error is not None and r.config}
        ran = {r.config["number"] for r in grid if r.config}  # by this Tune experiment
        self.last_checkpoints = {r.config["number"]: r.checkpoint for r in grid if r.checkpoint and r.config}
        journal = journal_path(self.store, self.spec.name)
        journal.parent.mkdir(parents=True, exist_ok=True)
        storage = journal_storage(journal, owned=True)
        with contextlib.suppress(KeyError):  # the sweep's study only: an amendment's archives stay
            optuna.delete_study(study_name=self.spec.name, storage=storage)
        self.study = study.create(self.spec, storage, load=False)
        keys, unfinished, told = set(), 0, []
        for t in source.get_trials(deepcopy=True):
            keys.add(t.user_attrs.get("tune_trial_id"))
            attrs = dict(t.user_attrs)
            if study.state_of(t) == "interrupted" and t.number in ran:  # FAIL for no reason, not a repeat
                attrs["fail_reason"] = reasons.get(t.number, "failed")  # not a seeded trial's: as it was
            state = t.state if t.state.is_finished() else TrialState.FAIL  # uncounted: it reruns
            unfinished += state != t.state
            told.append(
                optuna.trial.create_trial(
                    state=state,
                    values=t.values if state == TrialState.COMPLETE else None,
                    params=t.params,
                    distributions=t.distributions,
                    user_attrs=attrs,
                    system_attrs=t.system_attrs,
                    intermediate_values=t.intermediate_values,
                )
            )
        self.study.add_trials(told)
        runs = self.tracker.trial_runs(self.spec.name)
        lost = [r.info.run_id for r in runs if r.data.tags.get(ATTEMPT_TAG) not in keys]
        self.tracker.delete_runs(lost)
        self.tracker.close_orphans(self.spec.name)
        return unfinished > 0

"""The Ray Tune backend, and the only module that imports ray.

The driver runs Ray Tune with ``ArchSearch`` (Ray's ``OptunaSearch`` over the same
define-by-run space as the local backend); each trial runs ``trainable`` in a Ray worker,
which logs its own MLflow child run on a tracking server every node reaches, reports every
epoch with a checkpoint (so a retried trial resumes), and ends with the same record the
local backend writes. At the end the searcher's study is copied into the sweep's Optuna
journal, so the Pareto front, the ablation report and ``ablation.base`` read one format.
If the sweep's Ray runtime stops under it, the driver ends its runs and exits (RUNTIME_LOST).
Tune's saved state names nothing of archsweep's that a reader must import (``_Portable``).

Security defaults (Ray's ports listen on every interface and run code for any client):
token authentication on (``RAY_AUTH_MODE=token``) unless the caller set the variable, the
private runtime and ``cluster up`` on loopback node addresses, the dashboard off unless
asked and then on 127.0.0.1.
"""

from __future__ import annotations

import ctypes
import logging
import os
import pickle
import signal
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import asdict
from pathlib import Path

os.environ.setdefault("RAY_AUTH_MODE", "token")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no traffic leaves the machine
os.environ.setdefault("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1")  # refused trials report no epochs
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # with verbose=0: Tune prints nothing; the live view does

import optuna
import ray
import torch
from optuna.trial import TrialState
from ray import tune
from ray.tune.search import ConcurrencyLimiter
from ray.tune.search.optuna import OptunaSearch

from blocks import summary
from runs import data as datasets
from runs import faults, worker
from runs.tracking import ATTEMPT_TAG, Tracker, private_server
from runs.train import TrainConfig
from runs.trial import Infeasible, run_trial
from search.fields import to_arch
from search.local import make_sampler
from search.spec import METRICS, BackendSpec, Spec
from search.sweep import (
    COUNTERS,
    DUPLICATE_TAG,
    Sweep,
    completed,
    constraint_names,
    draw,
    journal_storage,
    name_metrics,
    refused,
    repeat_of,
    repeated,
    run_name,
    trial_params,
    trial_seed,
)

logging.getLogger("ray").setLevel(logging.ERROR)
PROJECT = Path(__file__).resolve().parents[1]
# What the workers do not need of the project folder (Ray also honours .gitignore).
EXCLUDES = [".git", ".venv", "out", "data", "mlruns", "*.db", "*.journal", "__pycache__", ".*_cache"]
HEAD_NODE, WORKER_NODES = "127.0.0.2", "127.0.0.{}"  # loopback: Ray keeps these, not 127.0.0.1
TIMEOUT_TAG = "archsweep.timed_out"
TRAINED = "trained.pt"  # in a trial's last checkpoint: its runs.trial.trained_record
RUNTIME_LOST = 4  # the exit code when the sweep's Ray runtime stops under it


# -- in a Ray worker: one trial ------------------------------------------------------------

_DATA: dict = {}  # per worker process: the dataset last loaded (trials of a sweep share it)


def _dataset(spec: Spec, device: torch.device) -> datasets.Dataset:
    key = (repr(spec.data), spec.search.seed, str(device))
    if key not in _DATA:
        _DATA.clear()
        _DATA[key] = datasets.load(spec.data, seed=spec.search.seed).to(device)
    return _DATA[key]


def trainable(config: dict, *, spec: Spec, parent: str, uri: str, credentials: tuple = (None, None)) -> None:
    """One trial in a Ray worker; resumes from Tune's checkpoint when it is a retry."""
    if "repeat" in config:  # the driver found its draw trained before (ArchSearch.suggest)
        return _answer_repeat(config, spec, Tracker(uri, spec.experiment, credentials=credentials), parent)
    b = spec.backend
    device = torch.device("cuda" if b.gpus_per_trial and torch.cuda.is_available() else "cpu")
    torch.set_num_threads(max(1, int(b.cpus_per_trial)))
    data = _dataset(spec, device)
    geo, number, seed, tags = data.geometry, config["number"], config["seed"], config["tags"]
    arch = data.normalising(to_arch(config["model"], geo.image_size, geo.num_classes, geo.channels))
    cfg = TrainConfig.from_mapping({**config["train"], "crop": spec.data.crop, "flip": spec.data.flip})
    line = summary(arch)
    tracker = Tracker(uri, spec.experiment, credentials=credentials)
    run = _trial_run(tracker, parent, spec, config, line, {"archsweep.arch": line, **tags}, seed)
    tracker.set_tags(run, {"archsweep.node": ray.util.get_node_ip_address()})
    base, cost = {"number": number, "run_id": run, "arch": line}, {}

    def fail(reason: str) -> None:  # deterministic: recorded, not retried
        tracker.end_trial(run, "failed", reason)
        tune.report({**base, "state": "failed", "reason": reason})

    if TIMEOUT_TAG in tracker.tags(run):  # the watchdog ended the last attempt's worker
        return fail(_timeout_reason(b.trial_timeout))
    resume, first = None, 0
    if (checkpoint := tune.get_checkpoint()) is not None:
        with checkpoint.as_directory() as folder:
            resume = torch.load(Path(folder) / "state.pt", map_location=device, weights_only=True)
        first = resume["epoch"] + 1
        tracker.set_tags(run, {"archsweep.resumed_from_epoch": str(first)})

    last: list = []  # the last epoch's snapshot function

    def report(epoch: int, metrics: dict, snapshot) -> None:
        last[:] = [snapshot]
        tracker.log_metrics(run, metrics, step=epoch)  # before Tune: a crash may repeat a step, never skip one
        with tempfile.TemporaryDirectory() as folder:
            torch.save(snapshot(), Path(folder) / "state.pt")
            result = {**base, **cost, **metrics, "epoch": epoch + 1, "state": "running"}
            tune.report(result, checkpoint=tune.Checkpoint.from_directory(folder))
        faults.fire(os.environ.get(faults.ENV), number, epoch, first)

    trained: dict = {}
    try:
        with _watchdog(b.trial_timeout, tracker, run), worker.memory_cap(b.memory_per_trial):
            metrics = run_trial(
                arch,
                cfg,
                data,
                seed=seed,
                constraints=spec.constraints,
                report=report,
                resume=resume,
                on_cost=cost.update,
                on_trained=trained.update,
            )
        tracker.log_metrics(run, metrics, step=int(metrics["epochs"]))
        outcome = completed(spec, metrics)
    except Infeasible as err:
        outcome = refused(spec, err)
        if outcome.metrics:
            tracker.log_metrics(run, outcome.metrics)
    except TrialTimeout:
        return fail(_timeout_reason(b.trial_timeout))
    except Exception as err:
        if worker.failure_kind(err) in ("oom", "failed"):  # it would happen again: not retried
            if device.type == "cuda":
                torch.cuda.empty_cache()  # the next trial of this worker gets the memory back
            return fail(worker.failure_reason(err))
        tracker.end_trial(run, "failed", worker.failure_reason(err))  # Tune retries it; a retry reopens this run
        raise
    tracker.end_trial(run, outcome.state, outcome.reason)
    final = {**base, **outcome.metrics, "state": outcome.state, "reason": outcome.reason}
    final = {**final, "values": list(outcome.values), "violations": list(outcome.violations)}
    with tempfile.TemporaryDirectory() as folder:
        if trained and last:  # the last checkpoint holds the trained model (RaySweep.trained)
            torch.save(trained, Path(folder) / TRAINED)
            # and the training state still: a retry after a lost driver resumes from it.
            torch.save(last[0](), Path(folder) / "state.pt")
        tune.report(final, checkpoint=tune.Checkpoint.from_directory(folder) if trained and last else None)


def _trial_run(tracker: Tracker, parent: str, spec: Spec, config: dict, line: str, tags: dict, seed: int) -> str:
    """The trial's MLflow child run, keyed by Tune's trial id (a retry continues it)."""
    number = config["number"]
    params = trial_params(config["model"], config["train"], seed)
    name = run_name(number, line, tags, seed)
    return tracker.trial_run(parent, spec.name, number, name, params, tags, key=tune.get_context().get_trial_id())


def _answer_repeat(config: dict, spec: Spec, tracker: Tracker, parent: str) -> None:
    """A duplicate: its MLflow run and its result are the earlier trial's; nothing trains."""
    answer, number = config["repeat"], config["number"]
    original, line, metrics = answer["duplicate_of"], answer["arch"], answer["metrics"]
    tags = {"archsweep.arch": line, DUPLICATE_TAG: str(original)}
    run = _trial_run(tracker, parent, spec, config, line, tags, trial_seed(spec, original))
    if metrics:
        tracker.log_metrics(run, metrics, step=int(metrics.get("epochs", 0)))
    tracker.end_trial(run, "duplicate", answer["reason"])
    result = {"number": number, "run_id": run, "arch": line, **metrics, "state": "duplicate", "duplicate_of": original}
    tune.report(result | {"reason": answer["reason"], "values": answer["values"], "violations": answer["violations"]})


class TrialTimeout(Exception):
    """Raised in a trial's thread by its watchdog."""


def _timeout_reason(seconds: float | None) -> str:
    return f"timeout: no result after {seconds:g} s (backend.trial_timeout)"


@contextmanager
def _watchdog(seconds: float | None, tracker: Tracker, run: str):
    """After ``seconds``, raise TrialTimeout in the trial's thread (Tune runs trials in a
    thread, which cannot be killed). A thread stuck in native code never sees it; then the
    worker process ends itself after a grace period, and the retry Tune starts finds the
    run's timeout tag and records the timeout instead of training again."""
    if not seconds:
        yield
        return
    target, done = threading.get_ident(), threading.Event()

    def expire() -> None:
        tracker.set_tags(run, {TIMEOUT_TAG: f"{seconds:g}"})
        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(target), ctypes.py_object(TrialTimeout))
        if not done.wait(30):
            os._exit(1)

    timer = threading.Timer(seconds, expire)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        done.set()
        timer.cancel()


# -- in the driver: the searcher -----------------------------------------------------------


def _loader():
    def load(blob: bytes):
        """The object where archsweep imports; None elsewhere."""
        import pickle

        try:
            cls, state = pickle.loads(blob)
        except ImportError:
            return None
        obj = cls.__new__(cls)
        obj.__dict__.update(state)
        return obj

    return load


class _Portable:
    """Tune saves the searcher and the callbacks in tuner.pkl with cloudpickle, which pickles
    a class by reference: ``Tuner.restore(path, trainable=...)`` would need archsweep
    importable just to read a finished sweep's results. Pickled instead as bytes (the
    usual pickle) and a loader that cloudpickle stores by value (a nested function is not
    importable by name): it gives the object back where archsweep imports, None elsewhere."""

    def __reduce__(self):
        return _loader(), (pickle.dumps((type(self), self.__dict__)),)


class _Space:
    """The define-by-run space (a class, not a closure: the searcher is pickled)."""

    def __init__(self, spec: Spec) -> None:
        self.spec = spec

    def __call__(self, trial) -> dict:
        model_cfg, train_cfg, seed, tags = draw(self.spec, trial)
        return {"number": trial.number, "model": model_cfg, "train": train_cfg, "seed": seed, "tags": tags}


class ArchSearch(_Portable, OptunaSearch):
    """Ray's OptunaSearch, telling the study what the local backend tells it: constraint
    violations (so samplers rank infeasible trials last), the trial's record as user
    attributes, FAIL for failures and PRUNED for trials a scheduler stopped early.
    Ray's own ``on_trial_complete`` would tell an early-stopped trial COMPLETE with its
    last epoch's values and leave a trial whose result lacks an objective RUNNING."""

    def __init__(self, spec: Spec) -> None:
        self.spec = spec
        arms = []
        if spec.ablation is not None:
            arms = [{"arm": a, "seed": s} for a in spec.ablation.runnable for s in range(spec.ablation.seeds)]
        super().__init__(
            space=_Space(spec),
            metric=[o.metric for o in spec.objectives],
            mode=[o.direction for o in spec.objectives],
            sampler=make_sampler(spec),
            points_to_evaluate=arms or None,
        )

    def suggest(self, trial_id: str):
        config = super().suggest(trial_id)
        trial = self._ot_trials[trial_id]
        trial.set_user_attr("tune_trial_id", trial_id)  # = the MLflow run's attempt key
        original = repeat_of(self._ot_study, trial)
        if original is not None and isinstance(config, dict):  # the trainable answers from it, untrained
            config["repeat"] = asdict(repeated(self.spec, original)) | {"arch": original.user_attrs.get("arch", "")}
        return config

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        """Early stopping is the scheduler's job (ASHA), for one objective or several."""

    def save(self, checkpoint_path: str) -> None:
        """Tune's searcher state (OptunaSearch saves its ``__dict__``) without the spec: Optuna
        objects only, which open without archsweep. Restoring keeps the constructor's spec."""
        state = {k: v for k, v in self.__dict__.items() if k not in ("spec", "_space")}
        with open(checkpoint_path, "wb") as f:
            pickle.dump(state, f)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if trial_id in self._completed_trials or trial_id not in self._ot_trials:
            return
        trial, result = self._ot_trials[trial_id], result or {}
        state = result.get("state")
        if "run_id" in result:
            trial.set_user_attr("mlflow_run_id", result["run_id"])
            trial.set_user_attr("arch", result["arch"])
        if state in ("complete", "infeasible", "duplicate"):
            for name, value in zip(constraint_names(self.spec), result["violations"], strict=True):
                trial.set_constraint(name, value)
            trial.set_user_attr("state", state)
            trial.set_user_attr("metrics", {k: result[k] for k in METRICS if k in result})
            if result.get("reason"):
                trial.set_user_attr("reason", result["reason"])
            if "duplicate_of" in result:
                trial.set_user_attr("duplicate_of", result["duplicate_of"])
            self._ot_study.tell(trial, list(result["values"]))
        elif state == "failed" or error:
            if result.get("reason"):
                trial.set_user_attr("fail_reason", result["reason"])
            self._ot_study.tell(trial, state=TrialState.FAIL)
        else:
            trial.set_user_attr("state", "pruned")
            self._ot_study.tell(trial, state=TrialState.PRUNED)
        self._completed_trials.add(trial_id)


# -- in the driver: bookkeeping that the workers cannot do ---------------------------------

_ACTIVE: list[RaySweep] = []  # the sweep this driver runs (Tune pickles its callbacks; this one holds nothing)


def _reason(error: BaseException | None) -> str:
    if error is None:
        return "the trial ended without a result"
    cause = getattr(error, "cause", None) or error
    if isinstance(cause, ray.exceptions.RayActorError):
        return f"its worker died ({type(cause).__name__}); retries used up"
    return f"{type(cause).__name__}: {str(cause).strip().splitlines()[-1] if str(cause).strip() else ''}"


class _Bookkeeper(_Portable, tune.Callback):
    """Ends MLflow runs whose worker could not: a trial stopped early by the scheduler, or
    one whose worker died after its last retry; and keeps the live view current."""

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        if _ACTIVE and result.get("state") == "running":
            progress = _ACTIVE[0].progress
            doing = f"{result['arch']} epoch {result['epoch']}, val_accuracy {result['val_accuracy']:.3f}"
            progress.running[result["number"]] = doing
            _ACTIVE[0].on_change(progress)

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        if not _ACTIVE:
            return
        sweep, last = _ACTIVE[0], trial.last_result or {}
        sweep.progress.running.pop(last.get("number"), None)
        state, reason = last.get("state"), last.get("reason", "")
        if state == "running":  # the scheduler stopped it
            state, reason = "pruned", f"stopped early after epoch {last['epoch']}"
            sweep.tracker.end_trial(last["run_id"], state, reason)
        if state in COUNTERS:  # counted, and a line of its own without a terminal
            metrics = {k: last[k] for k in METRICS if k in last and state != "pruned"}
            sweep.ended(last["number"], state, last.get("arch", ""), metrics, reason, last.get("duplicate_of"))
        else:
            sweep.on_change(sweep.progress)

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        if not _ACTIVE:
            return
        sweep = _ACTIVE[0]
        for run in sweep.tracker.runs_with_key(sweep.spec.name, trial.trial_id):
            if run.info.status == "RUNNING":  # its worker died; else the worker recorded why
                sweep.tracker.end_trial(run.info.run_id, "failed", _reason(trial.get_pickled_error()))
        sweep.progress.failed += 1
        sweep.on_change(sweep.progress)


# -- in the driver: the sweep --------------------------------------------------------------


def _stop_now(signum, frame) -> None:
    """SIGINT while Tune stops a sweep gracefully (a second Ctrl-C): stop at once."""
    raise KeyboardInterrupt


# A bound str.format, not a function of archsweep: Tune pickles it into every trial's saved
# state, which then opens without archsweep (ray.tune.ExperimentAnalysis).
_trial_folder = "t{0.config[number]:03d}_{0.trial_id}".format


def ensure_token() -> None:
    """Token authentication needs a token on every node; Ray generates one in
    ~/.ray/auth_token (shared by the nodes of this machine), readable by its owner only."""
    if os.environ.get("RAY_AUTH_MODE") != "token" or os.environ.get("RAY_AUTH_TOKEN"):
        return
    path = Path(os.environ.get("RAY_AUTH_TOKEN_PATH", Path.home() / ".ray" / "auth_token"))
    if not path.exists():
        subprocess.run([_ray_cli(), "get-auth-token", "--generate"], capture_output=True, check=True)
    path.chmod(0o600)


@contextmanager
def runtime(backend: BackendSpec):
    """Connected to Ray for the duration: a private runtime on this machine (address
    local) or an existing cluster; the project folder travels to the workers."""
    ensure_token()
    env = {"working_dir": str(PROJECT), "excludes": EXCLUDES}
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
            dead = [f"{name} pid {proc.pid}" for name, proc in processes.items() if _ended(proc)]
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

    def resumable(self) -> bool:
        return tune.Tuner.can_restore(str(self.experiment_path))

    def open(self) -> None:
        self.preflight()  # its refusals come before anything is written
        server = None if self.spec.tracking_uri else self.stack.enter_context(private_server(self.store))
        self.stack.enter_context(runtime(self.spec.backend))  # while the server starts: both take seconds
        self.uri = self.spec.tracking_uri or server()
        self.open_tracking(self.uri)

    def close(self) -> None:
        self.stack.close()

    def _saved_study(self) -> optuna.Study | None:
        """The searcher's study as Tune last saved it (None before the first save)."""
        if not list(self.experiment_path.glob("searcher-state-*.pkl")):
            return None
        searcher = ArchSearch(self.spec)
        searcher.restore_from_dir(str(self.experiment_path))
        return searcher._ot_study

    def trained(self, number: int) -> dict | None:
        checkpoint = getattr(self, "last_checkpoints", {}).get(number)
        if checkpoint is None:
            return None
        with checkpoint.as_directory() as folder:
            path = Path(folder) / TRAINED
            return torch.load(path, map_location="cpu", weights_only=True) if path.exists() else None

    def remaining(self) -> int:
        study = self._saved_study()
        done = 0 if study is None else sum(t.state.is_finished() for t in study.get_trials(deepcopy=False))
        return max(0, self.spec.search.trials - done)

    def _trainable(self):
        b = self.spec.backend
        login = (self.spec.tracking_user, self.spec.tracking_password) if self.spec.tracking_uri else (None, None)
        # In Ray's object store (memory), not in Tune's saved state (the spec drops its password when pickled).
        fn = tune.with_parameters(trainable, spec=self.spec, parent=self.parent, uri=self.uri, credentials=login)
        resources = {"cpu": b.cpus_per_trial, "gpu": b.gpus_per_trial}
        if b.memory_per_trial:  # Ray places trials by it; worker.memory_cap enforces it
            resources["memory"] = int(b.memory_per_trial * 2**30)
        return tune.with_resources(fn, resources)

    def _scheduler(self):
        spec, first = self.spec, self.spec.objectives[0]
        if spec.search.pruner == "asha":
            epochs = spec.train.get("epochs", 10)
            top = max(epochs.values()) if hasattr(epochs, "values") else epochs
            return tune.schedulers.ASHAScheduler(
                metric=first.metric, mode=first.direction, max_t=int(top), grace_period=1, time_attr="epoch"
            )
        if spec.search.pruner == "median":
            return tune.schedulers.MedianStoppingRule(
                metric=first.metric, mode=first.direction, time_attr="epoch", grace_period=1
            )
        return None

    def _tuner(self) -> tune.Tuner:
        path = str(self.experiment_path)
        if tune.Tuner.can_restore(path):  # the driver stopped mid-sweep: Tune's state and the searcher's
            return tune.Tuner.restore(path, trainable=self._trainable(), resume_unfinished=True, resume_errored=False)
        spec, b = self.spec, self.spec.backend
        searcher = ArchSearch(spec)
        search_alg = ConcurrencyLimiter(searcher, b.max_concurrent) if b.max_concurrent else searcher
        return tune.Tuner(
            self._trainable(),
            tune_config=tune.TuneConfig(
                search_alg=search_alg,
                scheduler=self._scheduler(),
                num_samples=spec.search.trials,
                time_budget_s=spec.search.timeout,
                reuse_actors=True,  # a fresh worker spends seconds importing torch and mlflow
                trial_dirname_creator=_trial_folder,
            ),
            run_config=tune.RunConfig(
                name=spec.name,
                storage_path=self.storage,
                failure_config=tune.FailureConfig(max_failures=b.max_failures),
                checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
                callbacks=[_Bookkeeper()],
                verbose=0,
            ),
        )

    def run(self) -> None:
        # Tune keeps one trial pending at a time for a searcher; worker start-up would then
        # serialise the sweep. As many pending as can run at once.
        slots = self.spec.backend.max_concurrent or max(1, int(ray.cluster_resources().get("CPU", 1)))
        os.environ["TUNE_MAX_PENDING_TRIALS_PG"] = str(slots)
        _ACTIVE[:] = [self]
        self.stack.callback(_watch(_lifelines(), self._runtime_lost).set)  # before Ray is stopped on purpose
        main = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGINT, _stop_now) if main else None
        try:
            grid = self._tuner().fit()
            # Tune answers Ctrl-C by saving its state, stopping the trials and returning from
            # fit() as if the sweep were over; its handler puts back the one it replaced
            # (ours), which otherwise stays replaced. Said as the local backend says it.
            pressed = main and signal.getsignal(signal.SIGINT) is _stop_now
        finally:
            _ACTIVE.clear()
            if main:
                signal.signal(signal.SIGINT, previous)
        if self._record(grid) and pressed:
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
        """The searcher's study (restored from Tune's saved state) becomes the sweep's
        journal study, with the reasons of failed trials; MLflow runs of trials that Tune
        lost with a killed driver (created after its last saved state) are removed, since
        those trials ran again under the same number. True when trials were left unfinished
        (by Ctrl-C or the time budget: they run again on the next run)."""
        source = self._saved_study()
        reasons = {r.config["number"]: _reason(r.error) for r in grid if r.error is not None and r.config}
        self.last_checkpoints = {r.config["number"]: r.checkpoint for r in grid if r.checkpoint and r.config}
        journal = self.store / "optuna" / f"{self.spec.name}.journal"
        journal.parent.mkdir(parents=True, exist_ok=True)
        journal.unlink(missing_ok=True)
        self.study = optuna.create_study(
            study_name=self.spec.name, storage=journal_storage(journal, owned=True), directions=source.directions
        )
        name_metrics(self.study, self.spec)
        keys, unfinished = set(), 0
        for t in source.get_trials(deepcopy=True):
            keys.add(t.user_attrs.get("tune_trial_id"))
            attrs = dict(t.user_attrs)
            if t.state == TrialState.FAIL and "fail_reason" not in attrs:
                attrs["fail_reason"] = reasons.get(t.number, "failed")
            state = t.state if t.state.is_finished() else TrialState.FAIL  # uncounted: it reruns
            unfinished += state != t.state
            self.study.add_trial(
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
        runs = self.tracker.trial_runs(self.spec.name)
        lost = [r.info.run_id for r in runs if r.data.tags.get(ATTEMPT_TAG) not in keys]
        self.tracker.delete_runs(lost)
        self.tracker.close_orphans(self.spec.name)
        return unfinished > 0


# -- a cluster on this machine, for trying it out and for the tests ------------------------


def _ray_cli() -> str:
    return str(Path(sys.executable).parent / "ray")


def cluster_up(workers: int = 1, cpus: int = 1, port: int = 6390) -> str:
    """A head (127.0.0.2) and ``workers`` worker nodes (127.0.0.3, ...) on this machine,
    token authentication on, dashboard off. Returns the head's address."""
    from runs.tracking import free_port

    ensure_token()
    address = f"{HEAD_NODE}:{port}"
    common = ["--num-cpus", str(cpus), "--object-store-memory", str(200 * 2**20), "--disable-usage-stats"]
    env = {**os.environ, "RAY_AUTH_MODE": os.environ.get("RAY_AUTH_MODE", "token")}
    # A lost node is declared dead after ~3 s, not Ray's ~15 s (5 failed checks, 3 s apart):
    # until then Tune may place a lost trial's retries on it, each one a failure more.
    env |= {"RAY_health_check_period_ms": "1000", "RAY_health_check_failure_threshold": "3"}
    head = ["start", "--head", "--node-ip-address", HEAD_NODE, "--port", str(port), "--include-dashboard=false"]
    subprocess.run([_ray_cli(), *head, *common], env=env, check=True, capture_output=True)
    for i in range(workers):
        node = WORKER_NODES.format(3 + i)
        agents = ["--dashboard-agent-listen-port", str(free_port()), "--runtime-env-agent-port", str(free_port())]
        cmd = [_ray_cli(), "start", "--address", address, "--node-ip-address", node, *agents, *common]
        subprocess.run(cmd, env=env, check=True, capture_output=True)
    return address


def cluster_down(address: str, grace: float = 3.0) -> int:
    """Stops the cluster whose GCS is at ``address``: its nodes on this machine and what
    they started (agents, workers), SIGTERM then SIGKILL after ``grace`` seconds (a raylet
    takes 10 s to end on SIGTERM, the GCS longer: nothing of theirs needs keeping). Never
    another Ray runtime of this user, as ``ray stop`` would (a sweep's private runtime
    beside it, say). Returns how many processes it stopped."""
    import psutil  # after ray, which brings its own copy

    mine = [p for p in psutil.process_iter(["cmdline", "uids"]) if getattr(p.info["uids"], "real", -1) == os.getuid()]
    roots = [proc for proc in mine if _in_cluster(address, proc.info["cmdline"] or [])]
    family = list({proc.pid: proc for root in roots for proc in [root, *_descendants(root)]}.values())
    alive = family
    for signum, timeout in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        for proc in alive:
            with suppress(psutil.NoSuchProcess):
                proc.send_signal(signum)
        deadline = time.monotonic() + timeout
        while (alive := [proc for proc in alive if not _ended(proc)]) and time.monotonic() < deadline:
            time.sleep(0.1)
    return len(family)


def _ended(proc) -> bool:
    """Gone, or a zombie (what is left of a process until its parent, often init, reaps it)."""
    import psutil

    try:
        return proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _in_cluster(address: str, cmdline: list[str]) -> bool:
    """Whether a command line is one of the cluster's own: every node process but the GCS
    names its address (the raylet inside one of its arguments); the GCS, its port and host.
    Workers and agents rename themselves (ray::IDLE): they are found as the raylets' children."""
    host, port = address.rsplit(":", 1)
    words = set(" ".join(cmdline).split())
    if f"--gcs-address={address}" in words:
        return True
    gcs = {f"--gcs_server_port={port}", f"--node-ip-address={host}"}
    return bool(cmdline) and cmdline[0].endswith("gcs_server") and gcs <= words


def _descendants(proc) -> list:
    import psutil

    try:
        return proc.children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def cluster_status(address: str) -> str:
    out = subprocess.run([_ray_cli(), "status", "--address", address], capture_output=True, text=True, check=False)
    return out.stdout if out.returncode == 0 else f"no cluster at {address}: {out.stderr.strip().splitlines()[-1:]}"

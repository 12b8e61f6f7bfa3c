"""The path every trial takes, on every backend: drawn from the study, made into a model
and a training config, opened as an MLflow child run, run on the backend's executor,
and its outcome told to the study and written to its run.

A backend supplies only the executor (a process of this machine, a Ray worker) and calls,
in order: ``draw`` (where the study is), ``materialise`` (where the data is), ``open_run``,
then ``completed`` / ``refused`` / ``Outcome`` from what its executor returned,
``close_run`` (where the tracker is) and ``tell`` (where the study is). A repeated draw
comes back from ``draw`` already answered (``Draw.repeat``): nothing trains. A draw of an
architecture whose earlier trial was pruned comes back continuing it (``Draw.continues``,
``Draw.trained``): the backend trains it on from the pruned trial's checkpoint, only the
epochs that are left, with the pruned trial's seed (``continued_of``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

import optuna
from optuna.trial import FrozenTrial, TrialState

from blocks import ArchSpec, summary
from runs.data import Dataset
from runs.tags import ARCH_TAG, ARM_TAG, CONTINUES_TAG, DUPLICATE_TAG, RESUMED_TAG, SEED_TAG
from runs.tracking import Tracker
from runs.train import TrainConfig
from runs.trial import Infeasible
from search.pruners.mo_asha import RUNGS_ATTR
from search.spec import Spec
from search.spec.arch import to_arch
from search.spec.space import sample
from search.sweep.knowledge import draw_key, trial_params
from search.sweep.study import state_of

# -- outcomes --------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """How a trial that ran to its end is recorded: ``state`` complete, infeasible or
    duplicate, the objective values told to Optuna (None for a trial refused before
    training: it has no accuracy, and is told PRUNED), and the constraint violations
    (<= 0: satisfied) that make the samplers rank infeasible trials below feasible ones."""

    state: str
    reason: str
    metrics: dict[str, float]
    values: tuple[float, ...] | None
    violations: tuple[float, ...]  # one per constraint_names(spec)
    duplicate_of: int | None = None  # state duplicate: the trial whose result this is

    @classmethod
    def from_dict(cls, d: Mapping) -> Outcome:
        """From ``asdict`` (how it travels in a Ray trial's config)."""
        values = None if d["values"] is None else tuple(d["values"])
        return cls(d["state"], d["reason"], dict(d["metrics"]), values, tuple(d["violations"]), d["duplicate_of"])

    def as_text(self) -> str:
        """As JSON text, how it travels in a Ray trial's result: Tune hands its searcher the
        result flattened (``outcome/metrics/gmacs``), a string arrives whole."""
        return json.dumps(asdict(self))

    @classmethod
    def from_text(cls, text: str) -> Outcome:
        return cls.from_dict(json.loads(text))


def constraint_names(spec: Spec) -> list[str]:
    return [str(c) for c in spec.constraints] + ["buildable"]


def completed(spec: Spec, metrics: dict[str, float]) -> Outcome:
    """A trial that trained: complete, or infeasible when it breaks a constraint on what
    training measured (its values are real: Optuna's plots show it as infeasible)."""
    violations = [c.violation(metrics[c.metric]) for c in spec.constraints]
    broken = [str(c) for c, v in zip(spec.constraints, violations, strict=True) if v > 0]
    values = tuple(metrics[o.metric] for o in spec.objectives)
    if broken:
        return Outcome("infeasible", "breaks " + ", ".join(broken), metrics, values, (*violations, 0.0))
    return Outcome("complete", "", metrics, values, (*violations, 0.0))


def refused(spec: Spec, err: Infeasible) -> Outcome:
    """A trial refused before training: by the builder (nothing measured) or for a cost
    constraint (its cost measured). Values only when every objective is a measured cost."""
    known = all(o.metric in err.cost for o in spec.objectives)
    values = tuple(err.cost[o.metric] for o in spec.objectives) if known else None
    buildable = 0.0 if err.cost else 1.0
    return Outcome("infeasible", err.reason, dict(err.cost), values, (*err.violations, buildable))


def repeated(spec: Spec, original: FrozenTrial) -> Outcome:
    """A repeat of ``original``'s draw, answered with its metrics, values and constraints
    without training (told to Optuna as PRUNED: see ``told_as``)."""
    reason = f"same draw as t{original.number:02d}"
    if original.user_attrs.get("reason"):
        reason += f": {original.user_attrs['reason']}"
    violations = tuple(original.constraints.get(name, 0.0) for name in constraint_names(spec))
    metrics = dict(original.user_attrs.get("metrics", {}))
    values = tuple(original.values) if original.values is not None else None
    return Outcome("duplicate", reason, metrics, values, violations, original.number)


# -- drawing a trial -------------------------------------------------------------------


@dataclass(frozen=True)
class Draw:
    """A trial as drawn from the study: its sampled model and train sections, the seed it
    trains with, extra MLflow tags, and ``repeat``: the answer when the same draw was
    trained before (``arch``: that trial's summary line). ``continues``: the number of
    the pruned trial of the same draw that this one trains on (from that trial's
    checkpoint, with its seed), ``trained`` the epochs that trial had trained in all,
    which this one does not train again; None and 0 for a draw trained from scratch.
    Plain data (``as_dict``) where it must travel (Ray's config)."""

    number: int
    model: dict
    train: dict
    seed: int
    tags: dict[str, str] = field(default_factory=dict)
    repeat: Outcome | None = None
    arch: str = ""
    continues: int | None = None
    trained: int = 0

    @classmethod
    def from_dict(cls, d: Mapping) -> Draw:
        repeat = None if d.get("repeat") is None else Outcome.from_dict(d["repeat"])
        tags, arch = dict(d["tags"]), d.get("arch", "")
        return cls(
            d["number"], d["model"], d["train"], d["seed"], tags, repeat, arch, d.get("continues"), d.get("trained", 0)
        )

    def as_dict(self) -> dict:
        return asdict(self)


CONTINUES_ATTR = "continues"  # user attribute: the pruned trial a trial continues


def trial_seed(spec: Spec, number: int) -> int:
    """The seed a sampled trial trains with (a continuation: its first trial's, ``first_of``)."""
    return spec.search.seed + number


def first_of(study: optuna.Study, trial: FrozenTrial) -> FrozenTrial:
    """The trial that started ``trial``'s training: itself, or the first of the pruned
    trials it continues (user attribute ``continues``, followed back)."""
    if CONTINUES_ATTR not in trial.user_attrs:
        return trial
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    while trial.user_attrs.get(CONTINUES_ATTR) in trials:
        trial = trials[trial.user_attrs[CONTINUES_ATTR]]
    return trial


def trained_epochs(trial: FrozenTrial) -> int:
    """The epochs a pruned trial had trained when it stopped, in all (those of the trials it
    continues included): the last rung MO-ASHA judged it at (user attribute ``rungs``,
    ``[[epochs, arrival, vector], ...]``, kept on every backend), else its ``metrics``'
    ``epochs`` (a replay's), else its last intermediate value's step + 1 (Optuna's
    single-objective pruners report each epoch at step epoch - 1); 0 when nothing says
    (such a trial is trained again from scratch)."""
    rungs = trial.user_attrs.get(RUNGS_ATTR) or []
    if rungs:
        return int(max(epochs for epochs, *_ in rungs))
    if "epochs" in trial.user_attrs.get("metrics", {}):
        return int(trial.user_attrs["metrics"]["epochs"])
    return max(trial.intermediate_values, default=-1) + 1


def draw(spec: Spec, study: optuna.Study, trial) -> Draw:
    """An Optuna trial's draw: a sample of the space, or an (arm, seed) of the ablation
    (queued with ``enqueue_trial``). A sample's key is kept as the user attribute
    ``draw``; a draw trained before is answered from the earlier trial (``repeat_of``)."""
    if spec.ablation is not None:
        index = trial.suggest_categorical("arm", spec.ablation.runnable)
        repeat = trial.suggest_categorical("seed", list(range(spec.ablation.seeds)))
        arm = spec.ablation.arms[index]
        trial.set_user_attr("arm", index)
        trial.set_user_attr("seed", repeat)
        tags = {ARM_TAG: arm.name, SEED_TAG: str(repeat)}
        return Draw(trial.number, dict(arm.model), dict(arm.train), repeat, tags)
    model_cfg, train_cfg = sample(spec.model, trial, "model"), sample(spec.train, trial, "train")
    trial.set_user_attr("draw", draw_key(model_cfg, train_cfg))
    original = repeat_of(study, trial)
    if original is None:
        pruned = continued_of(study, trial)
        if pruned is None:
            return Draw(trial.number, model_cfg, train_cfg, trial_seed(spec, trial.number))
        # trained on from the pruned trial's checkpoint, with the seed it started with
        trial.set_user_attr(CONTINUES_ATTR, pruned.number)
        seed, tags = trial_seed(spec, first_of(study, pruned).number), {CONTINUES_TAG: str(pruned.number)}
        line = pruned.user_attrs.get("arch", "")
        return Draw(trial.number, model_cfg, train_cfg, seed, tags, None, line, pruned.number, trained_epochs(pruned))
    # its params, and the seed its result came from
    tags = {DUPLICATE_TAG: str(original.number)}
    answer = repeated(spec, original)
    seed, line = trial_seed(spec, first_of(study, original).number), original.user_attrs.get("arch", "")
    return Draw(trial.number, model_cfg, train_cfg, seed, tags, answer, line)


def repeat_of(study: optuna.Study, trial) -> FrozenTrial | None:
    """The earliest other trial with ``trial``'s draw that finished (complete or
    infeasible): ``trial`` is answered from it instead of training the same again."""
    key = trial.user_attrs.get("draw")
    if key is None:  # an ablation's (arm, seed): distinct by design
        return None
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)):
        if t.number != trial.number and t.user_attrs.get("draw") == key and state_of(t) in ("complete", "infeasible"):
            return t
    return None


def continued_of(study: optuna.Study, trial) -> FrozenTrial | None:
    """The pruned trial that ``trial`` (a draw none finished before: ``repeat_of``) trains
    on: of the trials with its draw that were pruned after some epochs (``trained_epochs``),
    the one that trained the most (the latest of a chain: a continuation pruned again at a
    later rung), the latest of equals. None: it trains from scratch."""
    key = trial.user_attrs.get("draw")
    if key is None:
        return None
    best, most = None, 0
    for t in study.get_trials(deepcopy=False, states=(TrialState.PRUNED,)):
        if t.number == trial.number or t.user_attrs.get("draw") != key or state_of(t) != "pruned":
            continue
        epochs = trained_epochs(t)
        if epochs > 0 and epochs >= most:
            best, most = t, epochs
    return best


# -- where the data is -----------------------------------------------------------------


def materialise(spec: Spec, drawn: Draw, data: Dataset) -> tuple[ArchSpec, TrainConfig, str]:
    """(architecture, training config, one-line summary) of a draw, for ``data``."""
    geo = data.geometry
    arch = data.normalising(to_arch(drawn.model, geo.image_size, geo.num_classes, geo.channels))
    cfg = TrainConfig.from_mapping({**drawn.train, "crop": spec.data.crop, "flip": spec.data.flip})
    return arch, cfg, summary(arch)


# -- where the tracker is --------------------------------------------------------------


def run_name(drawn: Draw, line: str) -> str:
    if ARM_TAG in drawn.tags:
        return f"t{drawn.number:02d} {drawn.tags[ARM_TAG]} s{drawn.seed}"
    if drawn.repeat is not None:
        return f"t{drawn.number:02d} = t{drawn.repeat.duplicate_of:02d} {line}"
    if drawn.continues is not None:
        return f"t{drawn.number:02d} continues t{drawn.continues:02d} {line}"
    return f"t{drawn.number:02d} {line}"


def open_run(tracker: Tracker, parent: str, spec: Spec, drawn: Draw, line: str, key: str = "") -> str:
    """The trial's MLflow child run (with ``key``, the backend's id of the trial: a retry
    continues the same run)."""
    params = trial_params(drawn.model, drawn.train, drawn.seed)
    tags = {ARCH_TAG: line, **drawn.tags}
    return tracker.trial_run(parent, spec.name, drawn.number, run_name(drawn, line), params, tags, key=key)


class TrialLog:
    """A trial's MLflow run as its epochs arrive, kept the same way on either backend (by
    the local sweep's process, by a Ray worker): each epoch's metrics at its step, once
    (``logged``: the last epoch already logged, by this process or before a retry), and
    the epoch a retry resumed from."""

    def __init__(self, tracker: Tracker, run: str, logged: int = -1) -> None:
        self.tracker, self.run, self.logged = tracker, run, logged

    def epoch(self, epoch: int, metrics: dict) -> None:
        """Epoch ``epoch`` (0-based) ended with ``metrics``."""
        if epoch > self.logged:
            self.tracker.log_metrics(self.run, metrics, step=epoch)
            self.logged = epoch

    def resumed(self, epoch: int, metrics: dict) -> None:
        """A retry continues from the checkpoint of ``epoch``, whose metrics these were
        (logged now if the crash came between the checkpoint and its logging)."""
        self.tracker.set_tags(self.run, {RESUMED_TAG: str(epoch + 1)})
        self.epoch(epoch, metrics)


def close_run(tracker: Tracker, run: str, outcome: Outcome) -> None:
    """The outcome's metrics (final, at the last epoch's step; or the cost measured before
    refusing it) and its state and reason, and the run ended."""
    if outcome.metrics:
        tracker.log_metrics(run, outcome.metrics, step=int(outcome.metrics.get("epochs", 0)))
    tracker.end_trial(run, outcome.state, outcome.reason)


# -- where the study is ----------------------------------------------------------------


def record(trial, spec: Spec, outcome: Outcome) -> None:
    """The outcome on an Optuna trial that is still running: its constraints (what the
    samplers learn feasibility from) and archsweep's user attributes."""
    for name, value in zip(constraint_names(spec), outcome.violations, strict=True):
        trial.set_constraint(name, value)
    trial.set_user_attr("state", outcome.state)
    if outcome.metrics:
        trial.set_user_attr("metrics", dict(outcome.metrics))
    if outcome.reason:
        trial.set_user_attr("reason", outcome.reason)
    if outcome.duplicate_of is not None:
        trial.set_user_attr("duplicate_of", outcome.duplicate_of)


def told_as(outcome: Outcome) -> TrialState:
    """The state Optuna is told an outcome in: COMPLETE with its values; PRUNED when it has
    none to count on a front: refused before training (its constraint violations still
    teach the samplers), or a repeat of a finished trial. As COMPLETE a repeat would stand
    on ``best_trials`` and the Pareto plots beside its original, counted twice. PRUNED
    rather than FAIL: TPE ranks a pruned draw among those to avoid, so it draws something
    new, where a FAIL it never reads (bench search: TPE on digits reaches 99% of the exact
    hypervolume in 92 evaluations told PRUNED, never within 400 told FAIL or COMPLETE).
    ``study.state_of`` still says duplicate; ``study.counted`` does not count it (it uses
    none of the budget: ``search.sweep.budget``)."""
    return TrialState.PRUNED if outcome.values is None or outcome.duplicate_of is not None else TrialState.COMPLETE


def tell(study: optuna.Study, trial, spec: Spec, outcome: Outcome) -> None:
    """Record and finish ``trial`` (asked with ``study.ask``) in the state ``told_as`` says."""
    record(trial, spec, outcome)
    state = told_as(outcome)
    if state == TrialState.COMPLETE:
        study.tell(trial, list(outcome.values))
    else:
        study.tell(trial, state=state)

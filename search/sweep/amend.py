"""Continuing a sweep whose spec changed (an amended resume): what becomes of each earlier trial.

Optuna refuses a changed distribution under a parameter's name (optuna#2671), so the
study is rebuilt rather than continued: the earlier study is kept whole under an archive
name (``<name>~<sha of the spec it ran>``), and a new study of the same name receives every
earlier trial, in order, so that trial numbers (and the seeds and run names made from them)
stay what they were:

- a trial whose architecture and training the amended space can draw keeps its results,
  with its parameters as the amended space names them (a new dimension: the value the
  trial had, which is the earlier fixed value or the block's default; a widened range or a
  new choice: unchanged), and informs the sampler;
- a trial the amended space cannot draw (a removed choice, a narrowed range, a changed
  fixed value) is recorded FAIL, which no sampler reads, with the reason ``outside the
  amended space: ...``; its MLflow run is tagged so, and it still counts for the front
  when it trained to completion (``study.feasible``);
- a trial outside an earlier amendment's space that this one can draw again returns, with
  its results, as it was before (its configuration is kept on it for this);
- failed and interrupted trials stay what they were.

Changes that make earlier results incomparable (the data, the objectives, the
constraints, a fixed training setting, an ablation) are refused: such a study starts
under a new name. The earlier study stays in the journal, marked pending until the
sweep's parent run has taken the amended spec, so a crash mid-amendment is undone by
running again: the rebuild starts over from that archive. Each amendment has an archive of
its own, even when a spec returns to one it had before.
"""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import optuna
import yaml
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import FrozenTrial, TrialState

from blocks.registry import EMBEDDINGS, MIXERS, TRANSITIONS
from runs.data import geometry
from search.spec import Spec
from search.spec import schema as F
from search.spec.arch import to_arch
from search.spec.checker import Checker
from search.spec.model_space import model_space, train_space
from search.spec.space import DIMENSIONS, flatten, sample
from search.sweep.pipeline import draw_key
from search.sweep.study import OUTSIDE_ATTR

CONFIG_ATTR = "outside_config"  # what an outside trial trained: {"model": ..., "train": ...}
PENDING_ATTR = "archsweep.amending"  # on an archive study until its amendment is recorded
INCOMPARABLE = ("data", "objectives", "constraints", "ablation")  # changes refused outright
_REGISTRIES = {"mixer": MIXERS, "embedding": EMBEDDINGS, "transition": TRANSITIONS}
# Keys that a space may not write, and what earlier trials had when it did not.
_WRITTEN_ONLY = {"transition": "none", **{k: f.default for k, f in F.WRITTEN_MODEL_FIELDS.items()}}


class Outside(Exception):
    """An earlier trial the amended space cannot draw; the message says why."""


@dataclass
class Plan:
    """What an amended resume does: the spec's changes (``path: old -> new``), the reasons
    it is refused (empty: it may go on), the earlier trials kept (number -> params and
    distributions in the amended space, and the draw key), and those outside it (number ->
    reason)."""

    changes: list[str]
    refused: list[str] = field(default_factory=list)
    kept: dict[int, tuple[dict, dict, str]] = field(default_factory=dict)
    outside: dict[int, str] = field(default_factory=dict)
    archive: str = ""  # the study name the earlier trials are kept under
    configs: dict[int, dict] = field(default_factory=dict)  # what each outside trial trained
    returning: set[int] = field(default_factory=set)  # kept ones that an earlier amendment put outside

    def summary(self) -> str:
        """What becomes of the earlier trials, in one line."""
        return (
            f"{len(self.kept)} earlier trial(s) kept in the amended space, "
            f"{len(self.outside)} outside it (kept in MLflow and the report, never parents)"
        )

    def as_text(self) -> str:
        """The amendment as logged on the parent run: the changes, then each earlier trial's fate."""
        lines = ["changes:", *(f"  {c}" for c in self.changes), self.summary()]
        lines += [f"  t{n:02d}: outside the amended space: {why}" for n, why in sorted(self.outside.items())]
        lines += [f"  t{n:02d}: back inside the amended space" for n in sorted(self.returning)]
        return "\n".join(lines) + "\n"


def archive_name(name: str, earlier_spec: Mapping) -> str:
    """The first name the study run with ``earlier_spec`` is kept under when the sweep is
    amended (see ``archive_for``)."""
    text = yaml.safe_dump(dict(earlier_spec), sort_keys=True)
    return f"{name}~{hashlib.sha256(text.encode()).hexdigest()[:12]}"


def archive_for(storage, name: str, earlier_spec: Mapping) -> tuple[str, bool]:
    """Where this amendment keeps the earlier study, and whether a crash left it half done
    (its archive is then the one to rebuild from). A name not taken otherwise: a spec
    amended back to one it ran before has trials since, which the older archive lacks."""
    summaries = optuna.get_all_study_summaries(storage, include_best_trial=False) if storage is not None else []
    for summary in summaries:
        if summary.study_name.startswith(f"{name}~") and summary.user_attrs.get(PENDING_ATTR):
            return summary.study_name, True
    taken, base = {s.study_name for s in summaries}, archive_name(name, earlier_spec)
    archive, k = base, 1
    while archive in taken:
        k += 1
        archive = f"{base}-{k}"
    return archive, False


def settle(storage, archive: str) -> None:
    """The amendment is recorded (the parent run has the amended spec): its archive is an
    archive, no longer the source of a rerun."""
    optuna.load_study(study_name=archive, storage=storage).set_user_attr(PENDING_ATTR, False)


def _spaces(resolved: Mapping) -> tuple[dict, dict]:
    """The model and train spaces of a resolved spec (as logged: it validated when it ran)."""
    c = Checker([])
    model, train = model_space(c, resolved.get("model") or {}), train_space(c, resolved.get("train") or {})
    if c.issues:
        raise ValueError("; ".join(str(i) for i in c.issues[:3]))
    return model, train


def refusals(earlier: Mapping, spec: Spec, changes: list[str]) -> list[str]:
    """Why the changes make earlier results incomparable (empty when they do not)."""
    found = [c for c in changes if c.split(":", 1)[0].split(".", 1)[0].split("[", 1)[0] in INCOMPARABLE]
    _, old_train = _spaces(earlier)
    for key, value in spec.train.items():  # a fixed setting changed; a dimension may change freely
        old = old_train.get(key)
        if not isinstance(value, DIMENSIONS) and not isinstance(old, DIMENSIONS) and old != value:
            found.append(f"train.{key}: {old!r} -> {value!r} (a fixed training setting)")
    return found


def _lookup(config: Any, name: str) -> Any:
    """The value an earlier concrete config has at parameter ``name`` (``model.stages.0.mixer.
    attention.heads``: indices as dots, a named block's options under its name)."""
    node = config
    for part in name.split("."):
        if isinstance(node, Mapping) and set(node) == {"name", "options"}:
            if part != node["name"]:
                raise KeyError(name)
            node = node["options"]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        elif isinstance(node, Mapping) and part in node:
            node = node[part]
        else:
            raise KeyError(name)
    return node["name"] if isinstance(node, Mapping) and set(node) == {"name", "options"} else node


def _default(name: str) -> Any:
    """What an earlier trial had at a key its space did not write: a written-only key's
    default, or a named block's option at its constructor's default."""
    parts = name.split(".")
    if parts[-1] in _WRITTEN_ONLY:
        return _WRITTEN_ONLY[parts[-1]]
    for kind, registry in _REGISTRIES.items():
        if len(parts) >= 3 and parts[-3] == kind and parts[-2] in registry:
            param = inspect.signature(registry[parts[-2]]).parameters.get(parts[-1])
            if param is not None and param.default is not inspect.Parameter.empty:
                return param.default
    raise Outside(f"{name}: the earlier space had no value here")


class _Relocating:
    """A trial that answers each suggestion of the amended space with an earlier trial's
    value, recording the amended distributions; a value the amended space lacks is Outside."""

    def __init__(self, config: dict) -> None:
        self.config, self.params, self.distributions = config, {}, {}

    def _value(self, name: str) -> Any:
        try:
            return _lookup(self.config, name)
        except KeyError:
            return _default(name)

    def suggest_categorical(self, name, choices):
        value = self._value(name)
        if value not in choices:
            raise Outside(f"{name}: {value!r} is not among {list(choices)}")
        return self._keep(name, value, CategoricalDistribution(list(choices)))

    def suggest_int(self, name, low, high, *, step=1, log=False):
        value = self._value(name)
        if not (isinstance(value, int) and low <= value <= high and (log or (value - low) % step == 0)):
            raise Outside(f"{name}: {value!r} is outside [{low}, {high}]" + (f" step {step}" if step != 1 else ""))
        return self._keep(name, value, IntDistribution(low, high, step=step, log=log))

    def suggest_float(self, name, low, high, *, step=None, log=False):
        value = self._value(name)
        if not (isinstance(value, (int, float)) and low <= value <= high):
            raise Outside(f"{name}: {value!r} is outside [{low}, {high}]")
        return self._keep(name, float(value), FloatDistribution(low, high, step=step, log=log))

    def _keep(self, name, value, distribution):
        self.params[name], self.distributions[name] = value, distribution
        return value


def relocate(spec: Spec, old_model: dict, old_train: dict, *, same_training: bool = True) -> tuple[dict, dict, str]:
    """An earlier trial's (params, distributions, draw key) in the amended space of
    ``spec``; Outside when the space cannot draw what the trial trained (its architecture
    only, without ``same_training``: a warm start that trains it again)."""
    trial = _Relocating({"model": old_model, "train": old_train})
    model, train = sample(spec.model, trial, "model"), sample(spec.train, trial, "train")
    geo = geometry(spec.data)
    if to_arch(model, geo.image_size, geo.num_classes, geo.channels) != to_arch(
        old_model, geo.image_size, geo.num_classes, geo.channels
    ):
        old, new = flatten(old_model, "model"), flatten(model, "model")
        changed = [k for k in new if k in old and old[k] != new[k]]
        if changed:
            raise Outside(f"{changed[0]}: {old[changed[0]]!r}, which the amended space fixes at {new[changed[0]]!r}")
        raise Outside("its architecture is not one the amended space draws")
    if same_training and train != old_train:
        raise Outside("its training settings are not ones the amended space draws")
    return trial.params, trial.distributions, draw_key(model, train)


def plan(earlier: Mapping, spec: Spec, changes: list[str], trials: list[FrozenTrial], archive: str = "") -> Plan:
    """What an amended resume of ``trials`` (run with the resolved spec ``earlier``) does,
    keeping them under ``archive`` (by default ``archive_name``)."""
    result = Plan(changes, refusals(earlier, spec, changes), archive=archive or archive_name(spec.name, earlier))
    if result.refused:
        return result
    old_model, old_train = _spaces(earlier)
    for t in trials:
        config = t.user_attrs.get(CONFIG_ATTR)  # an earlier amendment's outside trial
        if config is None and t.state not in (TrialState.COMPLETE, TrialState.PRUNED):
            continue  # failed and interrupted trials stay as they are
        try:
            if config is None:
                fixed = optuna.trial.FixedTrial(t.params)
                config = {"model": sample(old_model, fixed, "model"), "train": sample(old_train, fixed, "train")}
            result.kept[t.number] = relocate(spec, config["model"], config["train"])
            if CONFIG_ATTR in t.user_attrs:
                result.returning.add(t.number)
        except Outside as why:
            result.outside[t.number], result.configs[t.number] = str(why), config
    return result


def rebuild(storage, spec: Spec, amendment: Plan, directions: list[str]) -> None:
    """The sweep's study rebuilt for the amended space (see the module's docstring): the
    earlier study archived first (once: a rerun after a crash starts from the archive,
    pending until ``settle``)."""
    names = {s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False)}
    if amendment.archive not in names:
        optuna.copy_study(
            from_study_name=spec.name, from_storage=storage, to_storage=storage, to_study_name=amendment.archive
        )
        optuna.load_study(study_name=amendment.archive, storage=storage).set_user_attr(PENDING_ATTR, True)
    earlier = optuna.load_study(study_name=amendment.archive, storage=storage).get_trials(deepcopy=False)
    if spec.name in names:
        optuna.delete_study(study_name=spec.name, storage=storage)
    study = optuna.create_study(study_name=spec.name, storage=storage, directions=directions)
    study.add_trials([_carried(t, amendment) for t in earlier])


def _carried(t: FrozenTrial, amendment: Plan) -> FrozenTrial:
    """Trial ``t`` as the amended study holds it (see ``plan``)."""
    user, system = dict(t.user_attrs), dict(t.system_attrs)
    if t.number in amendment.kept:
        params, distributions, key = amendment.kept[t.number]
        state, values = t.state, t.values
        if t.number in amendment.returning:  # as it was before it went outside
            state, values = TrialState[user.pop("was_state")], user.pop("was_values")
            for name in (OUTSIDE_ATTR, CONFIG_ATTR, "fail_reason", "state", "reason"):
                user.pop(name, None)
            was, was_reason = user.pop("was"), user.pop("was_reason")
            user |= ({"state": was} if was is not None else {}) | ({"reason": was_reason} if was_reason else {})
        return optuna.trial.create_trial(
            state=state,
            params=params,
            distributions=distributions,
            values=values,
            intermediate_values=t.intermediate_values,
            user_attrs={**user, **({"draw": key} if "draw" in user else {})},
            system_attrs=system,
        )
    if t.number in amendment.outside:  # no sampler reads a FAIL; its results stay on the trial
        why = amendment.outside[t.number]
        reason = f"outside the amended space: {why}"
        if OUTSIDE_ATTR not in user:  # what it was, for an amendment that takes it back
            user |= {"was": user.get("state"), "was_reason": user.get("reason", ""), "was_state": t.state.name}
            user |= {"was_values": t.values}
        user |= {OUTSIDE_ATTR: why, CONFIG_ATTR: amendment.configs[t.number], "fail_reason": reason, "reason": reason}
        user["state"] = "outside"
        return optuna.trial.create_trial(
            state=TrialState.FAIL, user_attrs=user, system_attrs=system, intermediate_values=t.intermediate_values
        )
    # failed or interrupted: as they were, without parameters of the old space
    return optuna.trial.create_trial(state=TrialState.FAIL, user_attrs=user, system_attrs=system)

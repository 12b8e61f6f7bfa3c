"""YAML -> a frozen, typed ``Spec``; every problem found at once, located, one line each.

``load(path, overrides)`` returns the spec or raises ``SpecError`` whose ``issues`` read
``file:line:col: model.stages[1].mixer: unknown mixer 'fourrier' (did you mean 'fourier'?)``.
Nothing is created on disk while loading.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import optuna

from blocks import check as check_arch
from blocks.builder import did_you_mean
from runs import data as datasets
from runs.data import DataSpec
from runs.metrics import COST_METRICS, METRICS, PROXY_METRICS, Constraint, Objective
from search.pruners import PRUNERS
from search.samplers import SAMPLERS
from search.spec import ablation as ab
from search.spec import checks, inputs
from search.spec import schema as F
from search.spec.ablation import Ablation
from search.spec.arch import RandomTrial, check_buildable, check_sizes, to_arch
from search.spec.checker import Checker
from search.spec.model_space import model_space, train_space
from search.spec.schema import BackendSpec, SearchSpec
from search.spec.space import Choice, FloatRange, IntRange, as_written, dimensions, sample
from search.spec.yamlio import Document, Issue, Where, join, printable
from search.spec.yamlio import load as load_yaml
from search.tables.table import TableError
from search.tables.table import load as load_table

# The sampled parameters of completed trial N of a finished sweep (its spec given), or why
# not in one line: an ablation's ``base``. The caller gives it (search.sweep.warm.completed_params),
# so that loading a spec reads only the spec and the files it names, never another sweep's store.
TrialParams = Callable[["Spec", int], "dict[str, Any] | str"]

_CONSTRAINT = re.compile(r"^\s*([A-Za-z_][\w]*)\s*(<=|>=|<|>)\s*(\S+)\s*$")


class SpecError(ValueError):
    """A spec that cannot run; ``issues`` holds every problem, one line each."""

    def __init__(self, issues: list[Issue]) -> None:
        self.issues = list(issues)
        super().__init__("\n".join(str(i) for i in self.issues))


@dataclass(frozen=True)
class Spec:
    name: str
    file: str
    model: Mapping[str, Any]  # a space (see search.spec.space)
    train: Mapping[str, Any]  # a space
    data: DataSpec = field(default_factory=DataSpec)
    objectives: tuple[Objective, ...] = (Objective("val_accuracy", "max"),)
    constraints: tuple[Constraint, ...] = ()
    search: SearchSpec = field(default_factory=SearchSpec)
    backend: BackendSpec = field(default_factory=BackendSpec)
    experiment: str = ""
    tracking_uri: str | None = None  # without user and password (split_credentials)
    tracking_user: str | None = None
    tracking_password: str | None = field(default=None, repr=False)  # never pickled (see __getstate__)
    store: str = "out"  # where the embedded MLflow and Optuna stores live
    log_models: str | tuple[int, ...] = "pareto"  # whose trained models are logged: pareto, all, none or (numbers)
    register: str | None = None  # the MLflow registered model their versions go to
    description: str = ""
    ablation: Ablation | None = None  # when the spec has an ablation section
    warnings: tuple[Issue, ...] = ()  # what validate notes but run would refuse (missing data)
    resolved: Mapping[str, Any] = field(default_factory=dict)  # the merged YAML, as plain data

    def __getstate__(self) -> dict:
        # Ray pickles specs into its object store and Tune's saved searcher state: no password.
        return {**self.__dict__, "tracking_password": None}

    @property
    def sha(self) -> str:
        return hashlib.sha256(json.dumps(self.resolved, sort_keys=True, default=str).encode()).hexdigest()[:12]


def split_credentials(uri: str) -> tuple[str, str | None, str | None]:
    """(the URI without user and password, the user, the password): the spec keeps the
    first where it can be seen (spec.yaml, logs, Tune's saved state); runs.tracking
    hands the others to MLflow's client."""
    parts = urllib.parse.urlsplit(uri)
    if "@" not in parts.netloc:
        return uri, None, None
    host = parts.netloc.rsplit("@", 1)[1]
    user, password = urllib.parse.unquote(parts.username or ""), parts.password
    return parts._replace(netloc=host).geturl(), user or None, urllib.parse.unquote(password) if password else None


# -- extends and overrides ---------------------------------------------------------------


def _merge(base: Any, over: Any, path: str = "") -> Any:
    """``over`` on ``base``: mappings merge, except an ablation's factors, which a spec
    states whole (merged, a parent's factor would silently join the child's design)."""
    if isinstance(base, dict) and isinstance(over, dict) and path != "ablation.factors":
        return {**base, **{k: _merge(base.get(k), v, join(path, k)) for k, v in over.items()}}
    return over


# What a spec is, said to a file that is not one (an ``extends`` may name any file).
A_SPEC = "a spec is a mapping of sections such as model:, data:, search:"
SPEC_KEYS = frozenset({*F.TOP_FIELDS, "extends", "smoke"})


def _load_chain(
    path: Path, seen: tuple[Path, ...] = (), via: tuple[Where | None, str] | None = None
) -> tuple[Any, list[Document], list[Issue]]:
    """The merged data of ``path`` and the specs it extends. ``via``: where the spec that
    extends ``path`` names it, and the name as written there."""
    doc = load_yaml(path)
    refused = _not_a_spec(doc, path, via)
    if refused is not None:
        return None, [doc], [refused]
    if doc.issues:
        return None, [doc], doc.issues
    parent = doc.data.pop("extends", None)
    if parent is None:
        return doc.data, [doc], []
    where = doc.where("extends")
    if (problem := checks.path_text(parent)) is not None:
        return None, [doc], [Issue(where, "extends", problem)]
    target = (path.parent / parent).resolve()
    if target in seen or target == path.resolve():
        return None, [doc], [Issue(where, "extends", f"{parent} extends itself (a cycle)")]
    if not _exists(target):
        return None, [doc], [Issue(where, "extends", f"no such file {parent!r} (looked in {path.parent})")]
    base, docs, issues = _load_chain(target, (*seen, path.resolve()), (where, parent))
    return (_merge(base, doc.data) if not issues else None), [*docs, doc], issues


def _not_a_spec(doc: Document, path: Path, via: tuple[Where | None, str] | None) -> Issue | None:
    """One line for a file that cannot be read or is not a spec (None: it may be one);
    ``via``: where the extending spec names it, and how."""
    if via is not None:
        why = _why_not_a_spec(doc, path, via[1])
        return None if why is None else Issue(via[0], "extends", why)
    if doc.unread is not None:  # a folder, a FIFO, a device, too large
        return Issue(None, "", doc.unread)
    held = None if doc.data is None and doc.issues else _held(doc.data)
    if held is None:
        return None
    # An empty document's null sits after its "---": the file starts at 1:1.
    where = (doc.values.get("") if doc.data else None) or Where(doc.file, 1, 1)
    return Issue(where, "", f"not an archsweep spec (this file holds {held}; {A_SPEC})")


def _why_not_a_spec(doc: Document, path: Path, name: str) -> str | None:
    """Why the file ``path``, named ``name`` by a spec, is not a spec, in one line that says
    what it is and never what it holds: an extended /etc/shadow would otherwise be printed a
    line a key. None for a YAML syntax error (located in that file) or a spec."""
    if doc.unread is not None:  # a folder, a FIFO, a device, too large
        return _as_written(doc.unread, path, name)
    if doc.data is None and doc.issues:  # YAML syntax, not UTF-8, too deep: one line, located in the file
        return None
    held = _held(doc.data)
    return None if held is None else f"{name} is not an archsweep spec (it holds {held}; {A_SPEC})"


def _as_written(message: str, path: Path, name: str) -> str:
    """``message`` about the file ``path`` naming it as the spec wrote it (not resolved)."""
    shown = printable(str(path))
    return name + message[len(shown) :] if message.startswith(shown) else message


def _held(data: Any) -> str | None:
    """What a file that is not a spec holds, in words (None: it is a spec). A mapping with
    one section or more is a spec, whose misspelt keys are then named one by one."""
    if isinstance(data, dict) and not data.keys().isdisjoint(SPEC_KEYS):
        return None
    if data is None or data == {}:
        return "nothing"
    if isinstance(data, dict):
        return f"a mapping of {len(data)} key{'s' if len(data) > 1 else ''}, none of them a section"
    return "a list" if isinstance(data, list) else "text" if isinstance(data, str) else "a single value"


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except (OSError, ValueError):  # a name too long for the file system, a NUL
        return False


def _parse_path(text: str) -> list[Any]:
    # ASCII digits only: int() refuses the other characters str.isdigit takes ('²')
    return [int(p) if p.isascii() and p.isdigit() else p for p in re.split(r"\.|\[|\]\.?", text) if p != ""]


def _joined(parts: list[Any]) -> str:
    path = ""
    for part in parts:
        path = join(path, part)
    return path


def _command_line(text: str) -> Where:
    """Where an ``-o`` override is reported: as typed, escaped and cut short (one line)."""
    shown = printable(text)
    return Where(f"-o {shown if len(shown) <= 80 else shown[:77] + '...'}", 0, 0)


def _given_twice(overrides: list[str]) -> list[Issue]:
    """Warnings for a key path that two ``-o`` set: the last one is used, as scripts that
    add an ``-o`` to a base command expect, but never silently (a smoke override then an
    ``-o`` is the usual way to change a smoke run, and is not noted)."""
    first: dict[str, str] = {}
    notes = []
    for text in overrides:
        path = _joined(_parse_path(text.split("=", 1)[0])) if "=" in text else ""
        if path in first:
            message = f"set again (first by -o {printable(first[path])}); the last one, this, is used"
            notes.append(Issue(_command_line(text), printable(path), message))
        if path:
            first[path] = text
    return notes


def _override(data: dict, text: str, where: Where, overridden: dict[str, Where]) -> Issue | None:
    """Apply ``KEY.PATH=VALUE`` to ``data``; note in ``overridden`` that the key path's
    value comes from ``where`` (the command line, or the spec's smoke list), and so do the
    sections it creates (an unknown one is refused there, not at the top of the file)."""
    if "=" not in text:
        return Issue(where, "", "an override is KEY.PATH=VALUE, e.g. search.trials=50")
    key, raw = text.split("=", 1)
    parts, node, created = _parse_path(key), data, []
    if not parts:
        return Issue(
            where, "", f"an override names a key path before '=', e.g. search.trials=50; got {checks.shown(key)}"
        )
    doc = load_yaml("-o", raw)
    if doc.issues:
        return Issue(where, printable(key), f"the value {checks.shown(raw)} is not valid YAML")
    for i, part in enumerate(parts[:-1]):
        nxt = node[part] if isinstance(node, dict) and part in node else None
        if isinstance(node, list) and isinstance(part, int) and part < len(node):
            nxt = node[part]
        if nxt is None:
            if not isinstance(node, dict):
                return Issue(where, printable(key), f"{printable(_joined(parts[: i + 1]))} does not exist")
            nxt = node[part] = {}
            created.append(_joined(parts[: i + 1]))
        node = nxt
    if (isinstance(node, list) and isinstance(parts[-1], int) and parts[-1] < len(node)) or isinstance(node, dict):
        node[parts[-1]] = doc.data
    else:
        return Issue(where, printable(key), "does not name a key of the spec")
    path = _joined(parts)
    for older in [p for p in overridden if p.startswith((f"{path}.", f"{path}["))]:
        del overridden[older]  # set again, as part of this value
    overridden |= dict.fromkeys(created, where)
    overridden[path] = where
    return None


# -- the sections ------------------------------------------------------------------------


def _objectives(c: Checker, raw: Any) -> tuple[Objective, ...]:
    if raw is None:
        return (Objective("val_accuracy", "max"),)
    items = raw if isinstance(raw, list) else [raw]
    out = []
    for i, item in enumerate(items):
        path = join("objectives", i)
        if isinstance(item, str):
            item = {item: METRICS.get(item, "max")}
        if not isinstance(item, dict) or len(item) != 1:
            c.fail(path, "each objective is {metric: max} or {metric: min}")
            continue
        ((metric, direction),) = item.items()
        if metric not in METRICS:
            c.fail(
                join(path, metric),
                f"unknown metric {metric!r}{did_you_mean(metric, METRICS)}; known: {', '.join(METRICS)}",
                key=True,
            )
        elif direction not in ("max", "min"):
            c.fail(join(path, metric), f"direction must be max or min, got {direction!r}")
        else:
            out.append(Objective(metric, direction))
    if not items:
        c.fail("objectives", "needs at least one objective")
    if len({o.metric for o in out}) < len(out):
        c.fail("objectives", "lists a metric twice")
    return tuple(out)


def _constraints(c: Checker, raw: Any) -> tuple[Constraint, ...]:
    if raw is not None and not isinstance(raw, list):
        c.fail("constraints", f"expected a list of strings such as 'params <= 2e6', got {raw!r}")
        return ()
    out = []
    for i, item in enumerate(raw or []):
        path = join("constraints", i)
        m = _CONSTRAINT.match(item) if isinstance(item, str) else None
        if m is None:
            c.fail(path, f"a constraint reads 'metric <= number', e.g. 'params <= 2e6'; got {item!r}")
            continue
        metric, op, bound = m.groups()
        try:
            value = float(bound)
        except ValueError:
            c.fail(path, f"{bound!r} is not a number")
            continue
        if metric not in METRICS:
            c.fail(path, f"unknown metric {metric!r}{did_you_mean(metric, METRICS)}; known: {', '.join(METRICS)}")
            continue
        out.append(Constraint(metric, op, value))
    return tuple(out)


def _search(c: Checker, raw: dict, objectives, *, ray: bool, folder: Path) -> SearchSpec:
    s = SearchSpec(**c.section(raw, "search", F.SEARCH_FIELDS))
    s = replace(s, proxies=tuple(s.proxies))
    for i, name in enumerate(s.proxies):
        if name not in PROXY_METRICS:
            hint = did_you_mean(name, PROXY_METRICS)
            c.fail(join("search.proxies", i), f"unknown proxy {name!r}{hint}; known: {', '.join(PROXY_METRICS)}")
    if s.replay is not None:  # read now: a table that cannot be trusted is refused before anything runs
        table = (folder / s.replay).resolve()
        try:
            load_table(table)
            s = replace(s, replay=str(table))
        except TableError as err:
            c.fail("search.replay", f"not a table archsweep can replay: {err}")
    warm = s.warm_start
    if warm is not None and str(warm["from"]).endswith((".yaml", ".yml")):  # a spec file, beside this one
        source = (folder / warm["from"]).resolve()
        if (why := _earlier_spec_problem(source, warm["from"])) is not None:
            c.fail("search.warm_start", f"from: {why}")
        s = replace(s, warm_start={**warm, "from": str(source)})
    if s.pruner in PRUNERS and (why := PRUNERS[s.pruner].problem(objectives=len(objectives), ray=ray)):
        c.fail("search.pruner", why)
    if s.sampler in SAMPLERS and (why := SAMPLERS[s.sampler].problem(finite=not c.has_free_floats)):
        c.fail("search.sampler", why)
    return s


def _earlier_spec_problem(source: Path, name: str) -> str | None:
    """Why a warm start's spec file cannot be read as a spec: read when the sweep starts,
    a FIFO there would be waited on then, and garbage fail mid-run; both are refused now.
    Only read and parsed: that spec is validated when its sweep is reached."""
    if not _exists(source):
        return f"{name}: no such file"
    doc = load_yaml(source)
    why = _why_not_a_spec(doc, source, name)
    if why is None and doc.issues:
        why = f"{name} does not load: {doc.issues[0]}"
    return why


def _backend(c: Checker, raw: dict, tracking: dict, search: SearchSpec, objectives, folder: Path) -> BackendSpec:
    b = BackendSpec(**c.section(raw, "backend", F.BACKEND_FIELDS))
    if b.kind != "ray":
        return b
    if b.address != "local" and not tracking.get("uri"):
        c.fail(
            "backend.address",
            "the workers of a cluster cannot reach this machine's embedded store; "
            "set tracking.uri to an MLflow server that every node reaches",
        )
    if b.storage_path and urllib.parse.urlsplit(b.storage_path).password:
        c.fail(
            "backend.storage_path",
            "holds a password, which Tune would write into its saved state; "
            "give the storage's credentials through its environment variables instead",
        )
    if b.storage_path is not None and "://" not in b.storage_path:
        b = BackendSpec(**{**b.__dict__, "storage_path": str((folder / b.storage_path).resolve())})
    return b


def _trial_base(c: Checker, base: Any, folder: Path, trial_params: TrialParams | None) -> tuple[dict, dict] | None:
    """``ablation.base: {spec: other.yaml, trial: N}``: the model and train settings of
    trial N of that spec's finished sweep, as the base of this ablation. The spec file is
    read here; the trial, from the other sweep's store, by ``trial_params``."""
    if not isinstance(base, Mapping) or set(base) != {"spec", "trial"} or not isinstance(base["trial"], int):
        c.fail("ablation.base", f"expected {{spec: sweep.yaml, trial: N}}, got {base!r}")
        return None
    if (problem := checks.path_text(base["spec"])) is not None:
        c.fail("ablation.base.spec", problem)
        return None
    try:  # a finished sweep's store may be read-only
        other = load(folder / base["spec"], check_store=False, trial_params=trial_params)
    except SpecError as err:
        c.fail("ablation.base.spec", f"{base['spec']} does not load: {err.issues[0]}")
        return None
    if trial_params is None:
        c.fail("ablation.base", "a base trial is read from its sweep's store: load with trial_params (api.load does)")
        return None
    params = trial_params(other, base["trial"])
    if isinstance(params, str):
        c.fail("ablation.base.trial", params)
        return None
    fixed = optuna.trial.FixedTrial(params)
    return as_written(sample(other.model, fixed, "model")), as_written(sample(other.train, fixed, "train"))


def _in_base(c: Checker, data: dict, target: str, where: str) -> None:
    """Refuse a factor on a key path the base does not have: it would set nothing, and
    its arms would train copies of the base (a difference of +0)."""
    section, _, rest = target.partition(".")
    problem = ab.absent(section, data.get(section) or {}, rest)
    if problem is not None:
        depth = len(ab.path_parts(target))  # suggest paths of the same length: a misspelt key, a wrong index
        known = [k for k in ab.key_paths(data.get(section) or {}, section) if len(ab.path_parts(k)) == depth]
        c.fail(where, f"{problem}{did_you_mean(target, known)}; a factor varies a key path of the base")


def _ablation(c: Checker, raw: Any, data: dict, model: Mapping, train: Mapping, geo) -> Ablation | None:
    """Validate the ablation section and build its arms (``None`` after an issue)."""
    section = c.section(raw, "ablation", F.ABLATION_FIELDS)
    factors = section["factors"]
    if not isinstance(factors, Mapping) or not factors:
        c.fail("ablation.factors", "expected a mapping of key path -> [base level, other levels...]")
        return None
    for path, levels in factors.items():
        where = join("ablation.factors", path)
        if ab.is_joint(str(path), levels):
            mappings = all(isinstance(lv, Mapping) for lv in levels.values())
            keys = [k for lv in levels.values() for k in lv] if mappings else []
            bad = [k for k in keys if str(k).split(".", 1)[0] not in ("model", "train")]
            if len(levels) < 2 or not mappings or bad:
                c.fail(where, "a named factor maps each level's name to {model.or.train.path: value, ...}")
                continue
            for label, level in levels.items():
                for target in level:
                    _in_base(c, data, str(target), join(join(where, label), target))
            continue
        a_path = isinstance(path, str) and path.split(".", 1)[0] in ("model", "train") and "." in path
        if not a_path:
            c.fail(where, "a factor is a key path in model or train (e.g. model.stages[*].mixer), or a name", key=True)
        if not isinstance(levels, list) or len(levels) < 2:
            c.fail(where, f"expected a list of at least two levels (the first is the base), got {levels!r}")
        if a_path:
            _in_base(c, data, path, where)
    for path in {**dimensions(model, "model"), **dimensions(train, "train")}:
        c.fail(path, "an ablation's base is fixed: write one value here and vary it as a factor")
    if c.issues or geo is None:
        return None
    built = []
    for name, levels, m, t in ab.arms(factors, section["design"], data.get("model") or {}, data.get("train") or {}):
        sub = Checker(c.docs)
        m_space, t_space = model_space(sub, m), train_space(sub, t)
        check_sizes(sub, m_space)  # before check_arch builds the arm
        for issue in sub.issues:
            path = next((p for p in levels if issue.path.startswith(p.split("[*]")[0])), next(iter(levels)))
            c.fail(join("ablation.factors", path), f"arm '{name}': {issue.path}: {issue.message}")
        if sub.issues:
            continue
        rng = RandomTrial(random.Random(0))  # a fixed space: every draw is the same
        concrete_model, concrete_train = sample(m_space, rng, "model"), sample(t_space, rng, "train")
        arch = to_arch(concrete_model, geo.image_size, geo.num_classes, geo.channels)
        refused = "; ".join(str(p) for p in check_arch(arch))
        built.append(ab.Arm(name, levels, concrete_model, concrete_train, refused))
    if c.issues:
        return None
    if built[0].refused:
        c.fail("ablation.factors", f"the base arm cannot be built: {built[0].refused}")
        return None
    return ab.Ablation(dict(factors), section["design"], section["seeds"], tuple(built))


def _models_to_log(c: Checker, models: Any, trials: int) -> str | tuple[int, ...]:
    if not isinstance(models, list):
        return models
    beyond = sorted(n for n in models if isinstance(n, int) and n >= trials)
    if beyond:
        c.fail("tracking.models", f"trial {beyond[0]} is beyond the sweep's {trials} trials (numbered 0-{trials - 1})")
    return tuple(models)


def _name(c: Checker, top: dict, data: dict, file: str) -> str:
    """The sweep's name: ``name``, or else the spec file's stem, which must be one too."""
    if "name" in data:
        return top.get("name") or ""
    stem = Path(file).stem
    if checks.sweep_name(stem) is not None:
        message = f"the spec's file name makes the sweep name {checks.shown(stem)}, which cannot name files"
        c.fail("name", f"{message}; set name: in the spec ({checks.NAME_RULE})")
    return stem


def _refuse_count_objectives(c: Checker, objectives) -> None:
    for o in objectives:
        if o.metric == "epochs":
            c.fail("objectives", "epochs is a count, not something to optimise")


def _refuse_proxies_left_out(c: Checker, objectives, constraints, search: SearchSpec) -> None:
    """An objective or constraint on a zero-cost proxy that the trials do not compute."""
    named = [(join("objectives", i), o.metric) for i, o in enumerate(objectives)]
    named += [(join("constraints", i), k.metric) for i, k in enumerate(constraints)]
    for path, metric in named:
        if metric in PROXY_METRICS and metric not in search.proxies:
            shown = f"[{', '.join(search.proxies)}]"
            c.fail(path, f"{metric} is a zero-cost proxy that search.proxies leaves out ({shown}); add it there")


def build_spec(
    data: dict,
    docs: list[Document],
    file: str,
    check_data: bool = True,
    overridden: dict[str, Where] | None = None,
    *,
    check_store: bool = True,
    trial_params: TrialParams | None = None,
) -> Spec:
    """Validate merged YAML data into a ``Spec`` (raises ``SpecError``); ``overridden``:
    the key paths set by overrides, located there rather than in the file."""
    c = Checker(docs, overridden)
    top = c.section(data, "", F.TOP_FIELDS)
    base = data["ablation"].get("base") if isinstance(data.get("ablation"), Mapping) else None
    if base is not None:
        if "model" in data:
            c.fail("model", "give either a model section or ablation.base, not both", key=True)
        resolved = _trial_base(c, base, Path(file).parent, trial_params)
        if resolved is None:  # every later check would be about the model it could not give
            raise SpecError(c.issues)
        data = {**data, "model": resolved[0], "train": {**resolved[1], **(data.get("train") or {})}}
    elif "model" not in data:
        c.fail("", "needs a model section (the space of architectures)")
    spec_data = inputs.data(c, data.get("data") or {}, Path(file).parent, check_data)
    geo = datasets.geometry(spec_data) if not c.issues else None
    model = model_space(c, data.get("model") or {})
    check_sizes(c, model)  # by arithmetic, whatever else is wrong: nothing is built
    if not c.issues and geo is not None:
        check_buildable(c, model, geo)
    train = train_space(c, data.get("train") or {})
    objectives = _objectives(c, data.get("objectives"))
    constraints = _constraints(c, data.get("constraints"))
    on_ray = isinstance(data.get("backend"), Mapping) and data["backend"].get("kind") == "ray"
    search = _search(c, data.get("search") or {}, objectives, ray=on_ray, folder=Path(file).parent)
    ablation = None
    if "ablation" in data:
        if "search" in data:
            c.fail(
                "search",
                "an ablation replaces the search section; remove search (seeds come from ablation.seeds)",
                key=True,
            )
        ablation = _ablation(c, data["ablation"], data, model, train, geo)
        if ablation is not None:
            search = SearchSpec(sampler="random", trials=max(1, len(ablation.runnable) * ablation.seeds))
    tracking = c.section(data.get("tracking") or {}, "tracking", F.TRACKING_FIELDS)
    log_models = _models_to_log(c, tracking["models"], search.trials)
    backend = _backend(c, data.get("backend") or {}, tracking, search, objectives, Path(file).parent)
    _refuse_count_objectives(c, objectives)
    _refuse_proxies_left_out(c, objectives, constraints, search)
    name = _name(c, top, data, file)
    if check_store:
        inputs.store(c, tracking.get("dir"))
    if c.issues:
        raise SpecError(c.issues)
    uri, user, password = split_credentials(tracking["uri"]) if tracking.get("uri") else (None, None, None)
    if password is not None:  # what is logged as spec.yaml and hashed holds no password
        data = {**data, "tracking": {**data["tracking"], "uri": uri}}
    return Spec(
        name=name,
        file=file,
        model=model,
        train=train,
        data=spec_data,
        objectives=objectives,
        constraints=constraints,
        search=search,
        backend=backend,
        experiment=tracking.get("experiment") or name,
        tracking_uri=uri,
        tracking_user=user,
        tracking_password=password,
        store=tracking.get("dir") or "out",
        log_models=log_models,
        register=tracking.get("register"),
        description=top.get("description") or "",
        ablation=ablation,
        warnings=tuple(c.warnings),
        resolved=data,
    )


def load(
    path: str | Path,
    overrides: list[str] = (),
    *,
    smoke: bool = False,
    check_data: bool = True,
    check_store: bool = True,
    trial_params: TrialParams | None = None,
) -> Spec:
    """Load, merge ``extends``, apply the spec's ``smoke`` overrides (with ``smoke``) and
    then ``-o`` overrides, validate. Raises ``SpecError``. Without ``check_data`` a
    missing dataset folder is a warning (``validate``), not an error (``run``); without
    ``check_store`` the store may be read-only (a finished sweep read as an ablation's base);
    ``trial_params`` reads an ablation's base trial (``TrialParams``)."""
    path = Path(path)
    if not _exists(path):
        raise SpecError([Issue(None, "", f"{printable(str(path))}: no such spec file")])
    data, docs, issues = _load_chain(path)
    if issues:
        raise SpecError(issues)
    smoke_overrides = data.pop("smoke", None) or []
    if not isinstance(smoke_overrides, list) or not all(isinstance(o, str) for o in smoke_overrides):
        raise SpecError([Issue(docs[-1].where("smoke"), "smoke", "expected a list of KEY.PATH=VALUE overrides")])
    smoke_doc = next((d for d in reversed(docs) if "smoke" in d.keys), docs[-1])
    chosen = [(o, smoke_doc.where(f"smoke[{i}]")) for i, o in enumerate(smoke_overrides)] if smoke else []
    chosen += [(o, _command_line(o)) for o in overrides]
    overridden: dict[str, Where] = {}
    issues = [i for i in (_override(data, o, where, overridden) for o, where in chosen) if i is not None]
    if issues:
        raise SpecError(issues)
    spec = build_spec(data, docs, str(path), check_data, overridden, check_store=check_store, trial_params=trial_params)
    return replace(spec, warnings=(*_given_twice(list(overrides)), *spec.warnings))


__all__ = ["COST_METRICS", "METRICS", "Choice", "FloatRange", "IntRange", "Spec", "SpecError", "load"]

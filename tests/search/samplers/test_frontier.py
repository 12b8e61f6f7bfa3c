"""The frontier sampler (``search.samplers.frontier``): its hypervolume arithmetic against
a reference, what it knows of a spec's space, and how it asks (no repeats, distinct
concurrent asks, conditional and float dimensions, a resumed study), on made-up tables and
small synthetic problems: seconds, no training."""

import itertools
import math
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import optuna
import pytest
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState

from blocks.cost import counted_cost
from runs.data import geometry
from runs.metrics import Objective
from search.pruners.mo_asha import RUNGS_ATTR
from search.results.pareto import hypervolume_at
from search.samplers import SAMPLERS, Described, Exact, Knowledge
from search.samplers.frontier import FrontierSampler, hvi
from search.spec import load
from search.spec.arch import to_arch
from search.spec.space import sample
from search.sweep import pipeline, study
from search.sweep.knowledge import knowledge
from search.sweep.replay import replay
from tests.made_up import DIGITS_SPEC, ROOT, digits_table

QUICKSTART = ROOT / "spaces" / "quickstart.yaml"


# -- the arithmetic ------------------------------------------------------------------------


def _hv(points: np.ndarray, ref: np.ndarray) -> float:
    """The reference: archsweep's own hypervolume (Optuna's WFG), minimised objectives."""
    objectives = [Objective(f"m{i}", "min") for i in range(points.shape[1])]
    rows = [{f"m{i}": float(v) for i, v in enumerate(p)} for p in points]
    return hypervolume_at(rows, objectives, list(ref)) if len(rows) else 0.0


@pytest.mark.parametrize("d", [1, 2, 3])
def test_hypervolume_improvement_is_the_growth_of_the_hypervolume(d):
    rng = np.random.default_rng(d)
    ref = np.full(d, 1.0)
    for _ in range(5):
        front = hvi.nondominated(rng.random((6, d)))
        points = rng.random((8, d)) * 1.1  # some past the reference
        got = hvi.improvement(front, points, ref, rng)
        want = [_hv(np.vstack([front, p]), ref) - _hv(front, ref) for p in points]
        tolerance = 1e-12 if d < 3 else 0.03  # three objectives: a Monte Carlo estimate
        assert got == pytest.approx(want, abs=tolerance)


def test_expected_improvement_averages_the_improvement_over_the_unknown_objective():
    rng = np.random.default_rng(0)
    front, ref = np.array([[0.2, 0.6], [0.5, 0.3]]), np.array([1.0, 1.0])
    exact = np.array([[0.0, 0.4], [0.0, 0.9]])  # the second objective known exactly
    mean, std = np.array([[0.3], [0.1]]), np.array([[0.05], [1e-9]])
    got = hvi.expected(front, exact, np.array([0]), mean, std, ref, rng)
    draws = rng.normal(0.3, 0.05, 200_000)
    points = np.column_stack([draws, np.full(len(draws), 0.4)])
    monte_carlo = hvi.improvement(front, points, ref, rng).mean()
    assert got[0] == pytest.approx(monte_carlo, rel=0.01)
    assert got[1] == pytest.approx(hvi.improvement(front, np.array([[0.1, 0.9]]), ref, rng)[0])


def test_nondominated_keeps_exactly_the_front():
    points = np.array([[1, 5], [2, 2], [3, 3], [5, 1], [2, 2], [4, 4]], dtype=float)
    assert sorted(map(tuple, hvi.nondominated(points))) == [(1, 5), (2, 2), (5, 1)]


# -- what it knows of a spec ---------------------------------------------------------------


def test_a_spec_s_knowledge_keys_collapse_a_left_out_stage_and_costs_are_the_counted_ones():
    spec = load(DIGITS_SPEC)
    known = knowledge(spec)
    base = {
        name: dist.choices[0] if hasattr(dist, "choices") else dist.low for name, dist in known.distributions.items()
    }
    off = {**base, "model.stages.1.depth": 0}
    other = {**off, "model.stages.1.mixer": "fourier", "model.stages.1.pool": "mean"}
    assert known.describe(off).key == known.describe(other).key  # a left-out stage's values do not matter
    assert "model.stages.1.mixer" not in known.describe(off).active
    on = {**base, "model.stages.1.depth": 1}
    assert known.describe(on).key != known.describe({**on, "model.stages.1.mixer": "fourier"}).key
    model = sample(spec.model, optuna.trial.FixedTrial(on), "model")
    geo = geometry(spec.data)
    counted = counted_cost(to_arch(model, geo.image_size, geo.num_classes, geo.channels))
    assert known.exact(on).costs == {"gmacs": counted["gmacs"]}  # the objectives' counted costs only


def test_a_replay_reads_the_recorded_tables_costs_and_they_are_the_counted_ones():
    """A replay hands the sampler the table's costs instead of counting each model again
    (30 ms each): they must be what the counter gives, as on the recorded digits table."""
    from bench.search import DIGITS_TABLE
    from search.tables.table import load as load_table

    spec = load(DIGITS_SPEC)
    table = load_table(DIGITS_TABLE)
    rows = table.by_key()
    result = replay(replace(spec, search=replace(spec.search, sampler="random")), table, trials=25)
    counted, told = knowledge(spec), knowledge(spec, {k: r.costs for k, r in rows.items()})
    drawn = [t for t in result.study.trials if t.user_attrs.get("draw") in rows]
    assert len(drawn) >= 25
    for t in drawn:
        row = rows[t.user_attrs["draw"]]
        assert counted.exact(t.params).costs == told.exact(t.params).costs == {"gmacs": row.costs["gmacs"]}
    first = drawn[0]  # read, not counted: a value no model has comes back
    assert knowledge(spec, {first.user_attrs["draw"]: {"gmacs": -1.0}}).exact(first.params).costs == {"gmacs": -1.0}


def test_an_unbuildable_architecture_has_no_costs_and_a_constraint_marks_what_it_refuses():
    spec = load(QUICKSTART)  # rope with a global filter cannot be built; params <= 200,000
    known = knowledge(spec)
    rope = {"model.positional": "rope", "model.stages.0.mixer": "global_filter"}
    assert known.exact(rope) is None
    wide = load(QUICKSTART, ["constraints=['params <= 1000']"])
    assert knowledge(wide).exact({"model.positional": "none"}).feasible is False
    assert known.exact({"model.positional": "none"}).feasible is True


# -- how it asks ---------------------------------------------------------------------------


@pytest.mark.slow
def test_it_never_redraws_and_stops_on_an_exhausted_space():
    _, table = digits_table()
    small = load(DIGITS_SPEC, ["model.stages[1].depth=0", "model.embedding=patch", "search.sampler=frontier"])
    result = replay(replace(small, search=replace(small.search, trials=80)), table)
    states = [t.state for t in result.trials]
    draws = [t.user_attrs["draw"] for t in result.study.trials]
    assert len(draws) == len(set(draws)) == 2 * 2 * 2 * 2 * 4  # patch, positional, depth, width, mixer
    assert "duplicate" not in states and "exhausted" in result.stopped


@pytest.mark.slow
def test_concurrent_asks_draw_distinct_architectures():
    _, table = digits_table()
    spec = load(DIGITS_SPEC, ["search.sampler=frontier", "search.trials=30"])
    done = replay(spec, table, trials=12)  # enough results to fit the model
    earlier = {t.user_attrs["draw"] for t in done.study.trials}
    running = [done.study.ask() for _ in range(6)]  # asked at once: none told yet
    for trial in running:
        pipeline.draw(spec, done.study, trial)
    drawn = {t.user_attrs["draw"] for t in running}
    assert len(drawn) == 6 and not drawn & earlier


@pytest.mark.slow
def test_it_samples_conditional_and_float_dimensions_and_keeps_the_constraint():
    spec = load(QUICKSTART, ["search.sampler=frontier", "search.trials=6"])
    sweep = study.create(spec, optuna.storages.InMemoryStorage(), sampler=study.sampler_for(spec))
    lr = sweep.sampler.knowledge.distributions["train.lr"]
    for _ in range(6):
        trial = sweep.ask()
        drawn = pipeline.draw(spec, sweep, trial)
        assert lr.low <= drawn.train["lr"] <= lr.high
        exact = sweep.sampler.knowledge.exact(trial.params)
        assert exact is not None and exact.feasible and exact.costs["params"] <= 200_000
        score = 0.9 - 0.01 * drawn.model["stages"][0]["depth"] + 0.001 * math.log(drawn.train["lr"])
        sweep.tell(trial, [score, exact.costs["gmacs"]])
    keys = [t.user_attrs["draw"] for t in sweep.trials]
    assert len(set(keys)) == 6


@pytest.mark.slow
def test_a_resumed_study_is_read_not_redrawn():
    _, table = digits_table()
    spec = load(DIGITS_SPEC, ["search.sampler=frontier", "search.trials=20"])
    first = replay(spec, table, trials=10)
    counted = {k: r.costs for k, r in table.by_key().items()}  # as a replay reads them
    sampler = study.sampler_for(spec, drawn=10, counted=counted)  # a new sampler, as a resumed sweep builds
    first.study.sampler = sampler
    more = replay(spec, table, trials=10, into=first.study)
    keys = [t.user_attrs["draw"] for t in more.study.trials]
    assert len(keys) == 20 == len(set(keys))


# -- on a problem of its own: any objectives, and better than random -----------------------

OPTIONS = ("a", "b", "c", "d")


def _toy(objectives=(("accuracy", "max"), ("cost", "min"))) -> tuple[Knowledge, callable]:
    """Four choices of four options: cost the sum of their indices; accuracy rises with
    cost and depends on how often "d" is picked, with a deterministic wobble."""
    space = {f"x{i}": CategoricalDistribution(OPTIONS) for i in range(4)}

    def cost(p):
        return float(sum(OPTIONS.index(p[f"x{i}"]) for i in range(4)))

    def accuracy(p):
        picks = [p[f"x{i}"] for i in range(4)]
        index = sum(OPTIONS.index(x) * 4**i for i, x in enumerate(picks))
        return 0.5 + 0.03 * cost(p) + 0.05 * picks.count("d") + 0.02 * math.sin(index * 1.7)

    def exact(p):
        return Exact({"cost": cost(p)} if any(m == "cost" for m, _ in objectives) else {})

    known = Knowledge(space, tuple(objectives), lambda p: Described(repr(sorted(p.items())), dict(p)), exact)
    return known, lambda p: [accuracy(p) if m == "accuracy" else cost(p) for m, _ in objectives]


def _evaluations_to(sampler, values, objectives, share: float, trials: int = 120) -> float:
    """Distinct evaluations until the results hold ``share`` of the toy's exact
    hypervolume (inf: not within ``trials`` asks); a repeat is answered, not counted."""
    directions = ["maximize" if d == "max" else "minimize" for _, d in objectives]
    sweep = optuna.create_study(directions=directions, sampler=sampler)
    every = [dict(zip([f"x{i}" for i in range(4)], c, strict=True)) for c in itertools.product(OPTIONS, repeat=4)]
    goal = _front_hv([values(p) for p in every], objectives)
    seen, results = set(), []
    for _ in range(trials):
        trial = sweep.ask({f"x{i}": CategoricalDistribution(OPTIONS) for i in range(4)})
        key = tuple(sorted(trial.params.items()))
        if key in seen:
            sweep.tell(trial, state=TrialState.PRUNED)
            continue
        seen.add(key)
        results.append(values(trial.params))
        sweep.tell(trial, results[-1])
        if _front_hv(results, objectives) >= share * goal - 1e-12:
            return len(seen)
    return math.inf


def _front_hv(values, objectives) -> float:
    points = np.array([[-v if d == "max" else v for v, (_, d) in zip(row, objectives, strict=True)] for row in values])
    return _hv(points, np.array([0.0 if d == "max" else 13.0 for _, d in objectives]))


def test_it_finds_a_toy_front_in_fewer_evaluations_than_random_search():
    known, values = _toy()
    objectives = known.objectives
    ours = [_evaluations_to(FrontierSampler(known, seed=s, startup=5), values, objectives, 0.99) for s in range(3)]
    plain = [_evaluations_to(optuna.samplers.RandomSampler(seed=s), values, objectives, 0.99) for s in range(3)]
    assert np.median(ours) < np.median(plain), (ours, plain)


@pytest.mark.parametrize("objectives", [(("accuracy", "max"),), (("accuracy", "max"), ("cost", "min"))])
@pytest.mark.parametrize("told_costs", [True, False])
def test_it_asks_with_any_objectives_known_or_not(objectives, told_costs):
    known, values = _toy(objectives)
    if not told_costs:  # nothing known before training: a surrogate for every objective
        known = replace(known, exact=lambda p: Exact({}))
    sampler = FrontierSampler(known, seed=0, startup=3)
    sweep = optuna.create_study(directions=["maximize" if d == "max" else "minimize" for _, d in objectives])
    sweep.sampler = sampler
    for _ in range(12):
        trial = sweep.ask(dict(known.distributions))
        sweep.tell(trial, values(trial.params))
    assert len({tuple(sorted(t.params.items())) for t in sweep.trials}) == 12  # no repeats, whatever it knows


def test_it_is_registered_with_its_ehvi_variant_and_needs_a_spec_s_knowledge():
    assert SAMPLERS["frontier"].informed and SAMPLERS["frontier_ehvi"].informed
    with pytest.raises(ValueError, match="knowledge"):
        SAMPLERS["frontier"](seed=0, trials=10).build()


def test_it_samples_on_from_an_amended_study_inside_the_new_space(tmp_path):
    """A narrowed space (depth 2 only, the conv stem removed): the frontier sampler reads the
    amended study (kept trials, others outside) and draws only what the new space holds,
    never a kept trial again."""
    import yaml

    from bench.amend import TABLE_SPEC
    from runs.journal import journal_storage
    from search.sweep import amend
    from search.sweep.preflight import spec_changes

    _, table = digits_table()
    earlier = load(DIGITS_SPEC, ["search.sampler=frontier", "search.trials=12"])
    before = replay(earlier, table).study.get_trials(deepcopy=False)
    narrow = yaml.safe_load(TABLE_SPEC.read_text())
    narrow["model"]["stages"][0]["depth"] = {"int": [2, 2]}
    narrow["model"]["embedding"] = "patch"
    narrow["search"] = {"sampler": "frontier", "trials": 8, "seed": 0}
    (tmp_path / "narrow.yaml").write_text(yaml.safe_dump(narrow, sort_keys=False))
    narrowed = load(tmp_path / "narrow.yaml", check_data=False, check_store=False)
    plan = amend.plan(earlier.resolved, narrowed, spec_changes(earlier.resolved, narrowed.resolved), before)
    storage = journal_storage(tmp_path / "digits.journal")
    study.create(earlier, storage).add_trials(before)
    amend.rebuild(storage, narrowed, plan, study.directions(narrowed))
    amended = study.create(narrowed, storage, sampler=study.sampler_for(narrowed, len(before)))
    new = replay(narrowed, table, trials=8, into=amended).study.get_trials(deepcopy=False)[len(before) :]
    kept = {t.user_attrs["draw"] for t in before if t.number in plan.kept}
    assert len(new) == 8 and not {t.user_attrs["draw"] for t in new} & kept
    assert all(t.params["model.stages.0.depth"] == 2 for t in new)
    assert all(t.params.get("model.embedding", "patch") == "patch" for t in new)


def test_a_cost_no_result_shares_is_as_uncertain_as_the_prior():
    """Trees agree where they have no data: without the prior's spread back, a cost no
    result shares looks certain (NB201's costliest cells looked certain to fall below the
    front the cheap cells made, and were left untried for 800 evaluations)."""
    known, values = _toy()
    sweep = optuna.create_study(directions=["maximize", "minimize"])
    cheap = [p for p in itertools.product(OPTIONS, repeat=4) if sum(OPTIONS.index(x) for x in p) <= 3]
    for picks in cheap[::2]:  # every other cheap cell told: the rest stay candidates
        params = dict(zip([f"x{i}" for i in range(4)], picks, strict=True))
        told = optuna.trial.create_trial(params=params, distributions=known.distributions, values=values(params))
        sweep.add_trial(told)
    sampler = FrontierSampler(known, seed=0, startup=3)
    told = sampler._known(sweep.get_trials(deepcopy=False), -1)
    candidates = sampler._candidates(told)
    spread = sampler._widened(np.zeros((len(candidates), 1)), candidates, told, ["cost"])[:, 0]
    costs = np.array([c.exact.costs["cost"] for c in candidates])
    assert (costs <= 3).any() and (costs >= 5).any()
    assert spread[costs >= 5].min() > 0.9 and spread[costs <= 3].max() <= 0.5, (costs, spread)


@pytest.mark.parametrize("unit", [1.0, 1e-4])
def test_a_cost_twice_every_result_s_is_as_uncertain_as_the_prior_in_any_unit(unit):
    """Costs are near on a log scale: in GMACs (values of 1e-4 to 1e-2), log1p of the raw
    value is linear and the digits table's cheapest tenth was one band, every cheap cost
    as certain as the few cheap results (MO-ASHA found its last front member after 0.57
    of the unpruned sweep's epochs, 0.23 on log costs)."""
    sampler = FrontierSampler(_toy()[0], seed=0)
    told = [1.0, 1.2, 100.0]
    sampler._exact = {f"k{i}": Exact({"cost": c * unit}) for i, c in enumerate(told)}
    known = SimpleNamespace(observed=[(SimpleNamespace(params={}), SimpleNamespace(key=k)) for k in sampler._exact])
    costs = [1.1, 2.0, 3.0, 100.0]
    candidates = [SimpleNamespace(exact=Exact({"cost": c * unit})) for c in costs]
    spread = sampler._widened(np.zeros((len(costs), 1)), candidates, known, ["cost"])[:, 0]
    assert spread[0] < 0.6 and spread[3] < 0.75  # two results near 1.1, one at 100
    assert spread[1] > 0.99 and spread[2] > 0.99, spread  # none near 2 or 3


# -- pruned trials: imputed, and candidates again --------------------------------------------


def _pruned_study(known, values, monkeypatch=None) -> tuple[optuna.Study, dict]:
    """Twelve completed toy trials, each with its rung record (accuracy after 2 epochs:
    half its final), and one pruned after 2 epochs: the cheapest cell, whose rung value
    says it ends above every completed trial."""
    sweep = optuna.create_study(directions=["maximize", "minimize"])
    rng = np.random.default_rng(0)
    cells = [c for c in itertools.product(OPTIONS, repeat=4) if c != ("a",) * 4]
    for i in rng.choice(len(cells), 12, replace=False):
        params = dict(zip([f"x{j}" for j in range(4)], cells[i], strict=True))
        accuracy, cost = values(params)
        rungs = [[2, 0, [accuracy / 2, cost]]]
        sweep.add_trial(
            optuna.trial.create_trial(
                params=params,
                distributions=known.distributions,
                values=[accuracy, cost],
                user_attrs={RUNGS_ATTR: rungs, "state": "complete", "metrics": {"epochs": 15.0}},
            )
        )
    best = max(t.values[0] for t in sweep.trials)
    cheapest = {f"x{j}": "a" for j in range(4)}
    sweep.add_trial(
        optuna.trial.create_trial(
            state=TrialState.PRUNED,
            params=cheapest,
            distributions=known.distributions,
            user_attrs={RUNGS_ATTR: [[2, 0, [best / 2, 0.0]]], "state": "pruned"},
        )
    )
    return sweep, cheapest


def test_a_pruned_trial_is_imputed_for_the_surrogate_and_proposed_again(monkeypatch):
    """The forest learns the pruned trial's imputed final (the completed trials' map from
    rung to final: the best completed value), and the sampler proposes the pruned cell
    again, to be continued: at no cost its optimistic final beats the whole front. A
    sampler that ignored pruned trials would fit twelve results and never draw it."""
    known, values = _toy()
    sweep, cheapest = _pruned_study(known, values)
    best = max(t.values[0] for t in sweep.trials if t.values)
    sampler = FrontierSampler(known, seed=0, startup=3)
    told = sampler._known(sweep.get_trials(deepcopy=False), len(sweep.trials))
    assert [i.trial.params for i in told.imputed] == [cheapest]
    assert -told.imputed[0].mean[0] == pytest.approx(best) and told.imputed[0].trained == 2
    picked = sampler.pick(sweep.get_trials(deepcopy=False), len(sweep.trials))
    # the forest's data: twelve results and the imputed one (the best value twice; minimised: negated)
    assert len(sampler._ranks.y) == 13 and list(sampler._ranks.y[:, 0]).count(-best) == 2
    assert {k: picked[k] for k in cheapest} == cheapest
    monkeypatch.setattr("search.samplers.frontier.sampler.CONTINUE", False)
    sampler = FrontierSampler(known, seed=0, startup=3)
    picked = sampler.pick(sweep.get_trials(deepcopy=False), len(sweep.trials))
    assert {k: picked[k] for k in cheapest} != cheapest  # tried, not to be continued: never drawn

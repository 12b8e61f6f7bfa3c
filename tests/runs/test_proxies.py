"""Zero-cost proxies: each equals its paper's equation on nets small enough to check by
hand, runs on every registered block without touching the model or the RNG, leaves a
trial's training as it was, and is a metric that objectives and constraints can name."""

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from torch import nn

from blocks import EMBEDDINGS, MIXERS, EmbeddingSpec, build
from runs import proxies
from runs.data import DataSpec, load
from runs.metrics import METRICS, PROXY_METRICS, Constraint
from runs.train import TrainConfig
from runs.trial import Infeasible, _refuse_over_budget, measure_cost, measure_proxies, run_trial
from search.spec import SpecError
from search.spec import load as load_spec
from search.sweep.replay import replay
from search.tables.table import Row, Table
from tests.blocks.helpers import small_arch
from tests.blocks.test_block_contract import EMBEDDING_OPTIONS
from tests.made_up import digits_table

ROOT = Path(__file__).resolve().parents[2]
DIGITS = ROOT / "spaces" / "tables" / "digits.yaml"
RANDOM = ["search.sampler=random"]  # the search is not what these tests are about


def test_every_proxy_is_a_metric_that_is_better_higher():
    assert tuple(proxies.PROXIES) == PROXY_METRICS
    assert all(METRICS[p] == "max" for p in PROXY_METRICS) and METRICS["proxy_s"] == "min"
    assert set(proxies.DEFAULT) <= set(PROXY_METRICS)


# -- the contract, over every registered block --------------------------------------------


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def _keeps_everything(model: nn.Module) -> dict[str, float]:
    """The proxies of ``model``: all finite, the model, its buffers, its mode, its
    gradients and the global RNG as they were."""
    g = torch.Generator().manual_seed(1)
    images, labels = torch.rand(8, 3, 16, 16, generator=g), torch.arange(8) % 5
    before, rng = _state(model), torch.get_rng_state()
    scores = proxies.measure(model, images, labels, PROXY_METRICS)
    assert set(scores) == {*PROXY_METRICS, "proxy_s"}
    assert all(math.isfinite(v) for v in scores.values()), scores
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert torch.equal(torch.get_rng_state(), rng)
    assert model.training and all(p.grad is None for p in model.parameters())
    return scores


@pytest.mark.parametrize("name", sorted(MIXERS))
def test_every_mixer_gives_finite_scores_and_leaves_the_model_and_rng_alone(name):
    torch.manual_seed(0)
    model = build(small_arch(name))
    first, again = _keeps_everything(model), _keeps_everything(model)
    assert {p: first[p] for p in PROXY_METRICS} == {p: again[p] for p in PROXY_METRICS}


@pytest.mark.parametrize("name", sorted(EMBEDDINGS))
def test_every_embedding_gives_finite_scores_and_leaves_the_model_alone(name):
    torch.manual_seed(0)
    patch, options = EMBEDDING_OPTIONS[name]
    model = build(replace(small_arch("attention"), embedding=EmbeddingSpec(name, patch, options)))
    _keeps_everything(model)


def test_batchnorm_statistics_and_dropout_are_untouched_and_a_score_does_not_depend_on_the_rng():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Dropout(0.5), nn.Linear(8, 3))
    x, y = torch.randn(10, 6), torch.arange(10) % 3
    stats = _state(model)
    first = proxies.measure(model, x, y, PROXY_METRICS)
    torch.rand(100)  # the global RNG moved on: dropout inside a proxy draws the same
    second = proxies.measure(model, x, y, PROXY_METRICS)
    assert all(torch.equal(stats[k], v) for k, v in model.state_dict().items())  # running stats, counter
    assert {k: first[k] for k in PROXY_METRICS} == {k: second[k] for k in PROXY_METRICS}


def test_a_score_that_is_not_finite_is_nan_not_an_exception():
    """A dead network: every weight zero. Its codes are all equal (NASWOT's kernel is
    singular), nothing flows (synflow's sum is 0: log -inf), the input gradient is zero
    (Jacobians without correlation)."""
    model = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3))
    for p in model.parameters():
        nn.init.zeros_(p)
    scores = proxies.measure(model, torch.randn(5, 4), torch.arange(5) % 3, PROXY_METRICS)
    assert all(math.isnan(scores[p]) for p in ("naswot", "jacob_cov", "synflow")), scores
    assert scores["snip"] == 0.0 and scores["grad_norm"] > 0  # the output layer's bias still learns


# -- oracles from the papers' equations ----------------------------------------------------


def _relu_mlp() -> nn.Sequential:
    torch.manual_seed(3)
    return nn.Sequential(nn.Linear(4, 7), nn.ReLU(), nn.Linear(7, 5), nn.ReLU(), nn.Linear(5, 3)).double()


def test_naswot_is_the_log_determinant_of_agreements_between_binary_codes():
    """Mellor et al. 2021, eq. 2: K_H[i, j] = N_A - d_H(c_i, c_j) over every ReLU unit."""
    model, x = _relu_mlp(), torch.randn(6, 4, dtype=torch.float64)
    w = [layer.weight.detach().numpy() for layer in model if isinstance(layer, nn.Linear)]
    b = [layer.bias.detach().numpy() for layer in model if isinstance(layer, nn.Linear)]
    h1 = x.numpy() @ w[0].T + b[0]
    h2 = np.maximum(h1, 0) @ w[1].T + b[1]
    codes = np.concatenate([h1 > 0, h2 > 0], axis=1)  # (B, N_A), N_A = 7 + 5
    hamming = (codes[:, None, :] != codes[None, :, :]).sum(-1)
    kernel = codes.shape[1] - hamming
    assert proxies.naswot(model, x) == pytest.approx(np.linalg.slogdet(kernel)[1], rel=1e-12)


def test_jacob_cov_scores_the_correlation_of_input_jacobians():
    """Mellor et al. v1: J_i = d(sum of outputs)/dx_i = W1^T diag(h_i > 0) W2^T 1 for a
    one-hidden-layer ReLU net; score -sum(log(v + k) + 1/(v + k)) over corr(J)'s eigenvalues."""
    torch.manual_seed(4)
    model = nn.Sequential(nn.Linear(5, 9), nn.ReLU(), nn.Linear(9, 2)).double()
    x = torch.randn(4, 5, dtype=torch.float64)
    w1, b1, w2 = (t.detach().numpy() for t in (model[0].weight, model[0].bias, model[2].weight))
    gates = (x.numpy() @ w1.T + b1) > 0  # (B, 9)
    jacobians = (gates * w2.sum(0)) @ w1  # (B, 5)
    v = np.linalg.eigvalsh(np.corrcoef(jacobians))
    expected = -np.sum(np.log(v + 1e-5) + 1 / (v + 1e-5))
    assert proxies.jacob_cov(model, x) == pytest.approx(expected, rel=1e-9)


def test_synflow_of_a_linear_chain_is_its_layer_count_times_the_flow():
    """Tanaka et al. 2020: in a bias-free linear chain with |W| and an all-ones input, each
    layer's saliencies sum to R = 1^T |W_L| ... |W_1| 1 (synaptic flow is conserved), so
    the score is log(L R). A BatchNorm inside is left out, as the reference leaves it out."""
    torch.manual_seed(5)
    chain = nn.Sequential(nn.Linear(4, 6, bias=False), nn.Linear(6, 5, bias=False), nn.Linear(5, 3, bias=False))
    w = [layer.weight.detach().double().abs().numpy() for layer in chain]
    flow = np.ones(3) @ w[2] @ w[1] @ w[0] @ np.ones(4)
    images = torch.randn(7, 4)  # only the shape counts
    assert proxies.synflow(chain, images) == pytest.approx(math.log(3 * flow), rel=1e-12)
    with_bn = nn.Sequential(chain[0], nn.BatchNorm1d(6), chain[1], chain[2])
    assert proxies.synflow(with_bn, images) == pytest.approx(math.log(3 * flow), rel=1e-12)


def test_snip_and_grad_norm_are_the_cross_entropy_gradient_against_the_weights():
    """Softmax regression, the gradient by hand: dL/dz = (softmax(z) - onehot) / B,
    dL/dW = G^T x, dL/db = sum G; snip = sum |theta * g|, grad_norm = ||g||_2."""
    torch.manual_seed(6)
    model = nn.Linear(5, 4).double()
    x, y = torch.randn(9, 5, dtype=torch.float64), torch.tensor([0, 1, 2, 3, 0, 1, 2, 3, 0])
    w, b = model.weight.detach().numpy(), model.bias.detach().numpy()
    z = x.numpy() @ w.T + b
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    g = (p - np.eye(4)[y.numpy()]) / len(y)
    dw, db = g.T @ x.numpy(), g.sum(0)
    assert proxies.snip(model, x, y) == pytest.approx(np.abs(w * dw).sum() + np.abs(b * db).sum(), rel=1e-12)
    norm = math.sqrt((dw**2).sum() + (db**2).sum())
    assert proxies.grad_norm(model, x, y) == pytest.approx(norm, rel=1e-12)
    both = proxies.measure(model, x, y, ["snip", "grad_norm"])  # one backward pass for both
    assert both["grad_norm"] == pytest.approx(norm, rel=1e-12)


# -- in a trial ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def digits():
    """300 training digits at 8x8: a trial of one epoch in a second."""
    data = load(DataSpec("digits", image_size=8))
    return replace(data, train_x=data.train_x[:300], train_y=data.train_y[:300])


def _digits_arch(data):
    """A conv stem and two attention blocks, with dropout: training draws from the global RNG."""
    arch = replace(small_arch("attention", dropout=0.1), image_size=(8, 8), in_channels=1, num_classes=10)
    return data.normalising(replace(arch, embedding=EmbeddingSpec("conv", 2, {"channels": [8]})))


TRAINED = ("val_accuracy", "val_loss", "val_top5", "train_loss", "params", "gmacs", "epochs")


def test_a_trial_trains_the_same_with_and_without_proxies(digits):
    cfg, arch = TrainConfig(epochs=1, batch_size=64), _digits_arch(digits)
    runs = {}
    for names in ((), PROXY_METRICS):
        weights = []
        metrics = run_trial(arch, cfg, digits, seed=3, proxies=names, on_trained=weights.append)
        runs[names] = metrics, weights[0]["state_dict"]
    (plain, plain_weights), (scored, scored_weights) = runs[()], runs[PROXY_METRICS]
    assert not set(PROXY_METRICS) & set(plain) and "proxy_s" not in plain
    assert all(math.isfinite(scored[p]) for p in PROXY_METRICS) and scored["proxy_s"] > 0
    assert {k: plain[k] for k in TRAINED} == {k: scored[k] for k in TRAINED}
    assert all(torch.equal(plain_weights[k], scored_weights[k]) for k in plain_weights)


def test_a_trial_scores_its_model_as_a_fresh_build_scores_it(digits):
    """What measure_cost runs (a training step at learning rate 0 moves BatchNorm's
    statistics) changes no score: a recorded table's rows, built and scored without it,
    hold a trial's proxies."""
    arch = _digits_arch(digits)
    torch.manual_seed(2)
    model = build(arch)
    fresh = measure_proxies(model, digits, PROXY_METRICS)
    measure_cost(arch, model, digits, 64)
    after = measure_proxies(model, digits, PROXY_METRICS)
    assert {p: fresh[p] for p in PROXY_METRICS} == {p: after[p] for p in PROXY_METRICS}


def test_a_constraint_on_a_proxy_refuses_before_training(digits):
    cfg, arch = TrainConfig(epochs=1, batch_size=64), _digits_arch(digits)
    trained = []
    with pytest.raises(Infeasible) as err:
        run_trial(arch, cfg, digits, seed=0, constraints=(Constraint("synflow", ">=", 1e6),), report=trained.append)
    assert str(err.value) == "breaks synflow >= 1e+06" and not trained
    assert err.value.violations[0] == pytest.approx(1e6 - err.value.cost["synflow"])
    with pytest.raises(Infeasible):  # a score that is not a number keeps no bound
        _refuse_over_budget({"naswot": math.nan}, [Constraint("naswot", ">=", 0.0)])


def _spec_file(tmp_path, **changes) -> Path:
    spec = {**yaml.safe_load(DIGITS.read_text()), **changes}
    path = tmp_path / "digits.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_a_spec_names_proxies_in_objectives_and_constraints_and_chooses_which_are_computed(tmp_path):
    spec = load_spec(_spec_file(tmp_path, constraints=["synflow >= 1"], objectives=[{"naswot": "max"}]))
    assert spec.search.proxies == proxies.DEFAULT and spec.constraints[0].metric == "synflow"
    chosen = load_spec(_spec_file(tmp_path, search={"proxies": ["snip"]}))
    assert chosen.search.proxies == ("snip",)
    assert load_spec(_spec_file(tmp_path, search={"proxies": []})).search.proxies == ()
    with pytest.raises(SpecError) as err:
        load_spec(_spec_file(tmp_path, search={"proxies": ["snip"]}, constraints=["synflow >= 1"]))
    assert "constraints[0]: synflow is a zero-cost proxy that search.proxies leaves out" in str(err.value.issues[0])


def _with_proxies(table: Table) -> Table:
    """The made-up table, each row given made-up proxies: naswot grows with accuracy."""
    rows = []
    for i, row in enumerate(table.rows):
        made_up = {"naswot": 400 + 100 * row.curve[-1], "synflow": 2.0 + (i % 7) / 7, "proxy_s": 0.01}
        rows.append(Row(row.key, row.arch, {**row.costs, **made_up}, row.curve, row.train_s, row.seed))
    return Table(table.name, tuple(rows))


def test_a_replay_of_a_table_holding_proxies_reports_them_and_an_objective_can_name_one():
    table = _with_proxies(digits_table()[1])
    objectives = load_spec(DIGITS, [*RANDOM, "objectives=[{naswot: max}, {gmacs: min}]"])
    result = replay(objectives, table, trials=12)
    complete = [t for t in result.trials if t.state == "complete"]
    assert complete and all({"naswot", "synflow", "proxy_s"} <= set(t.metrics) for t in complete)
    for frozen in result.study.trials:
        if frozen.values is not None and frozen.user_attrs.get("metrics"):
            assert frozen.values[0] == frozen.user_attrs["metrics"]["naswot"]
    constrained = load_spec(DIGITS, [*RANDOM, 'constraints=["synflow >= 2.5"]'])
    refused = [t for t in replay(constrained, table, trials=12).trials if t.state == "infeasible"]
    assert refused and all("breaks synflow >= 2.5" in t.reason for t in refused)

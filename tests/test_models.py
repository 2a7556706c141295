import itertools

import pytest
import torch
import torch.nn.functional as F

from mechmem import HookedMLP, MLPConfig, analytic_solution, make_dataset
from mechmem.analysis.spectrum import neuron_ipr
from mechmem.models.mlp import activation_fn

P, N = 13, 24


def one_hot_reference(model: HookedMLP, pairs: torch.Tensor) -> torch.Tensor:
    """The paper's formulation: W phi(W_in (e_m (+) e_n)) with an explicit one-hot input."""
    cfg = model.cfg
    x = torch.cat([F.one_hot(pairs[:, 0], cfg.p), F.one_hot(pairs[:, 1], cfg.p)], 1).float()
    w_in = torch.cat([model.U, model.V], dim=1)  # (N, 2p): the first layer of the paper's code
    pre = x @ w_in.T
    if model.b_in is not None:
        pre = pre + model.b_in
    if cfg.dropout_site == "pre":
        pre = model.dropout(pre)
    hidden = model.norm(activation_fn(cfg.act, pre))
    if cfg.dropout_site == "post":
        hidden = model.dropout(hidden)
    out = hidden @ model.W.T
    return out if model.b_out is None else out + model.b_out


OPTIONS = list(
    itertools.product(
        ["quad", "relu", "gelu"],
        ["none", "batchnorm", "layernorm"],
        [0.0, 0.5],
        ["pre", "post"],
        [False, True],
    )
)


@pytest.mark.parametrize(("act", "norm", "dropout", "site", "bias"), OPTIONS)
@pytest.mark.parametrize("train", [False, True])
def test_lookup_equals_one_hot_formulation(act, norm, dropout, site, bias, train):
    cfg = MLPConfig(p=P, width=N, act=act, norm=norm, dropout=dropout, dropout_site=site, bias=bias)
    model = HookedMLP(cfg, seed=1)
    if bias:
        with torch.no_grad():
            model.b_in.normal_(generator=torch.Generator().manual_seed(2))
            model.b_out.normal_(generator=torch.Generator().manual_seed(3))
    model.train(train)
    pairs = make_dataset(op="add", p=P).pairs
    # Same dropout masks in both formulations: same RNG state, same shapes, same order.
    with torch.random.fork_rng():
        torch.manual_seed(0)
        ours = model(pairs)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        ref = one_hot_reference(model, pairs)
    assert ours.shape == (P * P, P)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)


def test_gradients_match_one_hot_formulation():
    model = HookedMLP(MLPConfig(p=P, width=N), seed=0)
    pairs = make_dataset(op="add", p=P).train_pairs
    target = F.one_hot((pairs[:, 0] + pairs[:, 1]) % P, P).float()
    F.mse_loss(model(pairs), target).backward()
    ours = [p.grad.clone() for p in (model.U, model.V, model.W)]
    model.zero_grad()
    F.mse_loss(one_hot_reference(model, pairs), target).backward()
    for a, b in zip(ours, (model.U.grad, model.V.grad, model.W.grad), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


def test_paper_init_statistics():
    model = HookedMLP(MLPConfig(p=97, width=500), seed=0)
    assert model.cfg.paper_init_std == pytest.approx(0.05, abs=1e-3)
    for w in (model.U, model.V, model.W):
        assert w.std().item() == pytest.approx(0.05, rel=0.03)
    assert model.b_in is None and model.b_out is None
    assert model.U.shape == (500, 97) and model.V.shape == (500, 97) and model.W.shape == (97, 500)
    same = HookedMLP(MLPConfig(p=97, width=500), seed=0)
    other = HookedMLP(MLPConfig(p=97, width=500), seed=1)
    assert torch.equal(model.U, same.U) and not torch.equal(model.U, other.U)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"width": 0}, "`width` must be a positive integer, got 0"),
        ({"act": "tanh"}, "`act` must be one of quad, relu, gelu, got 'tanh'"),
        ({"norm": "groupnorm"}, "`norm` must be one of none, batchnorm, layernorm"),
        ({"dropout": 1.0}, r"`dropout` must lie in \[0, 1\), got 1.0"),
        ({"dropout_site": "mid"}, "`dropout_site` must be 'pre' or 'post'"),
        ({"init": "xavier"}, "`init` must be 'paper' or 'pytorch'"),
        ({"init_scale": 0.0}, "`init_scale` must be positive"),
        ({"p": 1}, "`p` must be an integer >= 2, got 1"),
    ],
)
def test_bad_model_configs(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MLPConfig(**kwargs)


def test_analytic_solution_is_perfect_and_single_frequency():
    p, width = 97, 500
    model = analytic_solution(p=p, width=width, seed=0)
    ds = make_dataset(op="add", p=p)
    with torch.no_grad():
        pred = model(ds.pairs).argmax(-1)
    assert torch.equal(pred, ds.labels)
    for part in (model.U.detach(), model.V.detach(), model.W.detach().T):
        power = torch.fft.rfft(part.double()).abs() ** 2  # (N, p//2 + 1)
        top = power.max(dim=-1).values
        assert torch.all(top / power.sum(-1) > 1 - 1e-9)  # one frequency holds all the power
        assert torch.all(power[:, 0] < 1e-12 * top)  # and it is not DC
    # Each neuron uses the same frequency in U, V and W.
    freqs = [torch.fft.rfft(x.double()).abs().argmax(-1) for x in (model.U, model.V, model.W.T)]
    assert torch.equal(freqs[0], freqs[1]) and torch.equal(freqs[0], freqs[2])


@pytest.mark.parametrize("op", ["sub", "mul", "div", "sq_sum"])
def test_analytic_solution_for_every_operation(op):
    p = 31
    model = analytic_solution(p=p, width=600, seed=0, op=op)
    ds = make_dataset(op=op, p=p)
    with torch.no_grad():
        correct = model(ds.pairs).argmax(-1) == ds.labels
    has_log = (ds.pairs != 0).all(1) if op in ("mul", "div") else torch.ones_like(correct)
    assert correct[has_log].all()
    u, v, w = neuron_ipr(model, op)
    assert torch.all(w > 1 - 1e-6)
    if op != "sq_sum":
        assert torch.all(u > 1 - 1e-6) and torch.all(v > 1 - 1e-6)


def test_analytic_solution_rejects_bad_input():
    with pytest.raises(ValueError, match="must be prime for mul, got 12"):
        analytic_solution(p=12, op="mul")
    with pytest.raises(ValueError, match="Unknown operation"):
        analytic_solution(op="pow")


def test_model_axis_through_vmap_matches_each_model():
    # A leading model axis over stacked parameters runs the very same module code.
    models = [HookedMLP(MLPConfig(p=P, width=N), seed=s).eval() for s in range(3)]
    params, buffers = torch.func.stack_module_state(models)
    pairs = torch.stack([make_dataset(op="add", p=P, seed=s).train_pairs for s in range(3)])

    def run(params, buffers, x):
        return torch.func.functional_call(models[0], (params, buffers), (x,))

    batched = torch.vmap(run)(params, buffers, pairs)
    for i, m in enumerate(models):
        torch.testing.assert_close(batched[i], m(pairs[i]))

"""The hand-derived training step against autograd through `HookedMLP.forward` (the oracle)."""

import itertools

import pytest
import torch
import torch.nn.functional as F

from mechmem import HookedMLP, MLPConfig, make_dataset
from mechmem.train.engine import (
    Batch,
    Step,
    load_into_model,
    stack_buffers,
    stack_params,
)
from mechmem.train.metrics import loss_value

P, N = 13, 24
CPU = torch.device("cpu")
CASES = [
    dict(act=act, norm=norm, bias=bias, loss=loss)
    for act, norm, bias, loss in itertools.product(
        ("quad", "relu", "gelu"), ("none", "batchnorm", "layernorm"), (False, True), ("mse", "ce")
    )
]


def _setup(act="quad", norm="none", bias=False, dropout=0.0, site="pre", seed=0):
    cfg = MLPConfig(p=P, width=N, act=act, norm=norm, bias=bias, dropout=dropout,
                    dropout_site=site)
    model = HookedMLP(cfg, seed=seed).double()
    with torch.no_grad():  # non-trivial norm and bias parameters
        gen = torch.Generator().manual_seed(seed + 1)
        for name, t in model.named_parameters():
            if name.startswith(("norm", "b_")):
                t.add_(0.3 * torch.randn(t.shape, generator=gen, dtype=t.dtype))
    ds = make_dataset(p=P, train_frac=0.6, corrupt_frac=0.3, seed=seed)
    pairs, labels = ds.train_pairs, ds.train_labels
    batch = Batch(pairs[None, :, 0], pairs[None, :, 1], labels[None],
                  F.one_hot(labels, P).double()[None])
    return model, batch


def _pairs(batch, i=0):
    return torch.stack([batch.m[i], batch.n[i]], 1)


def _oracle(model, batch, loss, hooks=()):
    """Autograd's gradient of the mean loss through the model's own forward, training mode."""
    model.train()
    model.zero_grad()
    with model.hooks(fwd_hooks=list(hooks)):
        logits = model(_pairs(batch))
    loss_value(loss, logits, batch.labels[0]).backward()
    return logits.detach(), {k: v.grad.clone() for k, v in model.named_parameters()}


def _engine(model, batch, loss, generator=None, chunk=30 * N):
    """Our step; by default in chunks of 30 rows, so the batch of ~100 takes four."""
    params = stack_params([model], CPU)
    buffers = stack_buffers([model], CPU)
    step = Step(model.cfg, loss, params, chunk_elements=chunk)
    gens = None if generator is None else [generator]
    logits = step(params, buffers, batch, gens)[0].clone()
    mask = step.workspace(batch.m.shape[1]).mask
    mask = None if mask is None else mask[0].clone()
    grads = {k: v[0].clone() for k, v in step.grads.items()}
    grads["U"], grads["V"] = grads["U"].T, grads["V"].T  # back to the model's layout
    return logits, grads, {k: v[0] for k, v in buffers.items()}, mask


def test_chunks_are_equal_and_cover_the_batch():
    from mechmem.train.engine import chunk_rows

    assert chunk_rows(4704, 500) == 588  # 8 chunks at the paper's size
    assert chunk_rows(10, 500) == 10 and chunk_rows(101, 24, 30 * 24) == 26


@pytest.mark.parametrize("chunk", [30 * N, None], ids=["chunks", "whole"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(map(str, c.values())))
def test_step_gradient_equals_autograd(case, chunk):
    model, batch = _setup(case["act"], case["norm"], case["bias"])
    logits, grads, buffers, _ = _engine(model, batch, case["loss"], chunk=chunk)
    ref_logits, ref = _oracle(model, batch, case["loss"])
    torch.testing.assert_close(logits, ref_logits)
    assert grads.keys() == ref.keys()
    for name in ref:
        torch.testing.assert_close(grads[name], ref[name], msg=name)
    # BatchNorm's running statistics move exactly as nn.BatchNorm1d's do in training mode.
    for name, t in model.named_buffers():
        torch.testing.assert_close(buffers[name], t, msg=name)


@pytest.mark.parametrize("site", ["pre", "post"])
@pytest.mark.parametrize("act", ["quad", "relu"])
def test_step_dropout_gradient_equals_autograd_with_the_same_mask(site, act):
    model, batch = _setup(act, "layernorm", True, dropout=0.4, site=site)
    gen = torch.Generator().manual_seed(5)
    logits, grads, _, mask = _engine(model, batch, "mse", gen)
    kept = (mask > 0).double().mean().item()
    assert 0.4 < kept < 0.8 and torch.allclose(mask[mask > 0], torch.tensor(1 / 0.6).double())
    # The oracle: the same network without its own dropout, the mask applied by a hook.
    plain = HookedMLP(MLPConfig(p=P, width=N, act=act, norm="layernorm", bias=True), seed=0)
    plain = plain.double()
    plain.load_state_dict(model.state_dict())
    hook = ("hook_pre" if site == "pre" else "hook_normed", lambda x, hook: x * mask)
    ref_logits, ref = _oracle(plain, batch, "mse", [hook])
    torch.testing.assert_close(logits, ref_logits)
    for name in ref:
        torch.testing.assert_close(grads[name], ref[name], msg=name)


def test_dropout_masks_follow_the_generator():
    model, batch = _setup(dropout=0.5)
    masks = [_engine(model, batch, "mse", torch.Generator().manual_seed(s))[3] for s in (1, 1, 2)]
    assert torch.equal(masks[0], masks[1]) and not torch.equal(masks[0], masks[2])


@pytest.mark.parametrize("case", CASES[::2], ids=lambda c: "-".join(map(str, c.values())))
def test_group_logits_are_each_models_own_forward_in_eval_mode(case):
    from mechmem import TrainConfig
    from mechmem.train.group import ModelGroup

    fields = {"p": P, "width": N, "act": case["act"], "norm": case["norm"], "bias": case["bias"],
              "device": "cpu"}
    # Padded rows too, where the group allows sets of different sizes (not under BatchNorm).
    fracs = [0.5] * 3 if case["norm"] == "batchnorm" else [0.5, 0.6, 0.7]
    configs = [TrainConfig(seed=s, train_frac=fracs[s], **fields) for s in range(3)]
    models = []
    for c in configs:
        model = HookedMLP(c.model_config(), seed=c.seed).double()
        with torch.no_grad():
            for prm in model.parameters():
                prm.add_(0.1)  # non-zero biases
        if case["norm"] == "batchnorm":  # non-trivial running statistics
            model.norm.running_mean.uniform_(-0.5, 0.5)
            model.norm.running_var.uniform_(0.5, 2.0)
        models.append(model.eval())
    group = ModelGroup(configs, models=models, chunk_elements=30 * N)
    d = group.data
    ours = group.logits(d.test_m, d.test_n)
    for i, (model, ds) in enumerate(zip(models, group.datasets, strict=True)):
        pairs = ds.test_pairs
        torch.testing.assert_close(ours[i, : len(pairs)], model(pairs))


def test_params_round_trip_into_the_model_exactly():
    model, _ = _setup(norm="batchnorm", bias=True)
    params, buffers = stack_params([model], CPU), stack_buffers([model], CPU)
    assert params["U"].shape == (1, P, N) and params["U"].is_contiguous()
    other = HookedMLP(model.cfg, seed=9).double()
    load_into_model(other, params, buffers)
    for (k, a), b in zip(model.state_dict().items(), other.state_dict().values(), strict=True):
        assert torch.equal(a, b), k


@pytest.mark.parametrize("chunk", [30 * N, None], ids=["chunks", "whole"])
@pytest.mark.parametrize("norm", ["none", "batchnorm", "layernorm"])
def test_stacked_models_each_get_their_own_gradient(norm, chunk):
    """Models stacked on the leading axis, each with its own weights, examples (of different
    counts: padding), labels and dropout rate, get the gradients each gets alone."""
    cases = [_setup(norm=norm, bias=True, seed=s) for s in (0, 1, 2)]
    models = [m for m, _ in cases]
    rows = [b.m.shape[1] for _, b in cases]
    if norm == "batchnorm":  # BatchNorm's statistics would see padding: equal counts
        rows = [min(rows)] * 3
    else:
        rows = [rows[0], rows[1] - 7, rows[2] - 20]
    batches = [Batch(b.m[:, :r], b.n[:, :r], b.labels[:, :r], b.target[:, :r])
               for (_, b), r in zip(cases, rows, strict=True)]
    singles = [_engine(m, b, "mse", chunk=chunk) for m, b in zip(models, batches, strict=True)]
    B = max(rows)

    def pad(t):
        out = t.new_zeros((1, B, *t.shape[2:]))
        out[:, : t.shape[1]] = t
        return out

    valid = torch.stack([torch.arange(B) < r for r in rows])
    stacked_batch = Batch(*(torch.cat([pad(getattr(b, k)) for b in batches])
                            for k in ("m", "n", "labels", "target")),
                          valid=valid, count=torch.tensor(rows, dtype=torch.float64))
    params, buffers = stack_params(models, CPU), stack_buffers(models, CPU)
    step = Step(models[0].cfg, "mse", params, chunk_elements=chunk)
    logits = step(params, buffers, stacked_batch)
    for i, (ref_logits, ref, ref_buffers, _) in enumerate(singles):
        torch.testing.assert_close(logits[i, : rows[i]], ref_logits)
        for name in ref:
            g = step.grads[name][i]
            torch.testing.assert_close(g.T if name in ("U", "V") else g, ref[name], msg=name)
        for name in ref_buffers:
            torch.testing.assert_close(buffers[name][i], ref_buffers[name], msg=name)


def test_stacked_dropout_rates_and_masks_are_per_model():
    """Per-model rates; each model's mask comes from its own generator, as it would alone."""
    models = [_setup(dropout=0.3, seed=s)[0] for s in (0, 1)]
    _, batch = _setup()
    params = stack_params(models, CPU)
    step = Step(models[0].cfg, "mse", params, dropout=[0.0, 0.5], chunk_elements=30 * N)
    step(params, {}, Batch(batch.m.repeat(2, 1), batch.n.repeat(2, 1),
                           batch.labels.repeat(2, 1), batch.target.repeat(2, 1, 1)),
         [torch.Generator().manual_seed(3), torch.Generator().manual_seed(4)])
    mask = step.workspace(batch.m.shape[1]).mask
    assert torch.equal(mask[0], torch.ones_like(mask[0]))  # rate 0: nothing dropped
    single = _engine(_setup(dropout=0.5, seed=1)[0], batch, "mse",
                     torch.Generator().manual_seed(4))[3]
    assert torch.equal(mask[1], single)

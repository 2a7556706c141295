"""The hand-derived training step against autograd through `HookedMLP.forward` (the oracle)."""

import itertools

import pytest
import torch
import torch.nn.functional as F

from mechmem import HookedMLP, MLPConfig, make_dataset
from mechmem.train.engine import (
    Batch,
    Step,
    buffers_from_model,
    eval_logits,
    load_into_model,
    params_from_model,
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
    batch = Batch(pairs[:, 0].contiguous(), pairs[:, 1].contiguous(), labels,
                  F.one_hot(labels, P).double())
    return model, batch


def _oracle(model, batch, loss, hooks=()):
    """Autograd's gradient of the mean loss through the model's own forward, training mode."""
    model.train()
    model.zero_grad()
    with model.hooks(fwd_hooks=list(hooks)):
        logits = model(torch.stack([batch.m, batch.n], 1))
    loss_value(loss, logits, batch.labels).backward()
    return logits.detach(), {k: v.grad.clone() for k, v in model.named_parameters()}


def _engine(model, batch, loss, generator=None, chunk=30 * N):
    """Our step; by default in chunks of 30 rows, so the batch of ~100 takes four."""
    params = params_from_model(model, CPU)
    buffers = buffers_from_model(model, CPU)
    step = Step(model.cfg, loss, params, chunk_elements=chunk)
    logits = step(params, buffers, batch, generator).clone()
    mask = step.workspace(batch.m.shape[0]).mask
    mask = None if mask is None else mask.clone()
    grads = {k: v.clone() for k, v in step.grads.items()}
    grads["U"], grads["V"] = grads["U"].T, grads["V"].T  # back to the model's layout
    return logits, grads, buffers, mask


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
def test_eval_logits_equal_model_forward_in_eval_mode(case):
    model, batch = _setup(case["act"], case["norm"], case["bias"])
    if case["norm"] == "batchnorm":  # non-trivial running statistics
        model.norm.running_mean.uniform_(-0.5, 0.5)
        model.norm.running_var.uniform_(0.5, 2.0)
    model.eval()
    params, buffers = params_from_model(model, CPU), buffers_from_model(model, CPU)
    ours = eval_logits(model.cfg, params, buffers, batch.m, batch.n)
    torch.testing.assert_close(ours, model(torch.stack([batch.m, batch.n], 1)))


def test_params_round_trip_into_the_model_exactly():
    model, _ = _setup(norm="batchnorm", bias=True)
    params, buffers = params_from_model(model, CPU), buffers_from_model(model, CPU)
    assert params["U"].shape == (P, N) and params["U"].is_contiguous()
    other = HookedMLP(model.cfg, seed=9).double()
    load_into_model(other, params, buffers)
    for (k, a), b in zip(model.state_dict().items(), other.state_dict().values(), strict=True):
        assert torch.equal(a, b), k


def test_step_keeps_a_leading_model_axis_open():
    """Two models stacked on a leading axis get the gradients each gets alone."""
    models = [_setup(seed=s)[0] for s in (0, 1)]
    _, batch = _setup()
    singles = [_engine(m, batch, "mse") for m in models]
    per = [params_from_model(m, CPU) for m in models]
    stacked = {k: torch.stack([p[k] for p in per]) for k in per[0]}
    step = Step(models[0].cfg, "mse", stacked, chunk_elements=30 * N)
    logits = step(stacked, {}, batch)
    grads = step.grads
    for i, (ref_logits, ref, _, _) in enumerate(singles):
        torch.testing.assert_close(logits[i], ref_logits)
        torch.testing.assert_close(grads["U"][i].T, ref["U"])
        torch.testing.assert_close(grads["W"][i], ref["W"])


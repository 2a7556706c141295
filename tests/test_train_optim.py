"""The plain-tensor optimizers against torch.optim (single-tensor implementations) as oracle."""

import pytest
import torch

from mechmem.train.optim import Optimizer

TORCH = {"adamw": torch.optim.AdamW, "adam": torch.optim.Adam, "sgd": torch.optim.SGD}


@pytest.mark.parametrize("wd", [0.0, 0.5])
@pytest.mark.parametrize("kind", ["adamw", "adam", "sgd"])
def test_updates_equal_torch_optim(kind, wd):
    gen = torch.Generator().manual_seed(0)
    ours = [torch.randn(5, 7, generator=gen), torch.randn(3, generator=gen)]
    theirs = [torch.nn.Parameter(t.clone()) for t in ours]
    grads = [torch.zeros_like(t) for t in ours]
    kw = {} if kind == "sgd" else {"betas": (0.9, 0.98), "eps": 1e-8}
    opt = Optimizer(kind, ours, grads, lr=0.01, betas=(0.9, 0.98), eps=1e-8, weight_decay=wd)
    ref = TORCH[kind](theirs, lr=0.01, weight_decay=wd, foreach=False, **kw)
    for _ in range(5):
        for g, p in zip(grads, theirs, strict=True):
            g.copy_(torch.randn(g.shape, generator=gen))
            p.grad = g.clone()
        opt.step()
        ref.step()
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b.detach(), rtol=1e-6, atol=1e-7)


def test_state_round_trips_and_is_checked():
    p, g = torch.ones(4), torch.full((4,), 0.5)
    opt = Optimizer("adamw", [p], [g], lr=0.1, betas=(0.9, 0.98), eps=1e-8, weight_decay=1.0)
    opt.step()
    state = opt.state_dict()
    q = p.clone()
    other = Optimizer("adamw", [q], [g], lr=0.1, betas=(0.9, 0.98), eps=1e-8, weight_decay=1.0)
    other.load_state_dict(state)
    opt.step()
    other.step()
    assert torch.equal(p, q) and other.steps == 2
    sgd = Optimizer("sgd", [q], [g], lr=0.1, betas=(0.9, 0.98), eps=1e-8, weight_decay=0.0)
    with pytest.raises(ValueError, match="optimizer state is for 'adamw', not 'sgd'"):
        sgd.load_state_dict(state)

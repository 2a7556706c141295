"""AdamW, Adam and SGD over plain tensors, with PyTorch's update rules and no per-step sync.

Why not `torch.optim`: its first use imports torch._dynamo (seconds of start-up for every
`mechmem train`), and its step counter lives in tensors. Here the step count is a Python int,
the bias corrections are Python floats, and every update is a few in-place ops per tensor that
broadcast over any leading axes. The formulas are `torch.optim`'s single-tensor ones, in the
same order (tests/test_train_optim.py compares against torch.optim as an oracle).

Per-model hyperparameters: `lr` and `weight_decay` may be tensors of shape (M,), one value per
model of a stack whose tensors have a leading model axis; each model then gets the update it
would get alone, up to float rounding.
"""

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from .config import OPTIMIZERS

Hyper = float | Tensor


def _per_model(x: Hyper, like: Tensor) -> Hyper:
    """A per-model value shaped to broadcast against `like` (models, ...); floats stay floats."""
    if isinstance(x, Tensor):
        return x.to(like.device, like.dtype).view(-1, *([1] * (like.ndim - 1)))
    return x


class Optimizer:
    """One of "adamw" (decoupled weight decay), "adam" (L2 added to the gradient) or "sgd".

    Args:
        kind: the update rule.
        params: tensors updated in place.
        grads: their gradients, read at every `step` (written in place by the training step).
        lr, weight_decay: floats, or (M,) tensors of per-model values (see the module doc).
        betas, eps: as in `torch.optim` (unused by sgd).
    """

    def __init__(self, kind: str, params: Sequence[Tensor], grads: Sequence[Tensor], *,
                 lr: Hyper, betas: tuple[float, float], eps: float,
                 weight_decay: Hyper) -> None:
        if kind not in OPTIMIZERS:
            raise ValueError(f"`kind` must be one of {', '.join(OPTIMIZERS)}, got {kind!r}.")
        if len(params) != len(grads):
            raise ValueError(f"{len(params)} parameters but {len(grads)} gradients.")
        self.kind, self.params, self.grads = kind, list(params), list(grads)
        self.lr, self.betas, self.eps, self.weight_decay = lr, betas, eps, weight_decay
        self.steps = 0
        adaptive = kind != "sgd"
        self.exp_avg = [torch.zeros_like(p) for p in self.params] if adaptive else []
        self.exp_avg_sq = [torch.zeros_like(p) for p in self.params] if adaptive else []
        self._tmp = [torch.empty_like(p) for p in self.params]
        self._lr = [_per_model(lr, p) for p in self.params]
        self._wd = [_per_model(weight_decay, p) for p in self.params]
        # AdamW's decay factor 1 - lr * wd, per parameter tensor (a float or a per-model view).
        self._decay = [1 - lr_ * wd_ for lr_, wd_ in zip(self._lr, self._wd, strict=True)]

    @torch.no_grad()
    def step(self) -> None:
        """One update of every parameter from its current gradient."""
        self.steps += 1
        if self.kind == "sgd":
            for p, g, lr, wd in zip(self.params, self.grads, self._lr, self._wd, strict=True):
                if isinstance(wd, Tensor) or wd:
                    g = g.add(p * wd) if isinstance(wd, Tensor) else g.add(p, alpha=wd)
                if isinstance(lr, Tensor):
                    p.sub_(g * lr)
                else:
                    p.add_(g, alpha=-lr)
            return
        b1, b2 = self.betas
        bc1 = 1 - b1**self.steps
        bc2_sqrt = (1 - b2**self.steps) ** 0.5
        for p, g, m, v, tmp, lr, wd, decay in zip(
            self.params, self.grads, self.exp_avg, self.exp_avg_sq, self._tmp, self._lr,
            self._wd, self._decay, strict=True,
        ):
            if self.kind == "adamw":
                p.mul_(decay)
            elif isinstance(wd, Tensor):
                g = g.add(p * wd)
            elif wd:
                g = g.add(p, alpha=wd)
            m.lerp_(g, 1 - b1)
            v.mul_(b2).addcmul_(g, g, value=1 - b2)
            denom = torch.sqrt(v, out=tmp).div_(bc2_sqrt).add_(self.eps)
            if isinstance(lr, Tensor):
                # p -= (lr / bc1) * m / denom, with a per-model step size.
                p.sub_(torch.div(m, denom, out=tmp).mul_(lr / bc1))
            else:
                p.addcdiv_(m, denom, value=-lr / bc1)

    def state_dict(self) -> dict[str, Any]:
        """Plain containers and tensors: the step count and the moment estimates (copies)."""
        return {
            "kind": self.kind,
            "steps": self.steps,
            "exp_avg": [t.detach().cpu().clone() for t in self.exp_avg],
            "exp_avg_sq": [t.detach().cpu().clone() for t in self.exp_avg_sq],
        }

    @torch.no_grad()
    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict` returned (onto this optimizer's devices)."""
        if state.get("kind") != self.kind:
            raise ValueError(
                f"optimizer state is for {state.get('kind')!r}, not {self.kind!r}.")
        for name in ("exp_avg", "exp_avg_sq"):
            mine, theirs = getattr(self, name), state[name]
            if [a.shape for a in mine] != [b.shape for b in theirs]:
                raise ValueError(f"optimizer state {name!r} does not match the parameters.")
            for a, b in zip(mine, theirs, strict=True):
                a.copy_(b)
        self.steps = int(state["steps"])

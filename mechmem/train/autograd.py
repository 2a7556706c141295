"""`AutogradGroup`: runs of any model family trained through the model's own forward and
autograd, behind the same interface as the MLP's fused `ModelGroup`; `make_group` picks one.

The 3-layer MLP and the transformer train here, one model after another inside each step (their
steps are large enough that batching several gives little on a CPU). Everything else is shared
with the fused path: the data, the minibatch orders, the optimizer, the seeded dropout streams,
the history's kernels, so that resuming is bit-identical on a CPU and a sweep can train them.
"""

import copy
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from ..data import ModularDataset
from ..models.families import build_model
from .config import TrainConfig
from .group import ModelGroup, group_members, initial_model, resolve_device
from .metrics import history_keys, loss_value, model_entry
from .optim import Optimizer
from .stack import BatchOrder, derived_seed


class AutogradGroup:
    """The training state of M runs of one family, each with its own module and optimizer.

    Args and attributes as for `ModelGroup` (`chunk_elements` is accepted and unused).
    """

    def __init__(self, configs: Sequence[TrainConfig], *,
                 models: Sequence[nn.Module] | None = None,
                 datasets: Sequence[ModularDataset] | None = None,
                 device: torch.device | None = None,
                 chunk_elements: int | None = None) -> None:
        self.configs, self.datasets = group_members(configs, datasets)
        c0 = self.configs[0]
        self.device = resolve_device(c0.device) if device is None else device
        mods = list(models) if models is not None else [initial_model(c) for c in configs]
        # Copies: the caller's modules are never trained in place.
        self.modules = [copy.deepcopy(m).to(self.device).train() for m in mods]
        self.history_keys = history_keys(self.modules[0])
        self.grads = [[torch.zeros_like(p) for p in m.parameters()] for m in self.modules]
        self.optimizers = [
            Optimizer(c.optimizer, list(m.parameters()), g, lr=c.lr, betas=c.betas, eps=c.eps,
                      weight_decay=c.weight_decay)
            for c, m, g in zip(self.configs, self.modules, self.grads, strict=True)]
        self.orders = [BatchOrder(c, ds.n_train) for c, ds in zip(configs, self.datasets,
                                                                    strict=True)]
        self._train = [(ds.train_pairs.to(self.device), ds.train_labels.to(self.device))
                       for ds in self.datasets]
        self.reuse = False

    @property
    def models(self) -> int:
        return len(self.configs)

    def gradients(self, s: int) -> None:
        """Step `s`'s forward and backward for every run (gradients into `grads`)."""
        for i, (config, module) in enumerate(zip(self.configs, self.modules, strict=True)):
            pairs, labels = self._train[i]
            order = self.orders[i]
            if not order.is_full:
                idx = order.indices(s).to(self.device)
                pairs, labels = pairs[idx], labels[idx]
            params = list(module.parameters())
            if config.dropout > 0:
                loss = self._seeded_loss(config, module, pairs, labels, derived_seed(
                    config.seed, 2, s))
            else:
                loss = loss_value(config.loss, module(pairs), labels)
            for g, grad in zip(self.grads[i], torch.autograd.grad(loss, params), strict=True):
                g.copy_(grad)

    def _seeded_loss(self, config: TrainConfig, module: nn.Module, pairs: Tensor,
                     labels: Tensor, seed: int) -> Tensor:
        """The loss with dropout masks from `seed`: dropout draws from the global stream, so it
        is seeded for the step and restored afterwards (the caller's stream is untouched)."""
        cuda = self.device.type == "cuda"
        with torch.random.fork_rng(devices=[self.device] if cuda else []):
            # The generators themselves, not torch.manual_seed: that one also walks every CUDA
            # device and costs milliseconds a call.
            torch.default_generator.manual_seed(seed)
            if cuda:
                torch.cuda.default_generators[self.device.index or 0].manual_seed(seed)
            return loss_value(config.loss, module(pairs), labels)

    def record(self, s: int) -> list[dict[str, float]]:
        """One history entry per run at state `s`."""
        return self.evaluate(s)

    def advance(self, s: int) -> None:
        """Step `s`: state s to state s + 1."""
        self.gradients(s)
        for opt in self.optimizers:
            opt.step()

    def evaluate(self, s: int, train_logits: Tensor | None = None) -> list[dict[str, float]]:
        return [model_entry(s, m, ds, c.loss, self.history_keys,
                            track_examples=c.track_examples)
                for m, ds, c in zip(self.modules, self.datasets, self.configs, strict=True)]

    def model(self, i: int) -> nn.Module:
        """Run i's network as it stands, on the CPU, in eval mode (a fresh module)."""
        model = build_model(self.configs[i].model_config())
        self.load_into(model, i)
        return model

    def load_into(self, model: nn.Module, i: int) -> None:
        """Copy run i's current state into `model` (eval mode)."""
        model.load_state_dict({k: v.detach().cpu() for k, v in
                               self.modules[i].state_dict().items()})
        model.eval()

    def weights(self, name: str) -> Tensor:
        """State `name` (a state_dict name) of every run, stacked, on the CPU; a copy."""
        return torch.stack([m.state_dict()[name].detach().cpu().clone() for m in self.modules])

    def state(self) -> dict[str, Tensor]:
        """Every run's state_dict, stacked on a leading model axis, on the CPU (copies)."""
        return {name: self.weights(name) for name in self.modules[0].state_dict()}

    def optimizer_state(self, i: int) -> dict[str, Any]:
        return self.optimizers[i].state_dict()

    def load_optimizer_state(self, states: Sequence[dict[str, Any]]) -> None:
        for opt, state in zip(self.optimizers, states, strict=True):
            opt.load_state_dict(state)


def make_group(configs: Sequence[TrainConfig], **kwargs: Any) -> "ModelGroup | AutogradGroup":
    """The group that trains `configs`: the fused `ModelGroup` for the 2-layer MLP, an
    `AutogradGroup` for the other families (same interface)."""
    cls = ModelGroup if configs[0].model == "mlp" else AutogradGroup
    return cls(configs, **kwargs)

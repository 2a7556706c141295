"""`ModelGroup`: M runs that share one training step, each exactly the run `train` would do.

The runs of a group share everything that fixes the shapes and the kind of step (p, width,
activation, norm, loss, optimizer, batch size, step count, recording intervals); they may differ
in everything else: data fraction, corruption, operation, seed and seeding, init, learning rate,
weight decay and dropout rate. Each run keeps its own split, labels, initial weights, minibatch
order and dropout masks, so that run i of a group follows `train(configs[i])` up to float
rounding. A single run is a group of one.
"""

import dataclasses
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor
from torch.func import functional_call, vmap

from ..data import ModularDataset, make_dataset
from ..models.families import build_model
from ..models.mlp import HookedMLP
from .config import TrainConfig
from .engine import (
    TRANSPOSED,
    Batch,
    Step,
    chunks,
    default_chunk_elements,
    load_into_model,
    stack_buffers,
    stack_params,
)
from .metrics import HISTORY_KEYS, Evaluator
from .optim import Optimizer
from .stack import BatchOrder, GroupData, batch_size_of, derived_seed, paper_initial_weights

# TrainConfig fields a group's runs may differ in (the rest must be equal).
PER_MODEL_FIELDS = ("op", "train_frac", "corrupt_frac", "corruption", "seed", "seeding", "init",
                    "init_scale", "lr", "weight_decay", "dropout", "name")


def resolve_device(device: str) -> torch.device:
    """"auto" -> CUDA when available, else CPU; "cuda" without a GPU is an error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for but no CUDA GPU is available; use cpu.")
    return torch.device(device)


def group_key(config: TrainConfig, n_train: int) -> tuple[Any, ...]:
    """Runs with equal keys can share a step. `n_train` is the run's training-set size: runs
    with minibatches share a step when their batches have the same size, full-batch runs
    whatever their sizes (padded), except under BatchNorm, whose statistics would see the
    padding."""
    d = config.to_dict()
    fixed = tuple((k, repr(v)) for k, v in d.items() if k not in PER_MODEL_FIELDS + (
        "batch_size",))
    size = batch_size_of(config, n_train)
    if size == n_train:
        batch = ("full", n_train if config.norm == "batchnorm" else None)
    else:
        batch = ("minibatch", size)
    return fixed + (batch,)


def group_members(configs: Sequence[TrainConfig], datasets: Sequence[ModularDataset] | None
                  ) -> tuple[list[TrainConfig], list[ModularDataset]]:
    """The runs of a group and their datasets (made from the configs unless given), checked to
    be able to share a step."""
    if not configs:
        raise ValueError("A model group needs at least one config.")
    configs = list(configs)
    datasets = list(datasets) if datasets is not None else [
        make_dataset(c.dataset_spec()) for c in configs]
    keys = {group_key(c, ds.n_train) for c, ds in zip(configs, datasets, strict=True)}
    if len(keys) != 1:
        raise ValueError("These runs cannot share a training step: they differ in a field "
                         "other than " + ", ".join(PER_MODEL_FIELDS) + ".")
    return configs, datasets


def initial_model(config: TrainConfig) -> torch.nn.Module:
    """The network a run of `config` starts from (step 0), in training mode.

    Example:
        >>> initial_model(TrainConfig(width=64)).U.shape
        torch.Size([64, 97])
    """
    model = build_model(config.model_config(), seed=config.seed)
    if config.seeding != "mechmem":
        weights, _ = paper_initial_weights(config)
        with torch.no_grad():
            for w, value in zip((model.U, model.V, model.W), weights, strict=True):
                w.copy_(value)
    return model


def _shared(values: Sequence[float], device: torch.device) -> float | Tensor:
    """One float when every model has the same value (the single-run update), else a tensor."""
    if len(set(values)) == 1:
        return float(values[0])
    return torch.tensor(values, dtype=torch.get_default_dtype(), device=device)


class ModelGroup:
    """The training state of M runs: stacked weights, optimizer state, data and orders.

    Args:
        configs: the runs (see the module doc for what they must share).
        models: their current networks (default: `initial_model` of each).
        datasets: their datasets (default: `make_dataset` of each config's spec).
        device: where to train (default: the first config's `device`, resolved).
        chunk_elements: activations per engine chunk (default: by device).

    Attributes:
        configs, datasets, device, params, buffers, step, optimizer, data, orders.
        reuse: whether the training forward of step s is the evaluation-mode forward of state s
            on the training set (full batch, no dropout, no BatchNorm), so that an evaluation
            can take the step's logits.
    """

    def __init__(self, configs: Sequence[TrainConfig], *,
                 models: Sequence[HookedMLP] | None = None,
                 datasets: Sequence[ModularDataset] | None = None,
                 device: torch.device | None = None,
                 chunk_elements: int | None = None) -> None:
        self.configs, self.datasets = group_members(configs, datasets)
        c0 = self.configs[0]
        self.device = resolve_device(c0.device) if device is None else device
        models = list(models) if models is not None else [initial_model(c) for c in configs]
        self.cfg = dataclasses.replace(c0.model_config(), dropout=0.0)
        self.params = stack_params(models, self.device)
        self.buffers = stack_buffers(models, self.device)
        elements = default_chunk_elements(self.device) if chunk_elements is None else (
            chunk_elements)
        self.chunk_elements = elements
        dropout = [c.dropout for c in self.configs]
        self.step = Step(self.cfg, c0.loss, self.params, dropout=dropout,
                         chunk_elements=elements)
        self.optimizer = Optimizer(
            c0.optimizer, list(self.params.values()), list(self.step.grads.values()),
            lr=_shared([c.lr for c in configs], self.device), betas=c0.betas, eps=c0.eps,
            weight_decay=_shared([c.weight_decay for c in configs], self.device))
        self.data = GroupData(self.datasets, self.device)
        self.orders = [BatchOrder(c, ds.n_train) for c, ds in zip(configs, self.datasets,
                                                                    strict=True)]
        self.full = all(o.is_full for o in self.orders)
        self._full_batch = self.data.full_batch() if self.full else None
        self.reuse = self.full and not any(dropout) and self.cfg.norm != "batchnorm"
        self.mask_gens = ([torch.Generator(device=self.device) for _ in configs]
                          if any(dropout) else None)
        self.evaluator = Evaluator(self.data, c0.loss, [c.op for c in configs],
                                   track_examples=c0.track_examples)
        self.history_keys = HISTORY_KEYS
        # Evaluations run `HookedMLP.forward` itself (one definition of the forward), over the
        # stacked weights: a template module called with each model's tensors.
        self._template = HookedMLP(self.cfg).to(self.device).eval()
        self._forward = vmap(lambda p, b, x: functional_call(self._template, (p, b), (x,)))
        self._ready: int | None = None  # the step whose gradients `record` already computed

    @property
    def models(self) -> int:
        return len(self.configs)

    def batch(self, s: int) -> Batch:
        """Every model's examples of step `s`."""
        if self._full_batch is not None:
            return self._full_batch
        idx = torch.stack([o.indices(s) for o in self.orders]).to(self.device)
        return self.data.batch(idx)

    def gradients(self, s: int) -> Tensor:
        """Run step `s`'s forward and backward (gradients into `step.grads`); the training-mode
        logits (a reused buffer)."""
        if self.mask_gens is not None:
            for g, c in zip(self.mask_gens, self.configs, strict=True):
                g.manual_seed(derived_seed(c.seed, 2, s))
        return self.step(self.params, self.buffers, self.batch(s), self.mask_gens)

    def record(self, s: int) -> list[dict[str, float]]:
        """One history entry per model at state `s`. Where `reuse` holds and a step follows,
        step s's forward and backward run here (its logits are the evaluation's train logits)
        and `advance(s)` then only applies the update."""
        logits = None
        if self.reuse and s < self.configs[0].steps:
            logits = self.gradients(s)
            self._ready = s
        return self.evaluate(s, logits)

    def advance(self, s: int) -> None:
        """Step `s`: state s to state s + 1 (gradients, unless `record(s)` computed them, then
        the optimizer update)."""
        if self._ready != s:
            self.gradients(s)
        self._ready = None
        self.optimizer.step()

    def evaluate(self, s: int, train_logits: Tensor | None = None) -> list[dict[str, float]]:
        """One history entry per model at state `s`; `train_logits`: the step's logits where
        `reuse` holds (else the training set is evaluated here)."""
        d = self.data
        if train_logits is None:
            train_logits = self.logits(d.train_m, d.train_n)
        return self.evaluator(s, train_logits, self.logits(d.test_m, d.test_n), self.params)

    @torch.no_grad()
    def logits(self, m: Tensor, n: Tensor) -> Tensor:
        """Evaluation-mode logits (M, rows, p) of each model on its own pairs (m, n), through
        `HookedMLP.forward` (vmapped over the models), in cache-sized chunks of rows."""
        params = {k: v.transpose(-1, -2) if k in TRANSPOSED else v for k, v in
                  self.params.items()}  # the model's orientation (views)
        pairs = torch.stack([m, n], -1)
        M, rows = m.shape
        out = self.params["W"].new_empty(M, rows, self.cfg.p)
        for a, b, lo, hi in chunks(M, rows, self.cfg.width, 4 * self.chunk_elements):
            out[a:b, lo:hi] = self._forward({k: v[a:b] for k, v in params.items()},
                                            {k: v[a:b] for k, v in self.buffers.items()},
                                            pairs[a:b, lo:hi])
        return out

    def model(self, i: int) -> HookedMLP:
        """Run i's network as it stands, on the CPU, in eval mode (a fresh module)."""
        model = HookedMLP(self.configs[i].model_config())
        self.load_into(model, i)
        return model

    def load_into(self, model: HookedMLP, i: int) -> None:
        """Copy run i's current state into `model` (eval mode)."""
        load_into_model(model, {k: v.cpu() for k, v in self.params.items()},
                        {k: v.cpu() for k, v in self.buffers.items()}, i)
        model.eval()

    def weights(self, name: str) -> Tensor:
        """State `name` (a `HookedMLP` state_dict name: "U", "W", "norm.running_var", ...) of
        every run in the model's orientation, stacked, on the CPU: U and V (M, width, p), W
        (M, p, width); a copy."""
        t = self.params[name] if name in self.params else self.buffers[name]
        t = t.transpose(-1, -2) if name in TRANSPOSED else t
        return t.to("cpu", copy=True, memory_format=torch.contiguous_format)

    def state(self) -> dict[str, Tensor]:
        """Every run's state_dict, stacked on a leading model axis, on the CPU (copies)."""
        return {name: self.weights(name) for name in (*self.params, *self.buffers)}

    def optimizer_state(self, i: int) -> dict[str, Any]:
        """Run i's optimizer state, shaped as a single run's."""
        state = self.optimizer.state_dict()
        for k in ("exp_avg", "exp_avg_sq"):
            state[k] = [t[i].clone() for t in state[k]]
        return state

    def load_optimizer_state(self, states: Sequence[dict[str, Any]]) -> None:
        """Restore every run's optimizer state (as `optimizer_state` returned them)."""
        steps = {int(s["steps"]) for s in states}
        if len(steps) != 1:
            raise ValueError("The runs of a group must have taken the same number of steps.")
        merged = {"kind": states[0].get("kind"), "steps": steps.pop()}
        for k in ("exp_avg", "exp_avg_sq"):
            merged[k] = [torch.stack(ts) for ts in zip(*(s[k] for s in states), strict=True)]
        self.optimizer.load_state_dict(merged)

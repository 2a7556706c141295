"""Random halves of a training set, and one chunk of subset models trained together."""

from collections.abc import Callable, Sequence
from typing import Any

import torch
from jaxtyping import Bool
from torch import Tensor

from ..data import ModularDataset
from ..train.autograd import make_group
from ..train.config import TrainConfig
from ..train.group import initial_model
from ..train.stack import derived_seed

# The seed stream of the subsets (the trainer's streams 1 and 2 are minibatch orders and dropout).
_SUBSET_STREAM = 3


def subset_mask(n_train: int, seed: int, k: int, fraction: float = 0.5
                ) -> Bool[Tensor, " train"]:
    """Model k's random subset of a training set of `n_train` examples (floor(fraction n) of
    them; a half by default), drawn from its own seeded generator."""
    gen = torch.Generator().manual_seed(derived_seed(seed, _SUBSET_STREAM, k))
    mask = torch.zeros(n_train, dtype=torch.bool)
    mask[torch.randperm(n_train, generator=gen)[: int(fraction * n_train)]] = True
    return mask


def subset_dataset(dataset: ModularDataset, mask: Bool[Tensor, " train"]) -> ModularDataset:
    """`dataset` trained on the examples of `mask` only (their labels and corruption kept, the
    order kept); the test set is unchanged."""
    return ModularDataset(spec=dataset.spec, pairs=dataset.pairs, labels=dataset.labels,
                          train_idx=dataset.train_idx[mask], test_idx=dataset.test_idx,
                          train_labels=dataset.train_labels[mask],
                          corrupted=dataset.corrupted[mask])


def model_config(config: TrainConfig, k: int) -> TrainConfig:
    """Model k's run: `config` with seed `config.seed + k` (its initial weights, minibatch
    order and dropout masks); its data is the base dataset's subset, not this seed's split."""
    return config.replace(seed=config.seed + k)


def train_subsets(
    config: TrainConfig,
    dataset: ModularDataset,
    models: Sequence[int],
    *,
    fraction: float = 0.5,
    device: torch.device | None = None,
    should_stop: Callable[[], Any] | None = None,
    on_step: Callable[[int], Any] | None = None,
) -> tuple[Bool[Tensor, "models train"], list[torch.nn.Module]]:
    """Train models `models` of a counterfactual run together, each on its random subset
    (`fraction` of the examples) of `dataset`, through the trainer's stacked group
    (per-model datasets).

    Returns:
        (each model's subset mask over `dataset`'s training examples, the trained networks in
        eval mode on the CPU).
    """
    masks = torch.stack([subset_mask(dataset.n_train, config.seed, k, fraction)
                         for k in models])
    configs = [model_config(config, k) for k in models]
    datasets = [subset_dataset(dataset, m) for m in masks]
    group = make_group(configs, models=[initial_model(c) for c in configs], datasets=datasets,
                       device=device)
    for s in range(config.steps):
        if should_stop is not None and should_stop():
            raise KeyboardInterrupt(f"stopped at step {s}")
        group.advance(s)
        if on_step is not None:
            on_step(group.models)
    return masks, [group.model(i) for i in range(group.models)]

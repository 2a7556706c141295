"""Switch off any set of hidden neurons for the code inside a `with` block."""

import contextlib
from collections.abc import Iterator, Sequence
from typing import Literal

import torch
from torch import Tensor

from ..data import ModularDataset
from ._common import hidden_activations

SITE = "hook_normed"  # what W reads: zeroing a neuron here removes its W column's input


def neuron_mask(neurons: Sequence[int] | Tensor, width: int) -> Tensor:
    """A boolean (width,) mask from neuron indices or from a boolean mask."""
    t = torch.as_tensor(neurons) if not isinstance(neurons, Tensor) else neurons.detach().cpu()
    if t.dtype == torch.bool:
        if t.shape != (width,):
            raise ValueError(
                f"A boolean neuron mask must have shape ({width},), got {tuple(t.shape)}."
            )
        return t.clone()
    if t.numel() == 0:
        return torch.zeros(width, dtype=torch.bool)
    if t.is_floating_point() or t.is_complex():
        raise TypeError(f"Neuron indices must be integers, got dtype {t.dtype}.")
    t = t.reshape(-1).long()
    if int(t.min()) < 0 or int(t.max()) >= width:
        bad = int(t.min()) if int(t.min()) < 0 else int(t.max())
        raise ValueError(f"Neuron index {bad} is out of range for a model of width {width}.")
    mask = torch.zeros(width, dtype=torch.bool)
    mask[t] = True
    return mask


@contextlib.contextmanager
def ablate(
    model: torch.nn.Module,
    neurons: Sequence[int] | Tensor,
    *,
    how: Literal["zero", "mean"] = "zero",
    dataset: ModularDataset | None = None,
) -> Iterator[torch.nn.Module]:
    """Zero- or mean-ablate hidden neurons at `hook_normed` (what W reads) inside the block.

    Zero ablation is exactly pruning the neuron (its row of U, row of V and column of W) for a
    model without normalization or with BatchNorm; with LayerNorm the removed neuron still
    enters the normalization statistics of the others. Mean ablation replaces each neuron's
    activation by its mean over the dataset's training pairs (eval mode). The model's weights
    are never touched, and the hook is removed on exit, even after an error.

    Args:
        model: a `HookedMLP`.
        neurons: indices of the neurons to ablate, or a boolean mask of width N.
        how: "zero" or "mean".
        dataset: needed for mean ablation (the pairs the mean is taken over).

    Yields:
        The model, ablated for the duration of the block.

    Example:
        >>> with ablate(model, [3, 17, 42]):
        ...     acc = accuracies(model, dataset)
    """
    if how not in ("zero", "mean"):
        raise ValueError(f"`how` must be 'zero' or 'mean', got {how!r}.")
    width = model.cfg.width
    mask = neuron_mask(neurons, width).to(model.device)
    if how == "mean":
        if dataset is None:
            raise ValueError("Mean ablation needs `dataset=` to take the mean activation over.")
        hidden, _ = hidden_activations(model, dataset.train_pairs.to(model.device))
        fill = hidden.mean(0)  # (neurons,)
    else:
        fill = torch.zeros(width, device=model.device)

    def hook(x: Tensor, *, hook: object) -> Tensor:
        return torch.where(mask, fill.to(x.dtype), x)

    with model.hooks([(SITE, hook)]):
        yield model

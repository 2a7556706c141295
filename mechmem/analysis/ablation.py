"""Switch off any set of hidden neurons for the code inside a `with` block."""

import contextlib
from collections.abc import Iterator, Sequence

import torch
from torch import Tensor

from ..data import ModularDataset
from ..models.sites import NeuronSite, find_site
from ._common import evaluating


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
    how: str = "zero",
    dataset: ModularDataset | None = None,
    site: str | NeuronSite | None = None,
) -> Iterator[torch.nn.Module]:
    """Zero- or mean-ablate neurons of a site at its hook inside the block.

    For `HookedMLP` the hook is `hook_normed` (what W reads): zero ablation is exactly pruning
    the neuron (its row of U, row of V and column of W) for a model without normalization or
    with BatchNorm; with LayerNorm the removed neuron still enters the normalization statistics
    of the others. For the transformer the primary site is the MLP neurons at
    `blocks.0.mlp.hook_post`, ablated at every position. Mean ablation replaces each neuron's
    activation by its mean over the dataset's training pairs (eval mode; per position). The
    model's weights are never touched, and the hook is removed on exit, even after an error.

    Args:
        model: any model with neuron sites.
        neurons: indices of the neurons to ablate, or a boolean mask of the site's width.
        how: "zero" or "mean".
        dataset: needed for mean ablation (the pairs the mean is taken over).
        site: the neuron site (default: the model's primary one).

    Yields:
        The model, ablated for the duration of the block.

    Example:
        >>> with ablate(model, [3, 17, 42]):
        ...     acc = accuracies(model, dataset)
    """
    if how not in ("zero", "mean"):
        raise ValueError(f"`how` must be 'zero' or 'mean', got {how!r}.")
    s = find_site(model, site)
    width = s.width
    mask = neuron_mask(neurons, width).to(model.device)
    if how == "mean":
        if dataset is None:
            raise ValueError("Mean ablation needs `dataset=` to take the mean activation over.")
        with evaluating(model):
            inputs = dataset.model_inputs(dataset.train_pairs)
            _, cache = model.run_with_cache(inputs.to(model.device), names_filter=s.hook)
        fill = cache[s.hook].mean(0)  # (neurons,) or (pos, neurons)
    else:
        fill = torch.zeros(width, device=model.device)

    def hook(x: Tensor, *, hook: object) -> Tensor:
        return torch.where(mask, fill.to(x.dtype), x)

    with model.hooks([(s.hook, hook)]):
        yield model

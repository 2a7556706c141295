"""Logits on corrupted training examples: the corrupted label's against the true label's."""

from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from torch import Tensor, nn

from ..data import ModularDataset
from ._common import evaluating


@dataclass(frozen=True)
class CorruptedLogitsResult:
    """Per corrupted example whose label differs from its true one (M of them).

    Attributes:
        index: position in the training set of each example.
        corrupted_label_logit: the logit at the label trained on.
        true_label_logit: the logit at the true label.
        margin: corrupted_label_logit - true_label_logit (> 0: memorization wins).
        max_other_logit: the largest logit at any other class.
        frac_corrupted_wins: share of examples whose margin is positive (NaN if M = 0).
    """

    index: Int[Tensor, " corrupted"]
    corrupted_label_logit: Float[Tensor, " corrupted"]
    true_label_logit: Float[Tensor, " corrupted"]
    margin: Float[Tensor, " corrupted"]
    max_other_logit: Float[Tensor, " corrupted"]
    frac_corrupted_wins: float


def corrupted_logits(model: nn.Module, dataset: ModularDataset) -> CorruptedLogitsResult:
    """Logits at the corrupted and at the true label of each corrupted example (paper App. K).

    Examples whose random label happens to equal the true one are left out: they cannot show
    the two peaks.

    Args:
        model: a `HookedMLP` (evaluated in eval mode; its mode is restored afterwards).
        dataset: its dataset.

    Returns:
        A `CorruptedLogitsResult`.

    Example:
        >>> res = corrupted_logits(model, ds)
        >>> res.frac_corrupted_wins
    """
    index = torch.nonzero(dataset.mislabelled).squeeze(1)
    inputs = dataset.model_inputs(dataset.train_pairs[index])
    with evaluating(model):
        logits = model(inputs.to(model.device)).cpu().to(torch.float64)  # (corrupted, p)
    lab = dataset.train_labels[index]
    true = dataset.train_true_labels[index]
    at_lab = logits.gather(1, lab[:, None])[:, 0]
    at_true = logits.gather(1, true[:, None])[:, 0]
    others = logits.scatter(1, lab[:, None], -torch.inf).scatter(1, true[:, None], -torch.inf)
    margin = at_lab - at_true
    # With p = 2 there is no third class to compare with.
    max_other = others.amax(1) if logits.shape[1] > 2 else torch.full_like(margin, torch.nan)
    m = int(index.numel())
    return CorruptedLogitsResult(
        index=index,
        corrupted_label_logit=at_lab,
        true_label_logit=at_true,
        margin=margin,
        max_other_logit=max_other,
        frac_corrupted_wins=float((margin > 0).to(torch.float64).mean()) if m else float("nan"),
    )

"""The five accuracies that tell memorization from generalization: their names and one kernel.

Everything that reports accuracies (the trainer's history, `analysis.accuracies`, a sweep's cells)
computes them here, for any leading axes (one model, a stack of models, a pruning curve's points).
"""

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

METRICS = ("train", "test", "clean_train", "corrupted_memorized", "corrupted_true")


def predict(logits: Float[Tensor, "*lead p"]) -> Int[Tensor, " *lead"]:
    """Predicted class of each row: torch.argmax's first maximum; -1 (never a label, so always
    wrong) for a row holding a non-finite logit, where argmax would pick the NaN."""
    return torch.where(torch.isfinite(logits).all(-1), logits.argmax(-1), -1)


def example_margins(
    logits: Float[Tensor, "*lead rows p"], labels: Int[Tensor, "*lead rows"]
) -> Float[Tensor, "*lead rows"]:
    """Each row's logit at `labels` minus the best other class's (> 0: `labels` predicted)."""
    at = logits.gather(-1, labels[..., None])
    other = logits.scatter(-1, labels[..., None], -torch.inf).amax(-1)
    return at[..., 0] - other


def masked_mean(
    values: Bool[Tensor, "*lead rows"] | Float[Tensor, "*lead rows"],
    mask: Bool[Tensor, "*lead rows"] | None = None,
) -> Float[Tensor, " *lead"]:
    """Mean of `values` over the rows where `mask` holds (float64); NaN where no row does, so
    that an empty subset (no corrupted examples) has no accuracy rather than 0."""
    values = values.to(torch.float64)
    if mask is None:
        count = torch.full(values.shape[:-1], values.shape[-1], dtype=torch.float64,
                           device=values.device)
        total = values.sum(-1)
    else:
        mask = mask.expand_as(values)
        count = mask.sum(-1, dtype=torch.float64)
        total = torch.where(mask, values, 0.0).sum(-1)
    return torch.where(count > 0, total / count.clamp_min(1), torch.nan)


def five_accuracies(
    train_hit_label: Bool[Tensor, "*lead train"],
    train_hit_true: Bool[Tensor, "*lead train"],
    corrupted: Bool[Tensor, "*lead train"],
    test_hit: Bool[Tensor, "*lead test"],
    train_valid: Bool[Tensor, "*lead train"] | None = None,
    test_valid: Bool[Tensor, "*lead test"] | None = None,
) -> dict[str, Float[Tensor, " *lead"]]:
    """The accuracies named in `METRICS` from which predictions were right.

    Args:
        train_hit_label: prediction == the label trained on, per training example.
        train_hit_true: prediction == the true label, per training example.
        corrupted: which training examples had their label replaced.
        test_hit: prediction == the true label, per test example.
        train_valid, test_valid: which rows are real examples (the rest is padding), or None
            when all are.

    Returns:
        {metric: float64 tensor over the leading axes}, NaN for an empty subset.
    """
    real = corrupted if train_valid is None else corrupted & train_valid
    clean = ~corrupted if train_valid is None else ~corrupted & train_valid
    return {
        "train": masked_mean(train_hit_label, train_valid),
        "test": masked_mean(test_hit, test_valid),
        "clean_train": masked_mean(train_hit_label, clean),
        "corrupted_memorized": masked_mean(train_hit_label, real),
        "corrupted_true": masked_mean(train_hit_true, real),
    }

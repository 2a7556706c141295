"""Accuracy of a model on the five subsets that tell memorization from generalization."""

from dataclasses import dataclass

from jaxtyping import Bool, Float, Int
from torch import Tensor, nn

from ..data import ModularDataset
from ..metrics import METRICS as METRICS
from ..metrics import five_accuracies
from ._common import evaluating, predict


@dataclass(frozen=True)
class AccuracyResult:
    """Accuracies as fractions in [0, 1]; NaN where the subset is empty.

    Attributes:
        train: all training examples vs the labels trained on (corrupted ones included).
        test: test examples vs their true labels.
        clean_train: uncorrupted training examples.
        corrupted_memorized: corrupted training examples vs their corrupted labels
            (memorization).
        corrupted_true: corrupted training examples vs their true labels (inversion).
        n_train, n_test, n_corrupted: subset sizes.
    """

    train: float
    test: float
    clean_train: float
    corrupted_memorized: float
    corrupted_true: float
    n_train: int
    n_test: int
    n_corrupted: int


def metrics_from_predictions(
    preds: Int[Tensor, "points pairs"], dataset: ModularDataset
) -> dict[str, Float[Tensor, " points"]]:
    """The five accuracies for each row of predictions over all of `dataset.pairs`.

    Args:
        preds: predicted class per pair (any integer dtype; -1 means "no prediction").
        dataset: the dataset whose split and labels define the subsets.

    Returns:
        {metric: (points,) float64 tensor} for each name in `METRICS`.
    """
    if preds.shape[1] != dataset.pairs.shape[0]:
        raise ValueError(
            f"Expected predictions for all {dataset.pairs.shape[0]} pairs, got {preds.shape[1]}."
        )
    # Compare in the predictions' own (possibly int16) dtype: no int64 copy of a big table.
    hit_true = preds == dataset.labels.to(preds.dtype)
    hit_label = preds[:, dataset.train_idx] == dataset.train_labels.to(preds.dtype)
    return metrics_from_hits(hit_true, hit_label, dataset)


def metrics_from_hits(
    hit_true: Bool[Tensor, "points pairs"],
    hit_label: Bool[Tensor, "points train"],
    dataset: ModularDataset,
) -> dict[str, Float[Tensor, " points"]]:
    """The five accuracies from which predictions were right.

    Args:
        hit_true: prediction == true label, for every pair of the task.
        hit_label: prediction == the label trained on, for every training example.
        dataset: the dataset whose split and labels define the subsets.

    Returns:
        {metric: (points,) float64 tensor} for each name in `METRICS`.
    """
    return five_accuracies(hit_label, hit_true[:, dataset.train_idx],
                           dataset.corrupted.expand_as(hit_label), hit_true[:, dataset.test_idx])


def predictions(model: nn.Module, dataset: ModularDataset) -> Int[Tensor, " pairs"]:
    """The model's predicted class for every pair of the task (eval mode; -1 for non-finite)."""
    with evaluating(model):
        return predict(model(dataset.model_inputs()))


def accuracies(model: nn.Module, dataset: ModularDataset) -> AccuracyResult:
    """Train, test, clean, memorized and inverted accuracy of `model` on `dataset`.

    Args:
        model: a `HookedMLP` (evaluated in eval mode; its mode is restored afterwards).
        dataset: the split and labels it was trained on.

    Returns:
        An `AccuracyResult`.

    Example:
        >>> acc = accuracies(ckpt.model, ckpt.dataset)
        >>> acc.corrupted_memorized, acc.test
    """
    if model.cfg.p != dataset.p:
        raise ValueError(f"Model p={model.cfg.p} does not match dataset p={dataset.p}.")
    m = metrics_from_predictions(predictions(model, dataset)[None], dataset)
    return AccuracyResult(
        **{k: float(v[0]) for k, v in m.items()},
        n_train=dataset.n_train,
        n_test=int(dataset.test_idx.numel()),
        n_corrupted=dataset.n_corrupted,
    )

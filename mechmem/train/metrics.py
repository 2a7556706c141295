"""What a run records at each evaluation: losses, the five accuracies, weight norms, mean IPR."""

import math
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor

from ..analysis.spectrum import mean_ipr
from ..data import ModularDataset
from ..models.mlp import HookedMLP

HISTORY_KEYS = (
    "step",
    "train_loss",
    "test_loss",
    "train_acc",
    "test_acc",
    "clean_train_acc",
    "corrupted_memorized_acc",
    "corrupted_true_acc",
    "norm_U",
    "norm_V",
    "norm_W",
    "ipr_mean",
)


def loss_value(
    loss: str,
    logits: Float[Tensor, "batch p"],
    labels: Int[Tensor, " batch"],
    target: Float[Tensor, "batch p"] | None = None,
) -> Tensor:
    """The training objective: MSE against one-hot targets (mean over examples and classes)
    or cross-entropy (mean over examples); a 0-d tensor. `target`: the one-hot labels, if
    already built."""
    if loss == "mse":
        if target is None:
            target = F.one_hot(labels, logits.shape[-1]).to(logits.dtype)
        return F.mse_loss(logits, target)
    return F.cross_entropy(logits, labels)


def _mean(x: Tensor) -> Tensor:
    # An empty group (no corrupted examples) has no accuracy: NaN, not 0.
    return x.float().mean() if x.numel() else torch.full((), math.nan, device=x.device)


class Evaluator:
    """Computes one history entry from train and test logits, with one host sync.

    Built once per run: the label and index tensors live on the training device.
    """

    def __init__(self, dataset: ModularDataset, loss: str, device: torch.device) -> None:
        self.loss = loss
        self.op = dataset.spec.op
        self.train_labels = dataset.train_labels.to(device)
        self.train_true = dataset.train_true_labels.to(device)
        self.test_labels = dataset.test_labels.to(device)
        self.targets = (None, None)
        if loss == "mse":
            dtype = torch.get_default_dtype()
            self.targets = tuple(F.one_hot(y, dataset.p).to(dtype)
                                 for y in (self.train_labels, self.test_labels))
        self.corrupted = torch.nonzero(dataset.corrupted).squeeze(1).to(device)
        self.clean = torch.nonzero(~dataset.corrupted).squeeze(1).to(device)

    def __call__(
        self,
        step: int,
        train_logits: Float[Tensor, "train p"],
        test_logits: Float[Tensor, "test p"],
        params: Mapping[str, Tensor],
        model: HookedMLP,
    ) -> dict[str, float]:
        """One history entry; `model` must already hold `params` (for the IPR)."""
        pred = train_logits.argmax(-1)
        correct = pred == self.train_labels
        values = torch.stack([
            loss_value(self.loss, train_logits, self.train_labels, self.targets[0]),
            loss_value(self.loss, test_logits, self.test_labels, self.targets[1]),
            _mean(correct),
            _mean(test_logits.argmax(-1) == self.test_labels),
            _mean(correct[self.clean]),
            _mean(correct[self.corrupted]),
            _mean(pred[self.corrupted] == self.train_true[self.corrupted]),
            torch.linalg.vector_norm(params["U"]),
            torch.linalg.vector_norm(params["V"]),
            torch.linalg.vector_norm(params["W"]),
        ]).tolist()  # the one host sync of an evaluation
        entry = {"step": step, **dict(zip(HISTORY_KEYS[1:-1], values, strict=True))}
        entry["ipr_mean"] = mean_ipr(model, self.op)
        return entry

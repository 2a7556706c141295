"""The training objectives by name: the trainer's loss, and the loss analyzers measure in."""

import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor

LOSSES = ("mse", "ce")


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

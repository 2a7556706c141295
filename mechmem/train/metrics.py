"""What a run records at each evaluation: losses, the five accuracies, weight norms, mean IPR,
for every model of a stack at once."""

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor

from ..metrics import METRICS, five_accuracies, masked_mean, predict
from ..spectral import network_ipr
from .stack import GroupData

HISTORY_KEYS = (
    "step",
    "train_loss",
    "test_loss",
    *(f"{m}_acc" for m in METRICS),
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


def row_losses(
    loss: str,
    logits: Float[Tensor, "*lead rows p"],
    labels: Int[Tensor, "*lead rows"],
    target: Float[Tensor, "*lead rows p"],
) -> Float[Tensor, "*lead rows"]:
    """Each example's loss (MSE: mean over classes, against the one-hot `target`);
    `loss_value` is their mean."""
    if loss == "mse":
        return (logits - target).square().mean(-1)
    flat = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1),
                           reduction="none")
    return flat.view(labels.shape)


class Evaluator:
    """Computes one history entry per model from train and test logits, with one host sync."""

    def __init__(self, data: GroupData, loss: str, ops: Sequence[str]) -> None:
        self.data, self.loss = data, loss
        # Models of one operation share a Fourier basis: their IPRs are computed together.
        device = data.train_m.device
        self.by_op = {op: torch.tensor([i for i, o in enumerate(ops) if o == op], device=device)
                      for op in dict.fromkeys(ops)}

    def __call__(
        self,
        step: int,
        train_logits: Float[Tensor, "models train p"],
        test_logits: Float[Tensor, "models test p"],
        params: Mapping[str, Tensor],
    ) -> list[dict[str, float]]:
        """One history entry per model, from the engine's stacked parameters."""
        d = self.data
        pred = predict(train_logits)
        test_pred = predict(test_logits)
        acc = five_accuracies(pred == d.train_labels, pred == d.train_true, d.corrupted,
                              test_pred == d.test_labels, d.train_valid, d.test_valid)
        train_loss = masked_mean(
            row_losses(self.loss, train_logits, d.train_labels, d.train_target), d.train_valid)
        test_loss = masked_mean(
            row_losses(self.loss, test_logits, d.test_labels, d.test_target), d.test_valid)
        norms = [torch.linalg.vector_norm(params[k].flatten(1), dim=1).to(torch.float64)
                 for k in ("U", "V", "W")]
        ipr = torch.empty(d.models, dtype=torch.float64, device=d.train_m.device)
        u, v, w = (params[k].transpose(-1, -2) for k in ("U", "V", "W"))
        for op, ix in self.by_op.items():
            ipr[ix] = network_ipr(u[ix], v[ix], w[ix], op)[0]
        rows = torch.stack([train_loss, test_loss, *(acc[m] for m in METRICS), *norms, ipr])
        values = rows.T.tolist()  # the one host sync of an evaluation
        return [{"step": step, **dict(zip(HISTORY_KEYS[1:], v, strict=True))} for v in values]

"""What a run records at each evaluation: losses, the five accuracies, weight norms, mean IPR,
for every model of a stack at once."""

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor, nn

from ..data import ModularDataset
from ..losses import loss_value as loss_value
from ..metrics import METRICS, example_margins, five_accuracies, masked_mean, predict
from ..models.families import norm_key, weight_names
from ..models.sites import neuron_sites
from ..spectral import network_ipr, site_ipr
from .stack import GroupData

_BASE_KEYS = ("step", "train_loss", "test_loss", *(f"{m}_acc" for m in METRICS))
# The 2-layer MLP's history; other families record their own weights' norms and sites' IPRs.
HISTORY_KEYS = (*_BASE_KEYS, "norm_U", "norm_V", "norm_W", "ipr_mean")


# With `TrainConfig(track_examples=True)`: per evaluation, each training example's margins, one
# (train,) float32 tensor each on the CPU (see `example_margins`).
EXAMPLE_KEYS = ("example_margin", "example_true_margin")


def site_key(name: str) -> str:
    """The history key of a non-primary neuron site's mean IPR ("embed" -> "ipr_embed")."""
    return "ipr_" + name.replace(".", "_")


def history_keys(model: nn.Module) -> tuple[str, ...]:
    """What a run of this model records at each evaluation: step, losses, the five accuracies,
    the norm of each weight (`norm_` + its name), the primary site's mean IPR (`ipr_mean`) and
    every other site's that has weights (`ipr_` + its name). For `HookedMLP`: `HISTORY_KEYS`."""
    norms = tuple(dict.fromkeys(norm_key(n) for n in weight_names(model)))
    sites = neuron_sites(model)
    extras = tuple(site_key(s.name) for s in sites[:-1] if s.parts)
    return (*_BASE_KEYS, *norms, "ipr_mean", *extras)


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

    def __init__(self, data: GroupData, loss: str, ops: Sequence[str], *,
                 track_examples: bool = False) -> None:
        self.data, self.loss, self.track_examples = data, loss, track_examples
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
        entries = [{"step": step, **dict(zip(HISTORY_KEYS[1:], v, strict=True))}
                   for v in values]
        if self.track_examples:
            n = d.n_train.long().tolist()
            margins = (example_margins(train_logits, d.train_labels).float().cpu(),
                       example_margins(train_logits, d.train_true).float().cpu())
            for i, e in enumerate(entries):
                e |= {k: m[i, : n[i]].clone() for k, m in zip(EXAMPLE_KEYS, margins,
                                                                strict=True)}
        return entries


def model_entry(step: int, model: nn.Module, dataset: ModularDataset, loss: str,
                keys: Sequence[str], *, track_examples: bool = False) -> dict[str, float]:
    """One history entry of a single model, evaluated through its own forward (eval mode, no
    gradients; its train/eval flags are restored afterwards); with `track_examples`, also
    each training example's margins (`EXAMPLE_KEYS`)."""
    device = next(model.parameters()).device
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        with torch.no_grad():
            train_logits = model(dataset.train_pairs.to(device))
            test_logits = model(dataset.test_pairs.to(device))
            sites = neuron_sites(model)
    finally:
        for m, mode in modes:
            m.train(mode)
    p = train_logits.shape[-1]
    lab, test_lab = dataset.train_labels.to(device), dataset.test_labels.to(device)
    pred, test_pred = predict(train_logits), predict(test_logits)
    acc = five_accuracies(pred == lab, pred == dataset.train_true_labels.to(device),
                          dataset.corrupted.to(device), test_pred == test_lab)
    target = F.one_hot(lab, p).to(train_logits.dtype)
    test_target = F.one_hot(test_lab, p).to(test_logits.dtype)
    values: dict[str, Tensor | float] = {
        "train_loss": masked_mean(row_losses(loss, train_logits, lab, target)),
        "test_loss": masked_mean(row_losses(loss, test_logits, test_lab, test_target)),
        **{f"{m}_acc": acc[m] for m in METRICS},
    }
    squares: dict[str, Tensor] = {}
    params = dict(model.named_parameters())
    for name in weight_names(model):
        k = norm_key(name)
        squares[k] = squares.get(k, 0.0) + params[name].detach().to(torch.float64).square().sum()
    values |= {k: v.sqrt() for k, v in squares.items()}
    op = dataset.spec.op
    for i, site in enumerate(sites):
        if site.parts:
            key = "ipr_mean" if i == len(sites) - 1 else site_key(site.name)
            output = None if site.output is None else site.output.T
            values[key] = site_ipr(site.inputs, output, op)[0]
    values.setdefault("ipr_mean", torch.nan)
    row = torch.stack([torch.as_tensor(values[k], dtype=torch.float64, device=device)
                       for k in keys[1:]]).tolist()  # one host sync
    entry: dict[str, float] = {"step": step, **dict(zip(keys[1:], row, strict=True))}
    if track_examples:
        true = dataset.train_true_labels.to(device)
        entry |= {"example_margin": example_margins(train_logits, lab).float().cpu(),
                  "example_true_margin": example_margins(train_logits, true).float().cpu()}
    return entry

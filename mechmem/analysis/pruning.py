"""Pruning curves: remove neurons one at a time in IPR or random order, without retraining."""

from dataclasses import dataclass
from typing import Literal

import torch
from jaxtyping import Float, Int
from torch import Tensor, nn

from ..data import ModularDataset
from ._common import evaluating, hidden_activations, predict
from .ablation import ablate
from .accuracy import METRICS, metrics_from_predictions
from .ipr import IPRResult

ORDERS = ("ipr_ascending", "ipr_descending", "random")
Method = Literal["auto", "fast", "forward"]


@dataclass(frozen=True)
class PruningCurve:
    """Accuracies after removing the first k neurons of `order`, for k = 0..N.

    Attributes:
        order: neuron indices in removal order.
        fraction: k / N for each point.
        corrupted_memorized, corrupted_true, clean_train, train, test: accuracy at each point
            (see `AccuracyResult`; NaN throughout for an empty subset).
    """

    order: Int[Tensor, " neurons"]
    fraction: Float[Tensor, " points"]
    corrupted_memorized: Float[Tensor, " points"]
    corrupted_true: Float[Tensor, " points"]
    clean_train: Float[Tensor, " points"]
    train: Float[Tensor, " points"]
    test: Float[Tensor, " points"]

    def at(self, fraction: float) -> dict[str, float]:
        """Every metric at the first point with at least `fraction` of the neurons removed."""
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(f"`fraction` must lie in [0, 1], got {fraction}.")
        i = int(torch.searchsorted(self.fraction, torch.tensor([fraction - 1e-12],
                                                               dtype=self.fraction.dtype)))
        return {"fraction": float(self.fraction[i])} | {
            m: float(getattr(self, m)[i]) for m in METRICS
        }


@dataclass(frozen=True)
class PruningResult:
    """The three pruning curves and how they were computed.

    Attributes:
        curves: {"ipr_ascending", "ipr_descending", "random"} -> `PruningCurve`.
        method: "fast" (exact per-neuron logit contributions) or "forward" (one ablated
            forward pass per point).
        seed: seed of the random order.
    """

    curves: dict[str, PruningCurve]
    method: str
    seed: int


def removal_orders(ipr: IPRResult, *, seed: int = 0) -> dict[str, Int[Tensor, " neurons"]]:
    """The three removal orders. Dead neurons count as the lowest IPR: first when ascending,
    last when descending. Ties keep index order; the random order is a seeded permutation."""
    key = torch.nan_to_num(ipr.combined, nan=-torch.inf)
    gen = torch.Generator().manual_seed(seed)
    return {
        "ipr_ascending": torch.argsort(key, stable=True),
        "ipr_descending": torch.argsort(key, descending=True, stable=True),
        "random": torch.randperm(key.numel(), generator=gen),
    }


def _fast(
    hidden: Float[Tensor, "pairs neurons"], model: nn.Module, order: list[int], dtype: torch.dtype
) -> Tensor:
    """Predictions after each removal from running logits, updated by one rank-1 term a step.

    logits(x) = b_out + sum_k W[:, k] hidden_k(x): removing neuron j subtracts
    hidden_j(x) W[:, j]. The sum is recomputed exactly every `resync` steps (and is exactly
    b_out at the end) so that float rounding cannot drift over thousands of updates.
    """
    n, pairs = len(order), hidden.shape[0]
    hT = hidden.T.contiguous()  # (neurons, pairs): one contiguous row per neuron
    WT = model.W.detach().T.contiguous()  # (neurons, p)
    dev = hT.device
    no_bias = torch.zeros(WT.shape[1], device=dev)
    bias = model.b_out.detach() if model.b_out is not None else no_bias
    kept = torch.ones(n, dtype=torch.bool, device=dev)
    resync = max(64, n // 16)

    def exact() -> Tensor:
        return torch.addmm(bias, hT[kept].T, WT[kept])  # (pairs, p)

    logits = exact()
    preds = torch.empty(n + 1, pairs, dtype=dtype, device=dev)
    preds[0] = logits.argmax(-1)
    for k, j in enumerate(order, start=1):
        kept[j] = False
        if k == n:
            logits = bias.expand(pairs, -1)
        elif k % resync == 0:
            logits = exact()
        else:
            logits.addr_(hT[j], WT[j], alpha=-1)
        preds[k] = logits.argmax(-1)
    return preds.cpu()


def _forward(model: nn.Module, pairs: Tensor, order: list[int], dtype: torch.dtype) -> Tensor:
    """Predictions after each removal, one forward pass through the ablation hooks each."""
    preds = torch.empty(len(order) + 1, pairs.shape[0], dtype=dtype)
    with evaluating(model):
        for k in range(len(order) + 1):
            with ablate(model, torch.tensor(order[:k], dtype=torch.long)):
                preds[k] = predict(model(pairs)).cpu()
    return preds


def pruning_curves(
    model: nn.Module,
    dataset: ModularDataset,
    ipr: IPRResult,
    *,
    seed: int = 0,
    method: Method = "auto",
) -> PruningResult:
    """Accuracies as neurons are zeroed one at a time, lowest IPR first, highest first, random.

    A neuron is removed by zeroing its activation at `hook_normed` (what W reads), which for a
    model without normalization or with BatchNorm is exactly zeroing its row of U, row of V and
    column of W. Every count k = 0..N is evaluated on all pairs of the task.

    Args:
        model: a `HookedMLP` (evaluated in eval mode; its mode is restored afterwards).
        dataset: its dataset (split, labels, corruption).
        ipr: the per-neuron IPR that orders the removals.
        seed: seed of the random order.
        method: "fast" sums per-neuron logit contributions (exact, as W reads hook_normed
            linearly); "forward" runs one ablated forward pass per point; "auto" takes "fast"
            unless the weights hold non-finite values or the model carries hooks of its own.

    Returns:
        A `PruningResult` with one `PruningCurve` per order.

    Example:
        >>> res = pruning_curves(model, dataset, ipr_scores(model, "add"))
        >>> res.curves["ipr_ascending"].at(0.6)["corrupted_memorized"]
    """
    if method not in ("auto", "fast", "forward"):
        raise ValueError(f"`method` must be 'auto', 'fast' or 'forward', got {method!r}.")
    width = model.cfg.width
    if ipr.combined.shape != (width,):
        raise ValueError(
            f"IPR result has {ipr.combined.shape[0]} neurons but the model has {width}."
        )
    pairs = dataset.pairs.to(model.device)
    dtype = torch.int16 if dataset.p < 2**15 else torch.int32
    hidden = None
    if method != "forward":
        hidden, _ = hidden_activations(model, pairs)
        finite = bool(torch.isfinite(hidden).all()) and bool(torch.isfinite(model.W).all())
        if model.b_out is not None:
            finite = finite and bool(torch.isfinite(model.b_out).all())
        if method == "auto":
            method = "fast" if finite and not model.list_hooks() else "forward"
        elif not finite:
            raise ValueError(
                "The fast pruning path needs finite activations and weights; this model has "
                "NaN or inf: use method='forward' (or 'auto')."
            )
    fraction = torch.arange(width + 1, dtype=torch.float64) / width
    curves = {}
    for name, order in removal_orders(ipr, seed=seed).items():
        if method == "fast":
            with torch.no_grad():
                preds = _fast(hidden, model, order.tolist(), dtype)
        else:
            preds = _forward(model, pairs, order.tolist(), dtype)
        metrics = metrics_from_predictions(preds, dataset)
        curves[name] = PruningCurve(order=order, fraction=fraction, **metrics)
    return PruningResult(curves=curves, method=method, seed=seed)

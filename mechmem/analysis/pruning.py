"""Pruning curves: remove neurons one at a time in IPR or random order, without retraining."""

from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from torch import Tensor, nn

from ..data import ModularDataset
from ..models.sites import NeuronSite, find_site
from ._common import evaluating, hidden_activations, predict, single_thread
from .ablation import ablate
from .accuracy import METRICS, metrics_from_hits, metrics_from_predictions
from .ipr import IPRResult

ORDERS = ("ipr_ascending", "ipr_descending", "random")
RESOLUTION = 100  # default points per curve: every 1% removed (the report's lines, at(f) exact)
_BLOCK_ELEMENTS = 2**20  # logits entries per fast-path step (see `_fast`)


@dataclass(frozen=True)
class PruningCurve:
    """Accuracies after removing the first k neurons of `order`, for each count k in `removed`.

    Attributes:
        order: neuron indices in removal order.
        removed: k, the number of neurons removed at each point (increasing, from 0 to N).
        fraction: k / N for each point.
        corrupted_memorized, corrupted_true, clean_train, train, test: accuracy at each point
            (see `AccuracyResult`; NaN throughout for an empty subset).
    """

    order: Int[Tensor, " neurons"]
    removed: Int[Tensor, " points"]
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
    gen = torch.Generator().manual_seed(seed)
    return {
        "ipr_ascending": ipr.ranking(),
        "ipr_descending": ipr.ranking(descending=True),
        "random": torch.randperm(ipr.combined.numel(), generator=gen),
    }


def _hits(logits: Tensor, labels: Tensor) -> Tensor:
    """Whether argmax(logits) == labels along the last axis, exactly as torch.argmax decides
    (first maximum on ties), without argmax's slow kernel.

    The label's logit is compared with the largest other logit, found by masking the label with
    -inf in place and putting it back (bit for bit) afterwards. Only exact ties need argmax.
    `logits` is (..., p) and is restored on return; `labels` is (..., 1) int64.
    """
    at_label = logits.gather(-1, labels)
    logits.scatter_(-1, labels, -torch.inf)
    best_other = logits.amax(-1, keepdim=True)
    logits.scatter_(-1, labels, at_label)
    hit = (at_label > best_other)[..., 0]
    tie = (at_label == best_other)[..., 0]
    if bool(tie.any()):
        where = tie.nonzero(as_tuple=True)
        hit[where] = logits[where].argmax(-1) == labels[where][..., 0]
    return hit


def removal_counts(width: int, resolution: int | None = RESOLUTION) -> list[int]:
    """The counts k at which a pruning curve is evaluated: ceil(i N / resolution) for
    i = 0..resolution, so that a multiple of 1/resolution is always a point and `at` reads it
    where a curve at every count would; every k = 0..N when `resolution` is None or >= N."""
    if resolution is not None and (isinstance(resolution, bool)
                                   or not isinstance(resolution, int) or resolution < 1):
        raise ValueError(f"`resolution` must be a positive integer or None, got {resolution!r}.")
    if resolution is None or resolution >= width:
        return list(range(width + 1))
    return sorted({-(-i * width // resolution) for i in range(resolution + 1)})


def _fast(
    hT: Float[Tensor, "neurons pairs"],
    WT: Float[Tensor, "neurons p"],
    bias: Float[Tensor, "*pairs p"] | None,
    full: Float[Tensor, "pairs p"],
    order: list[int],
    counts: list[int],
    true_labels: Int[Tensor, " pairs"],
    rows: Int[Tensor, " corrupted"],
    row_labels: Int[Tensor, " corrupted"],
) -> tuple[Tensor, Tensor]:
    """Hits after removing the first k neurons of `order`, for each k in `counts`, from running
    logits.

    logits(x) = bias + sum_k W[:, k] hidden_k(x), with hT the activations transposed (one
    contiguous row per neuron), WT the site's output weights W transposed and bias the
    logits' bias (p,) or, where other paths reach the logits, what they give each pair
    (pairs, p). The running sum starts from the bias (every neuron removed, exact) and puts
    the neurons back in reverse order, one rank-|J| update from one point to the previous, so
    that the few neurons left late in a curve are never the small difference of two large
    sums. It is recomputed exactly every `resync` points, and the point k = 0 is `full`, the
    model's own logits, so float rounding cannot drift over thousands of updates. `counts` is
    increasing, from 0 to N.

    Returns:
        (hits vs the true label for every pair, (points, pairs); hits vs the trained label for
        the pairs `rows` (corrupted examples whose label differs), (points, corrupted)).
    """
    n, pairs = len(order), hT.shape[1]
    dev = hT.device
    if bias is None:
        bias = torch.zeros(WT.shape[1], device=dev)
    kept = torch.zeros(n, dtype=torch.bool, device=dev)
    resync = max(64, (len(counts) - 1) // 16)
    lab = true_labels.to(dev)[:, None]  # (pairs, 1)
    rows, row_lab = rows.to(dev), row_labels.to(dev)[:, None]
    neuron = torch.tensor(order, device=dev)

    def exact() -> Tensor:
        return torch.addmm(bias, hT[kept].T, WT[kept])  # (pairs, p)

    hit_true = torch.empty(len(counts), pairs, dtype=torch.bool, device=dev)
    hit_rows = torch.empty(len(counts), rows.numel(), dtype=torch.bool, device=dev)

    def record(i: int, logits: Tensor) -> None:
        # logits is (b, pairs, p) for the b points i .. i + b - 1.
        b = logits.shape[0]
        hit_true[i : i + b] = _hits(logits, lab.expand(b, -1, -1))
        sub = logits.index_select(1, rows)  # (b, corrupted, p), a copy
        hit_rows[i : i + b] = _hits(sub, row_lab.expand(b, -1, -1))

    # With a point after every removal, small tasks take several neurons per step (a
    # cumulative sum over a block) so that each tensor op is big enough to be worth its
    # overhead; large ones go one rank-1 update at a time, which keeps the running logits in
    # cache. Between sparser points, the neurons in between go in one update.
    every = len(counts) == n + 1
    block = max(1, min(256, _BLOCK_ELEMENTS // (pairs * WT.shape[1]))) if every else 1
    logits = bias.expand(pairs, -1).clone()  # (pairs, p)
    i = len(counts) - 1
    record(i, logits[None])
    while i > 0:
        b = min(block, i)  # points taken in this step: i - b .. i - 1
        js = neuron[counts[i - b] : counts[i]]  # put back, last removed first
        if b > 1:
            # steps[j]: the last j + 1 neurons of the block, i.e. point i - 1 - j.
            steps = torch.einsum("bx,bq->bxq", hT[js], WT[js]).flip(0).cumsum(0)
            record(i - b, (logits + steps).flip(0))
            logits += steps[-1]
        else:
            if js.numel() == 1:
                logits.addr_(hT[js[0]], WT[js[0]])
            else:
                logits.addmm_(hT[js].T, WT[js])
            record(i - 1, logits[None])
        kept[js] = True
        if i - b == 0:
            record(0, full[None])
        elif (i - b) // resync < i // resync:
            logits = exact()
        i -= b
    return hit_true.cpu(), hit_rows.cpu()


def _forward(model: nn.Module, inputs: Tensor, order: list[int], counts: list[int],
             site: NeuronSite) -> Int[Tensor, "points pairs"]:
    """Predictions after removing the first k neurons of `order` for each k in `counts`, one
    forward pass through the ablation hooks per point."""
    preds = torch.empty(len(counts), inputs.shape[0], dtype=torch.int64)
    with evaluating(model):
        for i, k in enumerate(counts):
            with ablate(model, torch.tensor(order[:k], dtype=torch.long), site=site):
                preds[i] = predict(model(inputs)).cpu()
    return preds


def pruning_curves(
    model: nn.Module,
    dataset: ModularDataset,
    ipr: IPRResult,
    *,
    seed: int = 0,
    method: str = "auto",
    site: str | NeuronSite | None = None,
    resolution: int | None = RESOLUTION,
) -> PruningResult:
    """Accuracies as neurons are zeroed one at a time, lowest IPR first, highest first, random.

    A neuron is removed by zeroing its activation at its site's hook (for `HookedMLP`
    `hook_normed`, what W reads, which for a model without normalization or with BatchNorm is
    exactly zeroing its row of U, row of V and column of W; for the transformer its MLP
    neurons). Each point is evaluated exactly, on all pairs of the task, after removing
    k = ceil(i N / resolution) neurons for i = 0..resolution (every 1% by default; every count
    k = 0..N where N <= resolution).

    Args:
        model: any model with neuron sites (evaluated in eval mode; its mode is restored).
        dataset: its dataset (split, labels, corruption).
        ipr: the per-neuron IPR that orders the removals.
        seed: seed of the random order.
        method: "fast" sums per-neuron logit contributions (exact where the logits read the
            site linearly); "forward" runs one ablated forward pass per point; "auto" takes
            "fast" unless the site is not read linearly, the weights hold non-finite values or
            the model carries hooks of its own.
        site: the neuron site (default: the one `ipr` was measured at).
        resolution: points per curve, less one: a point at every multiple of 1/resolution of
            the neurons (rounded up to a whole neuron), so `PruningCurve.at` of such a fraction
            reads the same point as a curve at every count; None for every count k = 0..N.

    Returns:
        A `PruningResult` with one `PruningCurve` per order.

    Example:
        >>> res = pruning_curves(model, dataset, ipr_scores(model, "add"))
        >>> res.curves["ipr_ascending"].at(0.6)["corrupted_memorized"]
    """
    if method not in ("auto", "fast", "forward"):
        raise ValueError(f"`method` must be 'auto', 'fast' or 'forward', got {method!r}.")
    s = find_site(model, ipr.site if site is None else site)
    width = s.width
    if ipr.combined.shape != (width,):
        raise ValueError(
            f"IPR result has {ipr.combined.shape[0]} neurons but the model has {width}."
        )
    counts = removal_counts(width, resolution)
    inputs = dataset.model_inputs().to(model.device)
    hidden = bias = None
    linear = s.linear and s.output is not None
    if method == "fast" and not linear:
        raise ValueError(f"The logits do not read site {s.name!r} linearly, so the fast "
                         "pruning path does not apply: use method='forward' (or 'auto').")
    if method != "forward" and linear:
        hidden, logits = hidden_activations(model, inputs, s)
        readout = s.output
        if s.residual:  # what the other paths give each pair: the logits less this site's part
            bias = logits - hidden @ readout.T
        else:
            bias = s.output_bias
        finite = bool(torch.isfinite(hidden).all()) and bool(torch.isfinite(readout).all())
        if bias is not None:
            finite = finite and bool(torch.isfinite(bias).all())
        if method == "auto":
            method = "fast" if finite and not model.list_hooks() else "forward"
        elif not finite:
            raise ValueError(
                "The fast pruning path needs finite activations and weights; this model has "
                "NaN or inf: use method='forward' (or 'auto')."
            )
    elif method == "auto":
        method = "forward"
    removed = torch.tensor(counts, dtype=torch.int64)
    fraction = removed.to(torch.float64) / width
    # Corrupted examples whose label differs from the true one: the only training examples
    # where "right vs the trained label" is not "right vs the true label".
    differs = dataset.mislabelled
    rows = dataset.train_idx[differs]
    if method == "fast":  # one contiguous row per neuron, shared by the three orders
        hT, WT = hidden.T.contiguous(), readout.T.contiguous()  # (neurons, pairs), (neurons, p)
    curves = {}
    for name, order in removal_orders(ipr, seed=seed).items():
        if method == "fast":
            with torch.no_grad(), single_thread():
                hit_true, hit_rows = _fast(hT, WT, bias, logits, order.tolist(), counts,
                                           dataset.labels, rows, dataset.train_labels[differs])
            hit_label = hit_true[:, dataset.train_idx]
            hit_label[:, differs] = hit_rows
            metrics = metrics_from_hits(hit_true, hit_label, dataset)
        else:
            metrics = metrics_from_predictions(
                _forward(model, inputs, order.tolist(), counts, s), dataset)
        curves[name] = PruningCurve(order=order, removed=removed, fraction=fraction, **metrics)
    return PruningResult(curves=curves, method=method, seed=seed)

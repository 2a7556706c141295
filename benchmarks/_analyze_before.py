"""The analyze kernels as they were before the speed-up, kept so that bench_analyze.py can time
them beside today's in one run: every pruning curve at every count k = 0..N (running logits
updated down from the full sum), neuron frequencies from a full 2-D FFT, and reference IPR
levels rebuilt on every `ipr_scores` call. `install()` puts them in place of today's, in this
process only (benchmark use; nothing in mechmem imports this file)."""

import importlib

import torch
from jaxtyping import Float, Int
from torch import Tensor, nn

from mechmem.analysis._common import hidden_activations, single_thread
from mechmem.analysis.accuracy import metrics_from_hits
from mechmem.analysis.frequencies import NeuronFrequencies
from mechmem.analysis.pruning import (
    _BLOCK_ELEMENTS,
    PruningCurve,
    PruningResult,
    _hits,
    removal_orders,
)
from mechmem.data import ModularDataset, task_coordinates
from mechmem.models.sites import NeuronSite, find_site

ipr_module = importlib.import_module("mechmem.analysis.ipr")
_today: dict = {}


def _fast(
    hidden: Float[Tensor, "pairs neurons"],
    readout: Float[Tensor, "p neurons"],
    bias: Float[Tensor, "*pairs p"] | None,
    order: list[int],
    true_labels: Int[Tensor, " pairs"],
    rows: Int[Tensor, " corrupted"],
    row_labels: Int[Tensor, " corrupted"],
) -> tuple[Tensor, Tensor]:
    """Hits after each removal from running logits, updated by one rank-1 term a step.

    logits(x) = bias + sum_k W[:, k] hidden_k(x), W the site's output weights and bias the
    logits' bias (p,) or, where other paths reach the logits, what they give each pair
    (pairs, p): removing neuron j subtracts hidden_j(x) W[:, j]. The sum is recomputed exactly
    every `resync` steps (and is exactly the bias at the end) so that float rounding cannot
    drift over thousands of updates.

    Returns:
        (hits vs the true label for every pair, (N+1, pairs); hits vs the trained label for the
        pairs `rows` (corrupted examples whose label differs), (N+1, corrupted)).
    """
    n, pairs = len(order), hidden.shape[0]
    hT = hidden.T.contiguous()  # (neurons, pairs): one contiguous row per neuron
    WT = readout.T.contiguous()  # (neurons, p)
    dev = hT.device
    if bias is None:
        bias = torch.zeros(WT.shape[1], device=dev)
    kept = torch.ones(n, dtype=torch.bool, device=dev)
    resync = max(64, n // 16)
    lab = true_labels.to(dev)[:, None]  # (pairs, 1)
    rows, row_lab = rows.to(dev), row_labels.to(dev)[:, None]

    def exact() -> Tensor:
        return torch.addmm(bias, hT[kept].T, WT[kept])  # (pairs, p)

    hit_true = torch.empty(n + 1, pairs, dtype=torch.bool, device=dev)
    hit_rows = torch.empty(n + 1, rows.numel(), dtype=torch.bool, device=dev)

    def record(k: int, logits: Tensor) -> None:
        # logits is (b, pairs, p) for the b points k .. k + b - 1.
        b = logits.shape[0]
        hit_true[k : k + b] = _hits(logits, lab.expand(b, -1, -1))
        sub = logits[:, rows]  # (b, corrupted, p), a copy
        hit_rows[k : k + b] = _hits(sub, row_lab.expand(b, -1, -1))

    # Small tasks take several removals per step (a cumulative sum over a block) so that each
    # tensor op is big enough to be worth its overhead; large ones go one rank-1 update at a
    # time, which keeps the running logits in cache.
    block = max(1, min(256, _BLOCK_ELEMENTS // (pairs * WT.shape[1])))
    logits = exact()
    record(0, logits[None])
    k = 0
    while k < n:
        js = torch.tensor(order[k : k + block], device=dev)
        b = js.numel()
        if b == 1:
            logits.addr_(hT[js[0]], WT[js[0]], alpha=-1)
            record(k + 1, logits[None])
        else:
            steps = torch.einsum("bx,bq->bxq", hT[js], WT[js]).cumsum(0)  # (block, pairs, p)
            logits -= steps[-1]
            steps = logits - (steps - steps[-1])  # the logits after each removal of the block
            record(k + 1, steps)
        kept[js] = False
        k += b
        if k == n:
            record(n, bias.expand(1, pairs, -1).clone())
        elif k // resync > (k - b) // resync:
            logits = exact()
    return hit_true.cpu(), hit_rows.cpu()


def pruning_curves(model: nn.Module, dataset: ModularDataset, ipr, *, seed: int = 0,
                   **_: object) -> PruningResult:
    """The fast path as it was: all N + 1 points of each curve (finite models only)."""
    s = find_site(model, ipr.site)
    width = s.width
    inputs = dataset.model_inputs().to(model.device)
    hidden, logits = hidden_activations(model, inputs, s)
    readout = s.output
    bias = logits - hidden @ readout.T if s.residual else s.output_bias
    fraction = torch.arange(width + 1, dtype=torch.float64) / width
    differs = dataset.mislabelled
    rows = dataset.train_idx[differs]
    curves = {}
    for name, order in removal_orders(ipr, seed=seed).items():
        with torch.no_grad(), single_thread():
            hit_true, hit_rows = _fast(hidden, readout, bias, order.tolist(),
                                       dataset.labels, rows, dataset.train_labels[differs])
        hit_label = hit_true[:, dataset.train_idx]
        hit_label[:, differs] = hit_rows
        curves[name] = PruningCurve(order=order, removed=torch.arange(width + 1),
                                    fraction=fraction,
                                    **metrics_from_hits(hit_true, hit_label, dataset))
    return PruningResult(curves=curves, method="fast", seed=seed)


def frequency_power(
    acts: Float[Tensor, "pairs neurons"], pairs: Int[Tensor, "pairs 2"], op: str, p: int
) -> Float[Tensor, "neurons freqs"]:
    """Per neuron, the fraction of its variance explained by each frequency k = 0..P//2 (0
    for k = 0), from activations over `pairs` placed on the task's coordinate grid."""
    coords = task_coordinates(op, p)
    P = coords.period
    ca, cb = coords.a[pairs[:, 0]], coords.b[pairs[:, 1]]
    keep = (ca >= 0) & (cb >= 0)
    acts = acts[keep].to(torch.float64)
    ca, cb = ca[keep], cb[keep]
    n = acts.shape[1]
    # Mean over the pairs that fall on each grid cell (several do where coordinates repeat).
    cell = ca * P + cb
    grid = torch.zeros(P * P, n, dtype=torch.float64).index_add_(0, cell, acts)
    count = torch.zeros(P * P, dtype=torch.float64).index_add_(0, cell, torch.ones_like(
        cell, dtype=torch.float64))
    grid = torch.where(count[:, None] > 0, grid / count.clamp_min(1)[:, None], 0.0)
    filled = count > 0
    mean = grid[filled].mean(0)
    grid = torch.where(filled[:, None], grid - mean, 0.0).T.reshape(n, P, P)
    power = torch.fft.fft2(grid).abs().square()  # (neurons, P, P)
    power[:, 0, 0] = 0.0
    total = power.sum((1, 2))
    half = P // 2
    out = torch.zeros(n, half + 1, dtype=torch.float64)
    for k in range(1, half + 1):
        idx = torch.tensor(sorted({0, k, (P - k) % P}))
        out[:, k] = power[:, idx][:, :, idx].sum((1, 2))
    return torch.where(total[:, None] > 0, out / total.clamp_min(1e-300)[:, None], 0.0)


def neuron_frequencies(
    model: nn.Module, dataset: ModularDataset, *, site: str | NeuronSite | None = None
) -> NeuronFrequencies:
    """Key frequency and variance explained of every neuron of a site, from its activations
    over all pairs of the task (eval mode).

    Args:
        model: any model with neuron sites.
        dataset: the task (its pairs and operation).
        site: the neuron site (default: the primary one; the transformer's MLP neurons).

    Returns:
        A `NeuronFrequencies`.

    Example:
        >>> f = neuron_frequencies(analytic_solution(p=31, width=60), make_dataset(p=31))
        >>> f.key_freq[:3].tolist()
        [1, 2, 3]
    """
    s = find_site(model, site)
    acts, _ = hidden_activations(model, dataset.model_inputs().to(model.device), s)
    acts = acts.detach().cpu()
    explained = frequency_power(acts, dataset.pairs, dataset.spec.op, dataset.p)
    finite = torch.isfinite(acts).all(0)
    dead = ~finite | (acts.to(torch.float64).std(0) == 0) | (explained.sum(1) == 0)
    explained = torch.where(dead[:, None], 0.0, explained)
    if explained.shape[1] > 1:
        key = explained[:, 1:].argmax(1) + 1
        frac = explained.gather(1, key[:, None])[:, 0]
    else:
        key = torch.zeros(s.width, dtype=torch.int64)
        frac = torch.full((s.width,), torch.nan, dtype=torch.float64)
    key = torch.where(dead, -1, key)
    frac = torch.where(dead, torch.nan, frac)
    counts = torch.bincount(key[~dead], minlength=explained.shape[1])
    return NeuronFrequencies(site=s.name, key_freq=key, frac_explained=frac,
                             explained=explained, freq_counts=counts, dead=dead)


def reference_levels(op, p, *, r=2.0, convention="rfft", parts=ipr_module.PARTS):
    """Uncached: rebuilt on every call, as every `ipr_scores` call did."""
    return ipr_module._reference_levels.__wrapped__(op, p, r, convention, tuple(parts))


def install() -> None:
    """Put the old kernels in place of today's, in this process."""
    analyze_module = importlib.import_module("mechmem.analysis.analyze")
    _today.setdefault("pruning_curves", analyze_module.pruning_curves)
    _today.setdefault("neuron_frequencies", analyze_module.neuron_frequencies)
    _today.setdefault("reference_levels", ipr_module.reference_levels)
    analyze_module.pruning_curves = pruning_curves
    analyze_module.neuron_frequencies = neuron_frequencies
    ipr_module.reference_levels = reference_levels


def uninstall() -> None:
    """Today's kernels again."""
    analyze_module = importlib.import_module("mechmem.analysis.analyze")
    analyze_module.pruning_curves = _today["pruning_curves"]
    analyze_module.neuron_frequencies = _today["neuron_frequencies"]
    ipr_module.reference_levels = _today["reference_levels"]

"""Each neuron's key frequency from its activations over every input pair, for any model.

A neuron's activation is a function of the two operands' coordinates (the residues for addition,
discrete logarithms for multiplication). Its 2-D Fourier transform over the task's period P
splits its variance over frequency pairs (s, t). Frequency k explains the power on the pairs
whose components are 0 or +-k (not both 0): cos/sin(k a), cos/sin(k b) and their products,
which hold cos(k (a + b)). A neuron's key frequency is the k explaining most of its variance, and
the fraction it explains says how periodic the neuron is. This reads activations, not weights,
so it applies where no weight vector sees the residues directly (a transformer's MLP neurons).
"""

from dataclasses import dataclass

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor, nn

from ..data import ModularDataset, task_coordinates
from ..models.sites import NeuronSite, find_site
from ._common import hidden_activations

_NEURON_BLOCK = 1024  # neurons per step: a float64 grid of p^2 x 1024 is 77 MB at p = 97


@dataclass(frozen=True)
class NeuronFrequencies:
    """Key frequencies of the neurons of one site, from their activations.

    Attributes:
        site: the neuron site.
        key_freq: each neuron's key frequency in 1..P//2; -1 for a neuron whose activation is
            constant over the inputs (or not finite).
        frac_explained: the fraction of the neuron's variance its key frequency explains (NaN
            where key_freq is -1).
        explained: (neurons, P//2 + 1) fraction of variance each frequency explains (column 0
            unused, 0).
        freq_counts: neurons per key frequency (index = frequency).
        dead: neurons with no variance over the inputs.
    """

    site: str
    key_freq: Int[Tensor, " neurons"]
    frac_explained: Float[Tensor, " neurons"]
    explained: Float[Tensor, "neurons freqs"]
    freq_counts: Int[Tensor, " freqs"]
    dead: Bool[Tensor, " neurons"]

    def periodic(self, threshold: float = 0.5) -> Bool[Tensor, " neurons"]:
        """Neurons whose key frequency explains at least `threshold` of their variance."""
        return ~self.dead & (torch.nan_to_num(self.frac_explained, nan=0.0) >= threshold)


def frequency_power(
    acts: Float[Tensor, "pairs neurons"], pairs: Int[Tensor, "pairs 2"], op: str, p: int
) -> Float[Tensor, "neurons freqs"]:
    """Per neuron, the fraction of its variance explained by each frequency k = 0..P//2 (0
    for k = 0), from activations over `pairs` placed on the task's coordinate grid.

    Frequency k's power is that of the grid's 2-D DFT F(s, t) on the rows and columns
    {0, k, P - k}. The grid g(a, b) is real, so |F(-s, -t)| = |F(s, t)|, and those nine
    entries less F(0, 0) come in mirror pairs of four kinds: F(k, 0), F(0, k), F(k, k) and
    F(-k, k), the 1-D DFTs at k of g summed over b, over a, along a + b and along b - a. So
    four projections of the grid and four 1-D FFTs give every frequency, and Parseval the
    total, where a full 2-D FFT would cost P times more.
    """
    coords = task_coordinates(op, p)
    P = coords.period
    ca, cb = coords.a[pairs[:, 0]], coords.b[pairs[:, 1]]
    keep = (ca >= 0) & (cb >= 0)
    if not bool(keep.all()):
        acts, ca, cb = acts[keep], ca[keep], cb[keep]
    # Mean over the pairs that fall on each grid cell (several do where coordinates repeat).
    cell = ca * P + cb
    count = torch.bincount(cell, minlength=P * P)
    a, b = torch.arange(P * P) // P, torch.arange(P * P) % P
    half = P // 2
    k = torch.arange(1, half + 1)
    distinct = (P - k != k).to(torch.float64)[:, None]  # k and -k differ: each kind twice
    out = torch.zeros(acts.shape[1], half + 1, dtype=torch.float64)
    # Neurons are independent: a block at a time bounds the float64 grid's memory.
    for lo in range(0, acts.shape[1], _NEURON_BLOCK):
        block = acts[:, lo : lo + _NEURON_BLOCK].to(torch.float64)
        n = block.shape[1]
        grid = torch.zeros(P * P, n, dtype=torch.float64).index_add_(0, cell, block)
        del block
        if int(count.max()) > 1:
            grid /= count.clamp_min(1).to(torch.float64)[:, None]
        filled = count > 0
        if bool(filled.all()):
            grid -= grid.mean(0)
        else:
            grid -= grid[filled].mean(0)
            grid[~filled] = 0.0
        # grid: (P * P, neurons), row a * P + b
        proj = torch.stack([
            grid.view(P, P, n).sum(1),  # over b: F(s, 0)
            grid.view(P, P, n).sum(0),  # over a: F(0, t)
            torch.zeros(P, n, dtype=torch.float64).index_add_(0, (a + b) % P, grid),  # F(k, k)
            torch.zeros(P, n, dtype=torch.float64).index_add_(0, (b - a) % P, grid),  # F(-k, k)
        ])  # (4, P, neurons)
        power = torch.fft.rfft(proj, dim=1).abs().square()  # (4, P//2 + 1, neurons)
        total = P * P * grid.square().sum(0) - grid.sum(0).square()  # Parseval, less F(0, 0)
        del grid
        part = ((power[:3, 1:].sum(0) + distinct * power[3, 1:]) * (1 + distinct)).T
        out[lo : lo + n, 1:] = torch.where(total[:, None] > 0,
                                           part / total.clamp_min(1e-300)[:, None], 0.0)
    return out


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
    std = torch.cat([x.to(torch.float64).std(0) for x in acts.split(_NEURON_BLOCK, 1)])
    dead = ~finite | (std == 0) | (explained.sum(1) == 0)
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

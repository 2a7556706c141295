"""Inverse participation ratio of every neuron: how concentrated its spectrum is."""

import math
from dataclasses import dataclass

import torch
from jaxtyping import Bool, Float, Int
from torch import nn

from ..data import task_coordinates
from ..models.analytic import analytic_solution
from .spectrum import fourier_basis, ipr, n_frequencies, neuron_ipr, spectrum

_N_RANDOM = 512  # random vectors averaged for the random-level reference


@dataclass(frozen=True)
class IPRResult:
    """Per-neuron IPR, r and the Fourier convention it was measured with.

    Attributes:
        op, p: the task whose Fourier basis was used.
        r: the exponent; IPR(x) = sum |x~|^(2r) / (sum |x~|^2)^r.
        convention: "rfft" or "dft".
        U, V, W: IPR of each neuron's U row, V row, W column (NaN where dead).
        combined: (U + V + W) / 3, the paper's per-neuron IPR; NaN for dead neurons.
        mean: mean of `combined` over live neurons (NaN only if none is alive).
        dead: number of dead neurons (a zero or non-finite weight vector).
        nonfinite: how many of them hold NaN or inf weights.
        dead_mask: which neurons are dead.
        reference_random: mean combined IPR of Gaussian random weights for this task and
            convention (the level of a neuron with no structure).
        reference_periodic: mean combined IPR of the analytic solution's neurons for this task
            (the level of a perfect generalizing neuron).
    """

    op: str
    p: int
    r: float
    convention: str
    U: Float[torch.Tensor, " neurons"]
    V: Float[torch.Tensor, " neurons"]
    W: Float[torch.Tensor, " neurons"]
    combined: Float[torch.Tensor, " neurons"]
    mean: float
    dead: int
    nonfinite: int
    dead_mask: Bool[torch.Tensor, " neurons"]
    reference_random: float
    reference_periodic: float

    @property
    def live_mask(self) -> Bool[torch.Tensor, " neurons"]:
        return ~self.dead_mask

    def ranking(self, *, descending: bool = False) -> Int[torch.Tensor, " neurons"]:
        """Neuron indices by combined IPR; dead neurons count as the lowest, ties keep index
        order."""
        key = torch.nan_to_num(self.combined, nan=-torch.inf)
        return torch.argsort(key, descending=descending, stable=True)


def reference_levels(
    op: str, p: int, *, r: float = 2.0, convention: str = "rfft"
) -> tuple[float, float]:
    """(random, periodic): the mean combined IPR of Gaussian random neurons (seeded, so
    deterministic) and of the analytic solution's neurons, for this task and convention."""
    coords = task_coordinates(op, p)
    gen = torch.Generator().manual_seed(0)
    parts = []
    for c in (coords.a, coords.b, coords.out):
        x = torch.randn(_N_RANDOM, p, generator=gen, dtype=torch.float64)
        parts.append(ipr(spectrum(x, fourier_basis(c, coords.period, convention)).abs(), r))
    random_level = float(torch.stack(parts).mean(0).nanmean())
    if p < 3:
        return random_level, 1.0
    n_freq = max(n_frequencies(coords.period, "rfft") - 1, 1)
    model = analytic_solution(p=p, width=n_freq, op=op)
    u, v, w = neuron_ipr(model, op, r=r, convention=convention)
    return random_level, float(((u + v + w) / 3).nanmean())


def ipr_scores(
    model: nn.Module, op: str, *, r: float = 2.0, convention: str = "rfft"
) -> IPRResult:
    """IPR of every hidden neuron of `model` in the Fourier basis of the task `op`.

    Args:
        model: a `HookedMLP`.
        op: the task; fixes the basis (residues for add/sub, discrete log for mul/div,
            squares for sq_sum).
        r: the IPR exponent (> 1; the paper uses 2).
        convention: "rfft" (the paper's code; a pure cosine scores 1) or "dft" (it scores 0.5).

    Returns:
        An `IPRResult`; dead neurons get NaN and are counted, never averaged in.

    Example:
        >>> res = ipr_scores(analytic_solution(p=97, width=500), "add")
        >>> round(res.mean, 6), res.dead
        (1.0, 0)
    """
    u, v, w = (x.cpu() for x in neuron_ipr(model, op, r=r, convention=convention))
    combined = (u + v + w) / 3
    dead_mask = torch.isnan(combined)
    nonfinite = torch.zeros_like(dead_mask)
    for x in (model.U, model.V, model.W.T):
        nonfinite |= ~torch.isfinite(x.detach().cpu()).all(1)
    live = combined[~dead_mask]
    random_level, periodic_level = reference_levels(op, model.cfg.p, r=r, convention=convention)
    return IPRResult(
        op=op,
        p=model.cfg.p,
        r=float(r),
        convention=convention,
        U=u,
        V=v,
        W=w,
        combined=combined,
        mean=float(live.mean()) if live.numel() else math.nan,
        dead=int(dead_mask.sum()),
        nonfinite=int(nonfinite.sum()),
        dead_mask=dead_mask,
        reference_random=random_level,
        reference_periodic=periodic_level,
    )

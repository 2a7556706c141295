"""Inverse participation ratio of every neuron: how concentrated its spectrum is."""

import functools
import math
from dataclasses import dataclass

import torch
from jaxtyping import Bool, Float, Int
from torch import nn

from ..data import task_coordinates
from ..models.analytic import analytic_solution
from ..models.sites import NeuronSite, find_site
from .spectrum import fourier_basis, ipr, n_frequencies, neuron_ipr, spectrum

# The weight vectors a site may have, by the task coordinate each is a function of.
PARTS = ("a", "b", "out")

_N_RANDOM = 512  # random vectors averaged for the random-level reference
_CACHED_LEVELS = 32  # (op, p, r, convention, parts) keys kept: one per task and site kind


@dataclass(frozen=True)
class IPRResult:
    """Per-neuron IPR of one neuron site, r and the Fourier convention it was measured with.

    Attributes:
        op, p: the task whose Fourier basis was used.
        r: the exponent; IPR(x) = sum |x~|^(2r) / (sum |x~|^2)^r.
        convention: "rfft" or "dft".
        U, V, W: IPR of each neuron's input weights from operand a and from operand b and of
            its output weights (for `HookedMLP`: U row, V row, W column); NaN where dead or
            where the site has no such weights (see `parts`).
        combined: the mean of the parts the site has, the paper's per-neuron IPR ((U + V + W)
            / 3 for the 2-layer MLP); NaN for dead neurons.
        mean: mean of `combined` over live neurons (NaN only if none is alive).
        dead: number of dead neurons (a zero or non-finite weight vector).
        nonfinite: how many of them hold NaN or inf weights.
        dead_mask: which neurons are dead.
        reference_random: mean combined IPR of Gaussian random weights for this task and
            convention (the level of a neuron with no structure).
        reference_periodic: mean combined IPR of the analytic solution's neurons for this task
            (the level of a perfect generalizing neuron).
        site: the neuron site measured (`mechmem.models.NeuronSite.name`).
        parts: which weights the site has, of "a", "b" (inputs) and "out".
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
    site: str = "hidden"
    parts: tuple[str, ...] = PARTS

    @property
    def live_mask(self) -> Bool[torch.Tensor, " neurons"]:
        return ~self.dead_mask

    def ranking(self, *, descending: bool = False) -> Int[torch.Tensor, " neurons"]:
        """Neuron indices by combined IPR; dead neurons count as the lowest, ties keep index
        order."""
        key = torch.nan_to_num(self.combined, nan=-torch.inf)
        return torch.argsort(key, descending=descending, stable=True)


def reference_levels(
    op: str, p: int, *, r: float = 2.0, convention: str = "rfft",
    parts: tuple[str, ...] = PARTS,
) -> tuple[float, float]:
    """(random, periodic): the mean combined IPR of Gaussian random neurons (seeded, so
    deterministic) and of the analytic solution's neurons, for this task and convention,
    over the weight `parts` a site has (of "a", "b", "out").

    They depend on nothing else, so they are computed once per process for each such key
    (the last 32 kept): a run's snapshots, sites and sweep cells share them."""
    return _reference_levels(op, p, r, convention, tuple(parts))


@functools.lru_cache(maxsize=_CACHED_LEVELS, typed=True)
def _reference_levels(
    op: str, p: int, r: float, convention: str, parts: tuple[str, ...]
) -> tuple[float, float]:
    coords = task_coordinates(op, p)
    axes = {"a": coords.a, "b": coords.b, "out": coords.out}
    gen = torch.Generator().manual_seed(0)
    random_parts = {}
    for name in PARTS:  # always drawn in this order, so each part's vectors are fixed
        x = torch.randn(_N_RANDOM, p, generator=gen, dtype=torch.float64)
        random_parts[name] = ipr(spectrum(x, fourier_basis(axes[name], coords.period,
                                                           convention)).abs(), r)
    random_level = float(torch.stack([random_parts[k] for k in parts]).mean(0).nanmean())
    if p < 3:
        return random_level, 1.0
    n_freq = max(n_frequencies(coords.period, "rfft") - 1, 1)
    model = analytic_solution(p=p, width=n_freq, op=op)
    levels = dict(zip(PARTS, neuron_ipr(model, op, r=r, convention=convention), strict=True))
    return random_level, float((sum(levels[k] for k in parts) / len(parts)).nanmean())


def ipr_scores(
    model: nn.Module, op: str, *, r: float = 2.0, convention: str = "rfft",
    site: str | NeuronSite | None = None,
) -> IPRResult:
    """IPR of every neuron of a site of `model` in the Fourier basis of the task `op`.

    Args:
        model: any model with neuron sites (`HookedMLP`, `HookedMLP3`, `HookedTransformer`).
        op: the task; fixes the basis (residues for add/sub, discrete log for mul/div,
            squares for sq_sum).
        r: the IPR exponent (> 1; the paper uses 2).
        convention: "rfft" (the paper's code; a pure cosine scores 1) or "dft" (it scores 0.5).
        site: the neuron site (default: the primary one; for the transformer "embed" gives the
            paper's IPR, one per embedding dimension).

    Returns:
        An `IPRResult`; dead neurons get NaN and are counted, never averaged in.

    Example:
        >>> res = ipr_scores(analytic_solution(p=97, width=500), "add")
        >>> round(res.mean, 6), res.dead
        (1.0, 0)
    """
    s = find_site(model, site)
    if not s.parts:
        raise ValueError(
            f"Site {s.name!r} of {type(model).__name__} has no weights seen from the residues "
            "(attention lies between them), so it has no weight IPR; its activations' Fourier "
            "view is neuron_frequencies.")
    names = ("a", "b")[: len(s.inputs)] + (("out",) if s.output is not None else ())
    measured = dict(zip(names, (x.cpu() for x in neuron_ipr(model, op, r=r, convention=convention,
                                                             site=s)), strict=True))
    nan = torch.full((s.width,), torch.nan, dtype=torch.float64)
    u, v, w = (measured.get(k, nan) for k in PARTS)
    combined = sum(measured[k] for k in names) / len(names)
    dead_mask = torch.isnan(combined)
    nonfinite = torch.zeros_like(dead_mask)
    for x in s.parts:
        nonfinite |= ~torch.isfinite(x.detach().cpu()).all(1)
    live = combined[~dead_mask]
    p = s.parts[0].shape[-1]
    random_level, periodic_level = reference_levels(op, p, r=r, convention=convention,
                                                    parts=names)
    return IPRResult(
        op=op,
        p=p,
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
        site=s.name,
        parts=names,
    )

"""The Fourier basis of a task, spectra and IPR of stacked weight vectors: the maths, written once.

Every weight vector of a neuron (row k of U, row k of V, column k of W) is a function of a residue
r in [0, p). Its spectrum is x~_s = sum_r x_r exp(-2 pi i s c(r) / P), with c the task's
coordinates (`mechmem.data.task_coordinates`): the residue itself for addition and subtraction
(then this is exactly the DFT), the discrete logarithm for multiplication and division (period
P = p - 1, residue 0 left out), r^2 for a^2 + b^2.

Conventions (see docs/analyzers.md):
    "rfft": frequencies s = 0..P//2, the paper code's |rfft| (DC included); a pure cosine has
        IPR 1, a random vector about 0.04 at p = 97.
    "dft": all P frequencies; a pure cosine has IPR 0.5 and the range is [1/P, 1].
"""

import math
from collections.abc import Sequence

import torch
from jaxtyping import Complex, Float, Int
from torch import Tensor

from .data import task_coordinates

CONVENTIONS = ("rfft", "dft")


def n_frequencies(period: int, convention: str) -> int:
    return period // 2 + 1 if convention == "rfft" else period


def fourier_basis(
    coords: Int[Tensor, " p"], period: int, convention: str = "rfft"
) -> Complex[Tensor, "p freqs"]:
    """The matrix E with E[r, s] = exp(-2 pi i s c(r) / P); zero rows where c(r) < 0."""
    if convention not in CONVENTIONS:
        raise ValueError(f"`convention` must be 'rfft' or 'dft', got {convention!r}.")
    s = torch.arange(n_frequencies(period, convention), dtype=torch.float64)
    # Reduce the product modulo P in integers first: exact angles for any p.
    phase = (coords[:, None].to(torch.int64) * s[None, :].to(torch.int64)) % period
    angle = -2 * math.pi * phase.to(torch.float64) / period
    basis = torch.polar(torch.ones_like(angle), angle)
    return torch.where((coords >= 0)[:, None], basis, torch.zeros((), dtype=basis.dtype))


def spectrum(
    x: Float[Tensor, "*batch p"], basis: Complex[Tensor, "p freqs"]
) -> Complex[Tensor, "*batch freqs"]:
    """Complex Fourier coefficients of the last axis of `x` (computed in float64)."""
    return x.to(torch.float64).to(torch.complex128) @ basis


def ipr(amplitudes: Float[Tensor, "*batch freqs"], r: float = 2.0) -> Float[Tensor, "*batch"]:
    """Inverse participation ratio sum |a|^(2r) / (sum |a|^2)^r over the last axis.

    A zero or non-finite vector has no IPR: the result is NaN there (never silently 0), so that
    callers count such neurons as dead instead of averaging them in.
    """
    if not r > 1:
        raise ValueError(f"IPR exponent `r` must be greater than 1, got {r}.")
    a = amplitudes.abs().to(torch.float64)
    # Scale by the max first so that large or tiny weights neither overflow nor underflow.
    scale = a.amax(dim=-1, keepdim=True)
    ok = torch.isfinite(a).all(dim=-1) & (scale.squeeze(-1) > 0)
    a = a / torch.where(scale > 0, scale, 1.0)
    value = (a ** (2 * r)).sum(-1) / (a**2).sum(-1) ** r
    return torch.where(ok, value, torch.nan)


def neuron_spectra_stacked(
    u: Float[Tensor, "*models neurons p"],
    v: Float[Tensor, "*models neurons p"],
    w: Float[Tensor, "*models neurons p"],
    op: str,
    convention: str = "rfft",
) -> tuple[Complex[Tensor, "*models neurons freqs"], ...]:
    """Complex coefficients of every neuron's three weight vectors (U row, V row, W column,
    each over the residues) in the task's basis, for any leading axes."""
    coords = task_coordinates(op, u.shape[-1])
    out = []
    for x, c in zip((u, v, w), (coords.a, coords.b, coords.out), strict=True):
        basis = fourier_basis(c.to(x.device), coords.period, convention).to(x.device)
        out.append(spectrum(x, basis))
    return tuple(out)


def neuron_ipr_stacked(
    u: Float[Tensor, "*models neurons p"],
    v: Float[Tensor, "*models neurons p"],
    w: Float[Tensor, "*models neurons p"],
    op: str,
    *,
    r: float = 2.0,
    convention: str = "rfft",
) -> tuple[Float[Tensor, "*models neurons"], ...]:
    """IPR of every neuron's three weight vectors (U row, V row, W column, each over the
    residues), for any leading axes: one model or a stack of them.

    Returns:
        (IPR of U rows, of V rows, of W columns), float64, NaN for a zero or non-finite vector.
    """
    return tuple(ipr(c.abs(), r) for c in neuron_spectra_stacked(u, v, w, op, convention))


def parts_ipr(
    inputs: Sequence[Float[Tensor, "*models neurons p"]],
    output: Float[Tensor, "*models neurons p"] | None,
    op: str,
    *,
    r: float = 2.0,
    convention: str = "rfft",
) -> tuple[Float[Tensor, "*models neurons"], ...]:
    """IPR of every weight vector of a neuron site (`mechmem.models.NeuronSite.parts`): input j
    over the residues of operand j, the output over the result's, for any leading axes.

    Returns:
        One IPR tensor per part (inputs first), float64, NaN for a zero or non-finite vector.
    """
    if len(inputs) > 2:
        raise ValueError(f"A site has at most one input per operand (2), got {len(inputs)}.")
    parts = [*inputs, *(() if output is None else (output,))]
    if not parts:
        raise ValueError("This neuron site has no weights seen from the residues.")
    coords = task_coordinates(op, parts[0].shape[-1])
    axes = [coords.a, coords.b][: len(inputs)] + ([coords.out] if output is not None else [])
    out = []
    for x, c in zip(parts, axes, strict=True):
        basis = fourier_basis(c.to(x.device), coords.period, convention).to(x.device)
        out.append(ipr(spectrum(x, basis).abs(), r))
    return tuple(out)


def live_mean(per_neuron: Float[Tensor, "*models neurons"]) -> Float[Tensor, " *models"]:
    """Mean over live (non-NaN) neurons; NaN where none is alive."""
    live = ~torch.isnan(per_neuron)
    count = live.sum(-1)
    total = torch.where(live, per_neuron, 0.0).sum(-1)
    return torch.where(count > 0, total / count.clamp_min(1), torch.nan)


def site_ipr(
    inputs: Sequence[Float[Tensor, "*models neurons p"]],
    output: Float[Tensor, "*models neurons p"] | None,
    op: str,
) -> tuple[Float[Tensor, " *models"], Float[Tensor, "*models neurons"]]:
    """A site's network IPR (rfft, r = 2): each neuron's IPR is the mean of its parts, the
    network's the mean over live neurons; (network IPR per model, per-neuron IPRs)."""
    parts = parts_ipr(inputs, output, op)
    per_neuron = sum(parts) / len(parts)
    return live_mean(per_neuron), per_neuron


def network_ipr(
    u: Float[Tensor, "*models neurons p"],
    v: Float[Tensor, "*models neurons p"],
    w: Float[Tensor, "*models neurons p"],
    op: str,
) -> tuple[Float[Tensor, " *models"], Float[Tensor, "*models neurons"]]:
    """The paper's network IPR (rfft, r = 2) of each model and its per-neuron IPRs.

    A neuron's IPR is the mean of its three parts; the network's is the mean over live neurons
    (NaN where no neuron is alive).
    """
    return site_ipr((u, v), w, op)

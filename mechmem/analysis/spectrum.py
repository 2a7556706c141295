"""The Fourier basis of a task and the per-neuron spectra and IPR built on it, written once.

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

import torch
from jaxtyping import Complex, Float, Int
from torch import Tensor

from ..data import task_coordinates

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


def neuron_weights(model: torch.nn.Module) -> tuple[Tensor, Tensor, Tensor]:
    """(U, V, W^T) of a `HookedMLP`, each (neurons, p): one weight vector per neuron."""
    return model.U.detach(), model.V.detach(), model.W.detach().T


def neuron_spectra(
    model: torch.nn.Module, op: str, convention: str = "rfft"
) -> tuple[Complex[Tensor, "neurons freqs"], ...]:
    """Complex coefficients of every neuron's U row, V row and W column in the task's basis."""
    coords = task_coordinates(op, model.cfg.p)
    out = []
    for x, c in zip(neuron_weights(model), (coords.a, coords.b, coords.out), strict=True):
        basis = fourier_basis(c.to(x.device), coords.period, convention).to(x.device)
        out.append(spectrum(x, basis))
    return tuple(out)


def neuron_ipr(
    model: torch.nn.Module, op: str, *, r: float = 2.0, convention: str = "rfft"
) -> tuple[Float[Tensor, " neurons"], Float[Tensor, " neurons"], Float[Tensor, " neurons"]]:
    """IPR of each neuron's U row, V row and W column under the task's Fourier basis."""
    u, v, w = (ipr(c.abs(), r) for c in neuron_spectra(model, op, convention))
    return u, v, w


def mean_ipr(model: torch.nn.Module, op: str) -> float:
    """The network IPR of the paper (rfft convention, r = 2): mean over live neurons of the
    mean of the three parts; NaN if no neuron is alive."""
    u, v, w = neuron_ipr(model, op)
    combined = (u + v + w) / 3
    live = combined[~torch.isnan(combined)]
    return float(live.mean()) if live.numel() else math.nan

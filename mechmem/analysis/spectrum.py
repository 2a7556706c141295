"""Per-neuron spectra and IPR of any model's neuron sites: their weights fed to the maths in
`mechmem.spectral`.

Conventions (see docs/analyzers.md): "rfft" (the paper code's |rfft|, DC included; a pure cosine
has IPR 1) or "dft" (all frequencies; a pure cosine has IPR 0.5).
"""

import torch
from jaxtyping import Complex, Float
from torch import Tensor

from ..models.sites import NeuronSite, find_site
from ..spectral import CONVENTIONS as CONVENTIONS
from ..spectral import fourier_basis as fourier_basis
from ..spectral import ipr as ipr
from ..spectral import n_frequencies as n_frequencies
from ..spectral import neuron_spectra_stacked, parts_ipr, site_ipr
from ..spectral import spectrum as spectrum


def neuron_weights(
    model: torch.nn.Module, site: str | NeuronSite | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """(input from operand a, input from operand b, output^T), each (neurons, p), of a site with
    all three (the 2-layer MLP's U, V and W^T)."""
    s = find_site(model, site)
    if len(s.inputs) != 2 or s.output is None:
        raise ValueError(
            f"Site {s.name!r} of {type(model).__name__} has {len(s.inputs)} input(s) and "
            f"{'an' if s.output is not None else 'no'} output seen from the residues; this "
            "view needs both operands' inputs and the output (use ipr_scores or "
            "neuron_frequencies instead).")
    return s.inputs[0], s.inputs[1], s.output.T


def neuron_spectra(
    model: torch.nn.Module, op: str, convention: str = "rfft", *,
    site: str | NeuronSite | None = None,
) -> tuple[Complex[Tensor, "neurons freqs"], ...]:
    """Complex coefficients of every neuron's two input vectors and output vector in the
    task's basis (for `HookedMLP`: U row, V row, W column)."""
    return neuron_spectra_stacked(*neuron_weights(model, site), op, convention)


def neuron_ipr(
    model: torch.nn.Module, op: str, *, r: float = 2.0, convention: str = "rfft",
    site: str | NeuronSite | None = None,
) -> tuple[Float[Tensor, " neurons"], ...]:
    """IPR of each weight vector of every neuron of a site (its `parts`: inputs, then the
    output), in the task's Fourier basis; for `HookedMLP`: (U rows, V rows, W columns)."""
    s = find_site(model, site)
    output = None if s.output is None else s.output.T
    return parts_ipr(s.inputs, output, op, r=r, convention=convention)


def mean_ipr(model: torch.nn.Module, op: str, *, site: str | NeuronSite | None = None) -> float:
    """The network IPR of the paper (rfft convention, r = 2) at a site (default: the primary
    one): mean over live neurons of the mean of their parts; NaN if no neuron is alive."""
    s = find_site(model, site)
    return float(site_ipr(s.inputs, None if s.output is None else s.output.T, op)[0])

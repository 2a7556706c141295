"""Per-neuron spectra and IPR of a `HookedMLP`: its weights fed to the maths in `mechmem.spectral`.

Conventions (see docs/analyzers.md): "rfft" (the paper code's |rfft|, DC included; a pure cosine
has IPR 1) or "dft" (all frequencies; a pure cosine has IPR 0.5).
"""

import torch
from jaxtyping import Complex, Float
from torch import Tensor

from ..spectral import CONVENTIONS as CONVENTIONS
from ..spectral import fourier_basis as fourier_basis
from ..spectral import ipr as ipr
from ..spectral import n_frequencies as n_frequencies
from ..spectral import network_ipr, neuron_ipr_stacked, neuron_spectra_stacked
from ..spectral import spectrum as spectrum


def neuron_weights(model: torch.nn.Module) -> tuple[Tensor, Tensor, Tensor]:
    """(U, V, W^T) of a `HookedMLP`, each (neurons, p): one weight vector per neuron."""
    return model.U.detach(), model.V.detach(), model.W.detach().T


def neuron_spectra(
    model: torch.nn.Module, op: str, convention: str = "rfft"
) -> tuple[Complex[Tensor, "neurons freqs"], ...]:
    """Complex coefficients of every neuron's U row, V row and W column in the task's basis."""
    return neuron_spectra_stacked(*neuron_weights(model), op, convention)


def neuron_ipr(
    model: torch.nn.Module, op: str, *, r: float = 2.0, convention: str = "rfft"
) -> tuple[Float[Tensor, " neurons"], Float[Tensor, " neurons"], Float[Tensor, " neurons"]]:
    """IPR of each neuron's U row, V row and W column under the task's Fourier basis."""
    u, v, w = neuron_ipr_stacked(*neuron_weights(model), op, r=r, convention=convention)
    return u, v, w


def mean_ipr(model: torch.nn.Module, op: str) -> float:
    """The network IPR of the paper (rfft convention, r = 2): mean over live neurons of the
    mean of the three parts; NaN if no neuron is alive."""
    return float(network_ipr(*neuron_weights(model), op)[0])

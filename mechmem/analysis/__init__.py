"""Analyzers: pure functions from a model (and its dataset) to frozen, typed results."""

from .spectrum import fourier_basis as fourier_basis
from .spectrum import ipr as ipr
from .spectrum import mean_ipr as mean_ipr
from .spectrum import neuron_ipr as neuron_ipr

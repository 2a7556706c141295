"""Hooked models: the paper's three networks, their analytic solution, and the neuron-site
protocol through which the analyzers see any of them."""

from .analytic import analytic_solution as analytic_solution
from .families import FAMILIES as FAMILIES
from .families import build_model as build_model
from .families import family_of as family_of
from .mlp import HookedMLP as HookedMLP
from .mlp import MLPConfig as MLPConfig
from .mlp3 import HookedMLP3 as HookedMLP3
from .mlp3 import MLP3Config as MLP3Config
from .sites import NeuronSite as NeuronSite
from .sites import neuron_sites as neuron_sites
from .transformer import HookedTransformer as HookedTransformer
from .transformer import TransformerConfig as TransformerConfig

"""Hooked models: the paper's MLP and its analytic solution."""

from .analytic import analytic_solution as analytic_solution
from .mlp import HookedMLP as HookedMLP
from .mlp import MLPConfig as MLPConfig

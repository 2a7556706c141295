"""Neuron sites: the one small protocol through which the analyzers see any model's neurons.

A model shows each layer of neurons as a `NeuronSite`: the hook where their activations live and
their weights as seen from the residues, input weights per operand (neurons, p) and output weights
(p, neurons) where such weights exist. Fourier spectra, IPR, neuron classes, ablation, pruning and
BatchNorm factors read sites, never the attributes of one model class, so every family (and a
sweep's stacked weights) goes through the same code.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from jaxtyping import Float
from torch import Tensor, nn


@dataclass(frozen=True, eq=False)
class NeuronSite:
    """One layer of neurons of a model.

    Attributes:
        name: the site's name ("hidden", "layers.1", "blocks.0.mlp", "embed").
        hook: the hook point whose activations are these neurons (what the output weights read).
        width: the number of neurons.
        inputs: input weights seen from each operand's residue, one (neurons, p) tensor per
            operand: neuron k's response to residue m of operand j is `inputs[j][k, m]`. Empty
            when no such linear map exists (attention lies between the tokens and the neurons).
        output: output weights (p, neurons): column k is neuron k's direct effect on the logits;
            None where the neurons reach the logits through other layers.
        output_bias: the logits' bias (p,) where the logits are `output @ h + output_bias`.
        residual: other paths reach the logits too (a transformer's residual stream), so the
            logits are `output @ h + (a per-example rest)`.
        linear: the logits are exactly that linear read-out of the activations at `hook`
            (no normalization after it), so pruning may sum per-neuron contributions.
        position: for sequence models, the token position whose activations the site reads
            (hook tensors are (batch, pos, neurons)); None for (batch, neurons) hooks.
        norm: the BatchNorm module applied to these neurons, if any.
    """

    name: str
    hook: str
    width: int
    inputs: tuple[Float[Tensor, "neurons p"], ...] = ()
    output: Float[Tensor, "p neurons"] | None = None
    output_bias: Float[Tensor, " p"] | None = None
    residual: bool = False
    linear: bool = True
    position: int | None = None
    norm: nn.Module | None = None

    @property
    def parts(self) -> tuple[Float[Tensor, "neurons p"], ...]:
        """Every weight vector per neuron, each (neurons, p): the inputs, then the output's
        columns."""
        out = () if self.output is None else (self.output.T,)
        return self.inputs + out

    def activations(self, hooked: Tensor) -> Float[Tensor, "batch neurons"]:
        """The site's (batch, neurons) activations from what its hook saw."""
        return hooked if self.position is None else hooked[:, self.position]


@runtime_checkable
class HasNeuronSites(Protocol):
    """A model that shows its neurons: `neuron_sites()`, the primary site last."""

    def neuron_sites(self) -> tuple[NeuronSite, ...]: ...


def neuron_sites(model: nn.Module) -> tuple[NeuronSite, ...]:
    """Every neuron site of `model`, in forward order; the last one is the primary site (the
    neurons that neuron classes, ablation and pruning act on by default).

    Raises:
        TypeError: `model` does not show its neurons (no `neuron_sites()` method).
    """
    if not isinstance(model, HasNeuronSites):
        raise TypeError(
            f"{type(model).__name__} does not show its neurons to mechmem's analyzers: it needs "
            "a neuron_sites() method returning NeuronSite objects (see docs/hooks.md).")
    sites = tuple(model.neuron_sites())
    if not sites:
        raise ValueError(f"{type(model).__name__}.neuron_sites() returned no site.")
    return sites


def find_site(model: nn.Module, site: str | NeuronSite | None = None) -> NeuronSite:
    """The site named `site` (default: the primary site, the last one)."""
    if isinstance(site, NeuronSite):
        return site
    sites = neuron_sites(model)
    if site is None:
        return sites[-1]
    for s in sites:
        if s.name == site:
            return s
    raise ValueError(f"{type(model).__name__} has no neuron site {site!r}; its sites are "
                     f"{', '.join(repr(s.name) for s in sites)}.")


def site_names(sites: Sequence[NeuronSite]) -> tuple[str, ...]:
    return tuple(s.name for s in sites)

"""Per-neuron Fourier decomposition: spectra, dominant frequency, phases, frequency counts."""

import math
from dataclasses import dataclass

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor, nn

from ..data import task_coordinates
from ..models.sites import NeuronSite, find_site
from .spectrum import neuron_spectra


@dataclass(frozen=True)
class FourierResult:
    """Spectra of every neuron's U row, V row and W column in the task's Fourier basis.

    Attributes:
        convention: "rfft" (frequencies 0..P//2) or "dft" (0..P-1), P the task's period.
        freqs: the frequencies, one per column of the power tensors.
        power_U, power_V, power_W: |coefficient|^2 per neuron and frequency.
        dominant_freq: per neuron, the non-DC frequency holding the most power summed over the
            three parts (under "dft" s and P - s count together and s <= P//2 is reported);
            -1 for a dead neuron.
        dominant_power_frac: share of the neuron's total power (all parts, all frequencies)
            at its dominant frequency; NaN for a dead neuron.
        phase_U, phase_V, phase_W: phase (radians) of each part's coefficient at the dominant
            frequency; NaN for a dead neuron.
        phase_relation: phase_U + phase_V - phase_W wrapped to (-pi, pi]: 0 for the analytic
            solution's neurons.
        freq_counts: live neurons per dominant frequency.
        dead: which neurons have no spectrum (a zero or non-finite weight vector).
    """

    convention: str
    freqs: Int[Tensor, " freqs"]
    power_U: Float[Tensor, "neurons freqs"]
    power_V: Float[Tensor, "neurons freqs"]
    power_W: Float[Tensor, "neurons freqs"]
    dominant_freq: Int[Tensor, " neurons"]
    dominant_power_frac: Float[Tensor, " neurons"]
    phase_U: Float[Tensor, " neurons"]
    phase_V: Float[Tensor, " neurons"]
    phase_W: Float[Tensor, " neurons"]
    phase_relation: Float[Tensor, " neurons"]
    freq_counts: Int[Tensor, " freqs"]
    dead: Bool[Tensor, " neurons"]


def wrap_phase(x: Float[Tensor, "*batch"]) -> Float[Tensor, "*batch"]:
    """Angles wrapped to (-pi, pi]."""
    return math.pi - torch.remainder(math.pi - x, 2 * math.pi)


def fourier(model: nn.Module, op: str, *, convention: str = "rfft",
            site: str | NeuronSite | None = None) -> FourierResult:
    """Fourier decomposition of every neuron's weights at a site with both operands' inputs
    and an output (the 2-layer MLP's hidden layer), for the task `op`.

    Args:
        model: a model with such a site (`HookedMLP`; other families raise ValueError: their
            neurons' Fourier view is `neuron_frequencies`, from activations).
        op: the task (`"add"`, `"mul"`, ...): it fixes the coordinates of the basis.
        convention: "rfft" (the paper code's half spectrum) or "dft" (all frequencies).
        site: the neuron site (default: the primary one).

    Returns:
        A `FourierResult`.

    Example:
        >>> f = fourier(analytic_solution(p=97, width=500), "add")
        >>> f.freq_counts[1:].tolist()[:3]   # neurons per frequency 1, 2, 3
        [11, 11, 11]
    """
    cu, cv, cw = (c.cpu() for c in neuron_spectra(model, op, convention, site=site))
    period = task_coordinates(op, find_site(model, site).inputs[0].shape[-1]).period
    pu, pv, pw = (c.abs() ** 2 for c in (cu, cv, cw))
    n, f = pu.shape
    dead = torch.zeros(n, dtype=torch.bool)
    for pw_part in (pu, pv, pw):
        total_part = pw_part.sum(1)
        dead |= ~torch.isfinite(total_part) | (total_part == 0)
    total = pu + pv + pw  # (neurons, freqs)
    if convention == "dft":
        # A real vector's power at s and P - s is one cosine: fold the mirror pairs together.
        half = period // 2
        folded = total[:, : half + 1].clone()
        mirror = torch.arange(1, half + 1)
        folded[:, mirror] += torch.where(
            (period - mirror) != mirror, total[:, (period - mirror) % period], 0.0
        )
    else:
        folded = total
    if folded.shape[1] > 1:
        clean = torch.nan_to_num(folded[:, 1:], nan=-1.0, posinf=-1.0, neginf=-1.0)
        best = clean.argmax(1) + 1  # (neurons,), DC excluded
        frac = folded.gather(1, best[:, None])[:, 0] / total.sum(1)
    else:  # a period of 1 has no frequency but DC
        best = torch.zeros(n, dtype=torch.int64)
        frac = torch.full((n,), torch.nan, dtype=torch.float64)
    live_best = torch.where(dead, 0, best)
    phases = [torch.angle(c.gather(1, live_best[:, None])[:, 0]) for c in (cu, cv, cw)]
    nan = torch.tensor(torch.nan, dtype=torch.float64)
    phases = [torch.where(dead, nan, ph) for ph in phases]
    relation = torch.where(dead, nan, wrap_phase(phases[0] + phases[1] - phases[2]))
    no_freq = dead | (best == 0)
    dominant = torch.where(no_freq, -1, best)
    counts = torch.bincount(dominant[~no_freq], minlength=f)
    return FourierResult(
        convention=convention,
        freqs=torch.arange(f),
        power_U=pu,
        power_V=pv,
        power_W=pw,
        dominant_freq=dominant,
        dominant_power_frac=torch.where(no_freq, nan, frac),
        phase_U=phases[0],
        phase_V=phases[1],
        phase_W=phases[2],
        phase_relation=relation,
        freq_counts=counts,
        dead=dead,
    )

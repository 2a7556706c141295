"""Sort neurons into generalizing, memorizing and dead by their IPR."""

import math
from dataclasses import dataclass

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from .ipr import IPRResult

LABELS = ("generalizing", "memorizing", "dead")


@dataclass(frozen=True)
class NeuronClasses:
    """One label per neuron, the counts, and how the threshold was chosen.

    Attributes:
        labels: "generalizing" (combined IPR >= threshold), "memorizing" (below) or "dead".
        generalizing, memorizing, dead: counts.
        threshold: the IPR threshold used.
        method: "user" (given), "otsu" (found from a bimodal IPR distribution) or "reference"
            (the distribution is not bimodal: midpoint of the random and periodic levels).
        generalizing_mask, memorizing_mask: the labels as boolean masks.
    """

    labels: tuple[str, ...]
    generalizing: int
    memorizing: int
    dead: int
    threshold: float
    method: str
    generalizing_mask: Bool[Tensor, " neurons"]
    memorizing_mask: Bool[Tensor, " neurons"]


def otsu_threshold(values: Float[Tensor, " n"]) -> tuple[float, float, float]:
    """Otsu's split of 1-d data, exact (no histogram bins).

    Every cut between two consecutive distinct sorted values is tried; the one maximizing the
    between-class variance w0 w1 (mu0 - mu1)^2 wins and the threshold is the midpoint of the
    gap it cuts.

    Returns:
        (threshold, mean of the lower class, mean of the upper class); NaNs if the values
        hold fewer than two distinct numbers.
    """
    x = values.to(torch.float64).sort().values
    n = x.numel()
    if n < 2 or x[0] == x[-1]:
        return math.nan, math.nan, math.nan
    k = torch.arange(1, n, dtype=torch.float64)  # size of the lower class
    csum = x.cumsum(0)[:-1]
    mu0 = csum / k
    mu1 = (x.sum() - csum) / (n - k)
    between = (k / n) * (1 - k / n) * (mu0 - mu1) ** 2
    between = torch.where(x[1:] > x[:-1], between, -1.0)  # cut only inside a real gap
    i = int(between.argmax())
    return float((x[i] + x[i + 1]) / 2), float(mu0[i]), float(mu1[i])


def classify_neurons(ipr: IPRResult, *, threshold: float | None = None) -> NeuronClasses:
    """Label each neuron generalizing, memorizing or dead from its combined IPR.

    Without `threshold`, Otsu's method splits the live neurons' combined IPR in two; the split
    is kept when it separates a random-like group from a periodic one, i.e. when the lower
    class mean lies below and the upper class mean above the midpoint between
    `ipr.reference_random` and `ipr.reference_periodic`. Otherwise (one population only, e.g.
    the analytic solution or an untrained net) that midpoint is the threshold.

    Args:
        ipr: per-neuron IPR from `ipr_scores`.
        threshold: a fixed IPR threshold; overrides the automatic choice.

    Returns:
        A `NeuronClasses`.

    Example:
        >>> classes = classify_neurons(ipr_scores(model, "add"))
        >>> classes.generalizing, classes.memorizing, classes.threshold, classes.method
    """
    live = ~ipr.dead_mask
    values = ipr.combined[live]
    if threshold is not None:
        if not math.isfinite(threshold):
            raise ValueError(f"`threshold` must be a finite number, got {threshold}.")
        cut, method = float(threshold), "user"
    else:
        midpoint = (ipr.reference_random + ipr.reference_periodic) / 2
        cut, low, high = otsu_threshold(values)
        if math.isfinite(cut) and low < midpoint < high:
            method = "otsu"
        else:
            cut, method = midpoint, "reference"
    gen = live & (ipr.combined >= cut)
    mem = live & ~gen
    labels = tuple(
        "dead" if d else ("generalizing" if g else "memorizing")
        for d, g in zip(ipr.dead_mask.tolist(), gen.tolist(), strict=True)
    )
    return NeuronClasses(
        labels=labels,
        generalizing=int(gen.sum()),
        memorizing=int(mem.sum()),
        dead=int(ipr.dead_mask.sum()),
        threshold=cut,
        method=method,
        generalizing_mask=gen,
        memorizing_mask=mem,
    )

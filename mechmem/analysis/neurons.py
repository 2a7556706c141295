"""Sort neurons into two classes and the dead by their IPR, and say what the two classes may be
called: "generalizing" and "memorizing" only where pruning shows that the low-IPR class holds
the memorized labels (`class_evidence`), "periodic" and "non-periodic" otherwise."""

import math
from dataclasses import dataclass

import torch
from jaxtyping import Bool, Float
from torch import Tensor, nn

from ..data import ModularDataset
from ..models.sites import NeuronSite, find_site
from ._common import evaluating, predict
from .ablation import ablate
from .ipr import IPRResult

LABELS = ("generalizing", "memorizing", "dead")
CAUSAL_NAMES = ("generalizing", "memorizing")  # (high-IPR, low-IPR) class, causal basis
IPR_NAMES = ("periodic", "non-periodic")  # the same classes named for what was measured
MEMORIZED_MARGIN = 0.1  # something is memorized: memorized accuracy >= 1/p + 10 points


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


@dataclass(frozen=True)
class ClassEvidence:
    """What the two IPR classes of a `NeuronClasses` may be called, and why.

    The low-IPR class is called "memorizing" (and the high-IPR one "generalizing") only when
    (1) the training set has corrupted examples, (2) the network has memorized some of them
    (accuracy on their corrupted labels at least 1/p + 10 points), (3) both classes hold a
    live neuron, and (4) zeroing the low-IPR class lowers that accuracy more than zeroing the
    high-IPR class does. Otherwise the classes are "periodic" and "non-periodic".

    Attributes:
        basis: "causal" (all four hold) or "ipr" (named for the IPR alone).
        high, low: the names of the class at or above the threshold and of the one below.
        reason: one sentence with the numbers behind `basis`.
        memorized: accuracy on the corrupted labels (NaN without corrupted examples).
        memorized_without_low, memorized_without_high: the same with the low-IPR or the
            high-IPR class zeroed (NaN where not measured).
    """

    basis: str
    high: str
    low: str
    reason: str
    memorized: float
    memorized_without_low: float
    memorized_without_high: float


def _memorized(model: nn.Module, dataset: ModularDataset) -> float:
    """Accuracy on the corrupted training examples against their corrupted labels
    (`AccuracyResult.corrupted_memorized`), from a forward pass over those examples only."""
    pairs = dataset.train_pairs[dataset.corrupted]
    device = next(iter(model.parameters()), torch.empty(0)).device
    with evaluating(model):
        preds = predict(model(dataset.model_inputs(pairs).to(device)))
    hits = preds.cpu() == dataset.train_labels[dataset.corrupted].to(preds.dtype)
    return float(hits.to(torch.float64).mean())


def class_evidence(
    model: nn.Module, dataset: ModularDataset, classes: NeuronClasses, *,
    site: str | NeuronSite | None = None,
) -> ClassEvidence:
    """Decide whether `classes` may be called generalizing and memorizing (see
    `ClassEvidence`) by zeroing each class in turn and measuring the memorized-label accuracy.

    Args:
        model: the trained model (not changed: the neurons are zeroed by a hook).
        dataset: its dataset.
        classes: the IPR classes of `site` (`classify_neurons`).
        site: the neuron site the classes are of (default: the model's primary one).

    Returns:
        A `ClassEvidence`.

    Example:
        >>> ev = class_evidence(model, ds, classify_neurons(ipr_scores(model, "add")))
        >>> ev.basis, ev.low, ev.reason
    """
    nan = math.nan

    def ipr_only(reason: str, memorized: float = nan, low: float = nan,
                 high: float = nan) -> ClassEvidence:
        return ClassEvidence("ipr", *IPR_NAMES, reason, memorized, low, high)

    if dataset.n_corrupted == 0:
        return ipr_only("the training set has no corrupted labels, so no class of neurons "
                        "can hold memorized ones.")
    base = _memorized(model, dataset)
    floor = 1 / dataset.p + MEMORIZED_MARGIN
    if not (math.isfinite(base) and base >= floor):
        return ipr_only(f"the network predicts the corrupted label of only {base:.1%} of its "
                        f"{dataset.n_corrupted} corrupted examples (below 1/p + 10 points = "
                        f"{floor:.1%}): nothing memorized to attribute.", base)
    if classes.generalizing == 0 or classes.memorizing == 0:
        return ipr_only("every live neuron falls on one side of the IPR threshold, so pruning "
                        "cannot compare the two classes.", base)
    site = find_site(model, site).name
    with ablate(model, classes.memorizing_mask, site=site):
        without_low = _memorized(model, dataset)
    with ablate(model, classes.generalizing_mask, site=site):
        without_high = _memorized(model, dataset)
    numbers = (f"zeroing the {classes.memorizing} low-IPR neurons takes memorized-label "
               f"accuracy from {base:.1%} to {without_low:.1%}, zeroing the "
               f"{classes.generalizing} high-IPR ones to {without_high:.1%}")
    if without_low < without_high:
        return ClassEvidence("causal", *CAUSAL_NAMES, f"{numbers}: the low-IPR class holds "
                             "the memorized labels.", base, without_low, without_high)
    return ipr_only(f"{numbers}: the low-IPR class holds the memorized labels no more than "
                    "the other.", base,
                    without_low, without_high)

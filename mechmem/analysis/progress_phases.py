"""Nanda et al.'s three phases of grokking (memorization, circuit formation, cleanup) located
on progress-measure curves by one stated rule.

All losses are compared on a log scale. The rule (docs/analyzers.md, "Progress measures"):
cleanup is the fall of the test loss from its peak, from 10% to 90% of the way down in log,
when it falls by at least `min_fall`; memorization runs from the first snapshot until the train
loss has made half of its log fall to its lowest value before cleanup; circuit formation is what
lies between them. Where a phase cannot be located it is None and a note says why.
"""

import math
from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor

MIN_FALL = 2.0  # a loss must at least halve for a phase to count (MSE moves little)
_EDGE = 0.1  # cleanup begins and ends 10% of the test loss's log fall from either end
_KNEE = 0.5  # memorization ends half-way down the train loss's log fall: MSE creeps on after
# the training set is fitted, so a point nearer the bottom lands long after the fit


@dataclass(frozen=True)
class NandaPhases:
    """Nanda et al.'s phases as (first step, last step), each None where not found.

    Attributes:
        memorization: from the first snapshot to half-way down the train loss's fall.
        circuit_formation: from the end of memorization to the start of cleanup.
        cleanup: the test loss's fall from its peak (grokking, as the test loss sees it).
        excluded_change: excluded loss at the end of circuit formation over its value at the
            start (> 1: it rose, as Nanda et al. see); None without circuit formation.
        restricted_change: the same ratio for the restricted loss (< 1: it fell).
        notes: one sentence for each phase that is None.
    """

    memorization: tuple[float, float] | None = None
    circuit_formation: tuple[float, float] | None = None
    cleanup: tuple[float, float] | None = None
    excluded_change: float | None = None
    restricted_change: float | None = None
    notes: tuple[str, ...] = ()


def _log(x: Tensor) -> Tensor:
    return x.to(torch.float64).clamp_min(1e-300).log10()


def nanda_phases(
    steps: Float[Tensor, " snapshots"],
    train_loss: Float[Tensor, " snapshots"],
    test_loss: Float[Tensor, " snapshots"],
    restricted_loss: Float[Tensor, " snapshots"],
    excluded_loss: Float[Tensor, " snapshots"],
    *,
    min_fall: float = MIN_FALL,
) -> NandaPhases:
    """Locate memorization, circuit formation and cleanup on progress-measure curves.

    Args:
        steps: the snapshot steps, increasing.
        train_loss, test_loss, restricted_loss, excluded_loss: the curves at those steps.
        min_fall: the factor by which the train loss (memorization) and the test loss
            (cleanup) must fall for the phase to count.

    Returns:
        A `NandaPhases`.
    """
    if not min_fall > 1.0:
        raise ValueError(f"`min_fall` must be above 1, got {min_fall}.")
    curves = [torch.as_tensor(c, dtype=torch.float64).reshape(-1)
              for c in (steps, train_loss, test_loss, restricted_loss, excluded_loss)]
    n = curves[0].numel()
    if any(c.numel() != n for c in curves):
        raise ValueError("The steps and the four loss curves must have one value per snapshot.")
    if n < 3:
        return NandaPhases(notes=(f"Only {n} snapshot(s): the phases need at least 3.",))
    if not all(bool(torch.isfinite(c).all()) for c in curves[:3]):
        return NandaPhases(notes=("A train or test loss is not finite (the run diverged): no "
                                  "phases are located.",))
    s, train, test = curves[0], _log(curves[1]), _log(curves[2])
    least = math.log10(min_fall)
    notes = []

    cleanup = None
    peak = int(test.argmax())
    hi, lo = float(test[peak]), float(test[peak:].min())
    if hi - lo >= least:
        start = peak + int(torch.nonzero(test[peak:] <= hi - _EDGE * (hi - lo))[0])
        end = start + int(torch.nonzero(test[start:] <= lo + _EDGE * (hi - lo))[0])
        cleanup = (start, end)
    else:
        notes.append(f"Cleanup: the test loss never falls by a factor of {min_fall:g} from its "
                     f"peak ({10 ** hi:.3g} at step {float(s[peak]):g}, lowest after it "
                     f"{10 ** lo:.3g}): the network has not generalized in this run.")

    memorization = None
    upto = cleanup[0] if cleanup is not None else n - 1
    t0, tlo = float(train[0]), float(train[: upto + 1].min())
    if t0 - tlo >= least:
        end = int(torch.nonzero(train[: upto + 1] <= tlo + _KNEE * (t0 - tlo))[0])
        memorization = (0, end)
    else:
        where = "before the test loss falls" if cleanup is not None else "in this run"
        notes.append(f"Memorization: the train loss never falls by a factor of {min_fall:g} "
                     f"{where} ({10 ** t0:.3g} -> lowest {10 ** tlo:.3g}).")

    circuit = None
    if memorization is not None and cleanup is not None:
        if memorization[1] < cleanup[0]:
            circuit = (memorization[1], cleanup[0])
        else:
            notes.append("Circuit formation: the train loss is still falling when the test loss "
                         "begins to fall, so memorization and generalization overlap with no "
                         "phase between them.")
    elif memorization is not None:
        notes.append("Circuit formation: without a fall of the test loss it has no end to "
                     "locate.")
    else:
        notes.append("Circuit formation: it begins where memorization ends, which was not "
                     "located.")

    ratios: list[float | None] = [None, None]
    if circuit is not None:
        a, b = circuit
        for i, c in enumerate((curves[4], curves[3])):
            if bool(torch.isfinite(c[[a, b]]).all()) and float(c[a]) > 0:
                ratios[i] = float(c[b] / c[a])

    def span(ix: tuple[int, int] | None) -> tuple[float, float] | None:
        return None if ix is None else (float(s[ix[0]]), float(s[ix[1]]))

    return NandaPhases(memorization=span(memorization), circuit_formation=span(circuit),
                       cleanup=span(cleanup), excluded_change=ratios[0],
                       restricted_change=ratios[1], notes=tuple(notes))

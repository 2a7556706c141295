"""The paper's phase of a trained network (App. C, Table 2) from its final accuracies."""

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .accuracy import AccuracyResult

PHASES = (
    "generalization",
    "coexistence",
    "partial_inversion",
    "full_inversion",
    "memorization",
    "forgetting",
    "confusion",
)
HIGH = 0.9  # the paper's 90% line for "high" train or test accuracy


@dataclass(frozen=True)
class PhaseResult:
    """The phase and the numbers that decided it.

    Attributes:
        phase: one of `PHASES`; "generalization" only for a run without corrupted labels.
        reason: one sentence with the accuracies and thresholds compared.
    """

    phase: str
    reason: str


def classify_phase(
    acc: AccuracyResult,
    corrupt_frac: float,
    history: Mapping[str, Sequence[float]] | None = None,
) -> PhaseResult:
    """Classify a network by Table 2 of the paper (accuracies as fractions).

    test >= 0.9: Coexistence if train >= 0.9, else Partial Inversion if train >=
    1.05 - xi, else Full Inversion. test < 0.9: Memorization if train >= 0.9; otherwise
    Forgetting if the history shows test accuracy >= 0.9 at an earlier evaluation, Confusion if
    it never got there (or if there is no history to tell).

    A run without corrupted labels (xi = 0, or a training set in which no example is
    corrupted) has nothing to memorize or invert: test >= 0.9 is Generalization whatever the
    train accuracy, and the other phases keep their names, which fit clean data (Memorization
    of the training set, Forgetting, Confusion).

    Args:
        acc: final accuracies.
        corrupt_frac: xi, the corrupted fraction of the training set.
            `acc.n_corrupted == 0` also counts as a run without corrupted labels.
        history: the training record; its "test_acc" list tells Forgetting from Confusion.

    Returns:
        A `PhaseResult`.

    Example:
        >>> classify_phase(accuracies(model, ds), ds.spec.corrupt_frac, ckpt.history).phase
        'coexistence'
    """
    if not 0.0 <= corrupt_frac < 1.0:
        raise ValueError(f"`corrupt_frac` must lie in [0, 1), got {corrupt_frac}.")
    train, test = acc.train, acc.test
    if not (math.isfinite(train) and math.isfinite(test)):
        raise ValueError(f"Phase needs finite train and test accuracy, got {train} and {test}.")
    inversion_line = 1.05 - corrupt_frac
    t = f"test {test:.1%}, train {train:.1%}"
    if test >= HIGH and (corrupt_frac == 0 or acc.n_corrupted == 0):
        what = "xi = 0" if corrupt_frac == 0 else "no training example is corrupted"
        return PhaseResult("generalization",
                           f"{t}: test >= 90% and no corrupted labels ({what}).")
    if test >= HIGH:
        if train >= HIGH:
            return PhaseResult("coexistence", f"{t}: both >= 90%.")
        if train >= inversion_line:
            return PhaseResult(
                "partial_inversion",
                f"{t}: test >= 90%, train < 90% but >= 1.05 - xi = {inversion_line:.1%}.",
            )
        return PhaseResult(
            "full_inversion", f"{t}: test >= 90%, train < 1.05 - xi = {inversion_line:.1%}."
        )
    if train >= HIGH:
        return PhaseResult("memorization", f"{t}: test < 90%, train >= 90%.")
    past = [float(x) for x in (history or {}).get("test_acc", []) if math.isfinite(float(x))]
    if not past:
        return PhaseResult(
            "confusion", f"{t}: both < 90%; no test-accuracy history, so no sign of forgetting."
        )
    best = max(past)
    if best >= HIGH:
        return PhaseResult(
            "forgetting", f"{t}: both < 90% now, but test accuracy reached {best:.1%} earlier."
        )
    return PhaseResult(
        "confusion", f"{t}: both < 90%, and test accuracy never exceeded {best:.1%}."
    )

"""Training dynamics: when a run memorized, grokked, unlearned and forgot, and what became of its
neurons, read from its training history and its weight snapshots only.

The rules (thresholds are fractions; docs/analyzers.md states them with their reasons):
memorization and grokking are the first evaluated steps with train and test accuracy >= 90%;
unlearning is the first step after the train-accuracy peak with train accuracy within one
point of the inversion level 1 - xi + xi/p; forgetting is the first step, from the test peak
on, at which the total weight norm has fallen to 25% of its peak, in a run whose test accuracy
reached 90% and ends below it. Per neuron, the IPR at every snapshot against one threshold.
"""

import copy
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from jaxtyping import Bool, Float
from torch import Tensor, nn

from ..models.sites import NeuronSite, find_site
from ._common import single_thread
from .ipr import ipr_scores
from .neurons import classify_neurons
from .phase import HIGH

BAND = 0.01  # unlearning: train accuracy within one point of the inversion level
COLLAPSE = 0.25  # forgetting: the total weight norm at or below this fraction of its peak
PRUNED = 0.1  # a neuron's norm at or below this fraction of the layer's median: pruned away


@dataclass(frozen=True)
class Event:
    """A moment of training: its step (and the value there), or why it did not happen.

    Attributes:
        step: the evaluated (or snapshot) step, or None when the event did not happen or
            cannot be known.
        value: the quantity that decided it at that step (an accuracy, a norm), or None.
        reason: one sentence saying why there is no step; None when there is one.
        unknown: True when what the run's files hold cannot tell whether the event happened
            (no training history, no accuracy or weight-norm record); False when the record
            shows it did not.
    """

    step: int | None
    value: float | None = None
    reason: str | None = None
    unknown: bool = False

    def __post_init__(self) -> None:
        if (self.step is None) == (self.reason is None):
            raise ValueError("An Event has either a step or a reason, not both or neither.")
        if self.unknown and self.step is not None:
            raise ValueError(f"An Event at step {self.step} is known, not unknown.")

    @property
    def happened(self) -> bool:
        return self.step is not None

    @property
    def status(self) -> str:
        """"happened", "never" (the record shows it did not) or "unknown" (the record cannot
        tell)."""
        return "happened" if self.step is not None else "unknown" if self.unknown else "never"

    def describe(self) -> str:
        """"step N", "never" or "unknown", as the summary prints it."""
        return f"step {self.step}" if self.step is not None else self.status


@dataclass(frozen=True, eq=False)
class MemorizingFate:
    """What became of the neurons that were memorizing once the network had memorized.

    Attributes:
        step: the snapshot where the cohort is taken (the first at or after the memorization
            step).
        final_step: the last snapshot, where their fate is read.
        cohort: live neurons with IPR below the threshold at `step`.
        pruned: cohort neurons whose weight norm at `final_step` is at most `prune_level`
            (or dead there).
        memorizing: cohort neurons alive above `prune_level` and still below the threshold.
        periodic: cohort neurons alive above `prune_level` and at or above the threshold.
        prune_level: `PRUNED` times the median neuron norm of the layer at `step`.
    """

    step: int
    final_step: int
    cohort: Bool[Tensor, " neurons"]
    pruned: Bool[Tensor, " neurons"]
    memorizing: Bool[Tensor, " neurons"]
    periodic: Bool[Tensor, " neurons"]
    prune_level: float

    def counts(self) -> dict[str, int]:
        """{"cohort", "pruned", "memorizing", "periodic"} -> number of neurons."""
        return {k: int(getattr(self, k).sum())
                for k in ("cohort", "pruned", "memorizing", "periodic")}


@dataclass(frozen=True, eq=False)
class NeuronDynamics:
    """Every neuron of one site across the weight snapshots.

    Attributes:
        site: the neuron site (the model's primary one unless asked otherwise).
        threshold: the IPR at or above which a neuron counts as periodic, at every snapshot.
        steps: the snapshot steps.
        ipr: combined IPR of each neuron at each snapshot (NaN where dead).
        norm: each neuron's weight norm at each snapshot: the root of the sum of squares of
            all its weight vectors (for `HookedMLP`: U row, V row, W column).
        periodic_fraction: per snapshot, the share of the site's neurons (dead ones included
            in the count) that are live and periodic.
        periodic_step: per neuron, the first snapshot step at which it is periodic, or None.
        fate: the memorizing neurons' fate, or None (see `fate_reason`).
        fate_reason: why there is no fate; None when there is one.
    """

    site: str
    threshold: float
    steps: tuple[int, ...]
    ipr: Float[Tensor, "snapshots neurons"]
    norm: Float[Tensor, "snapshots neurons"]
    periodic_fraction: tuple[float, ...]
    periodic_step: tuple[int | None, ...]
    fate: MemorizingFate | None
    fate_reason: str | None


@dataclass(frozen=True, eq=False)
class Dynamics:
    """When a run memorized, grokked, unlearned and forgot, and what its neurons did.

    Attributes:
        memorization: first evaluated step with train accuracy >= 90%.
        grokking: first evaluated step with test accuracy >= 90%.
        delay: grokking step minus memorization step (negative if it generalized first), or
            None (see `delay_reason`).
        delay_reason: why there is no delay; None when there is one.
        train_peak, test_peak: the highest train and test accuracy and the first step that
            reached it.
        inversion_level: 1 - xi + xi/p, the train accuracy of a network that predicts the true
            rule on every example (about 1/p of the random labels are right by chance); None
            when xi = 0.
        unlearning: first step after the train peak with train accuracy within one point of
            `inversion_level`.
        forgetting: in a run whose test accuracy reached 90% and ends below it, the first
            step from the test peak on at which the total weight norm is at most 25% of its
            peak (`value`: that norm).
        neurons: the neurons across the snapshots, or None (see `neurons_reason`).
        neurons_reason: why there is no per-neuron record; None when there is one.
    """

    memorization: Event
    grokking: Event
    delay: int | None
    delay_reason: str | None
    train_peak: Event
    test_peak: Event
    inversion_level: float | None
    unlearning: Event
    forgetting: Event
    neurons: NeuronDynamics | None
    neurons_reason: str | None

    def events(self) -> dict[str, Event]:
        """The named events, in training order as they usually come."""
        return {"memorization": self.memorization, "grokking": self.grokking,
                "train_peak": self.train_peak, "test_peak": self.test_peak,
                "unlearning": self.unlearning, "forgetting": self.forgetting}


def _series(history: Mapping[str, Sequence[float]], key: str, n: int
            ) -> tuple[np.ndarray | None, str | None]:
    values = history.get(key)
    if values is None or len(values) == 0:
        return None, f"the training history records no {key}."
    if len(values) != n:
        return None, f"the training history has {len(values)} values of {key} for {n} steps."
    return np.asarray([float(v) for v in values], dtype=np.float64), None


def _first_at_least(steps: np.ndarray, values: np.ndarray, what: str) -> Event:
    hit = np.flatnonzero(np.nan_to_num(values, nan=-np.inf) >= HIGH)
    if hit.size:
        i = int(hit[0])
        return Event(int(steps[i]), float(values[i]))
    if not np.isfinite(values).any():
        return Event(None, reason=f"every recorded {what} accuracy is NaN.", unknown=True)
    return Event(None, reason=f"{what} accuracy never reached 90% (best "
                              f"{np.nanmax(values):.1%}).")


def _peak(steps: np.ndarray, values: np.ndarray, what: str) -> tuple[Event, int | None]:
    if not np.isfinite(values).any():
        return Event(None, reason=f"every recorded {what} accuracy is NaN.", unknown=True), None
    i = int(np.nanargmax(values))
    return Event(int(steps[i]), float(values[i])), i


def _unlearning(steps: np.ndarray, train: np.ndarray, peak: int, level: float) -> Event:
    if train[peak] <= level + BAND:
        return Event(None, reason=f"train accuracy never rose more than one point above the "
                                  f"inversion level {level:.1%} (peak {train[peak]:.1%}).")
    near = np.flatnonzero(np.abs(np.nan_to_num(train[peak + 1:], nan=np.inf) - level) <= BAND)
    if near.size:
        i = peak + 1 + int(near[0])
        return Event(int(steps[i]), float(train[i]))
    return Event(None, reason=f"after its peak of {train[peak]:.1%} at step {int(steps[peak])}, "
                              f"train accuracy never came within one point of the inversion "
                              f"level {level:.1%} (it ends at {train[-1]:.1%}).")


def _forgetting(history: Mapping[str, Sequence[float]], steps: np.ndarray, test: np.ndarray,
                peak: int) -> Event:
    if test[peak] < HIGH:
        return Event(None, reason=f"test accuracy never reached 90% (best {test[peak]:.1%}), "
                                  "so there was nothing to forget.")
    if not (np.isfinite(test[-1]) and test[-1] < HIGH):
        return Event(None, reason=f"test accuracy ends at {test[-1]:.1%}, not below 90%: "
                                  "nothing was forgotten.")
    norms = [s for k in history if k.startswith("norm_")
             if (s := _series(history, k, len(steps))[0]) is not None]
    if not norms:
        return Event(None, reason="test accuracy was lost, but the training history records "
                                  "no weight norms to show a collapse.", unknown=True)
    total = np.sqrt(np.sum(np.square(norms), axis=0))  # the norm of all weights together
    top = float(np.nanmax(total))
    low = np.flatnonzero(np.nan_to_num(total[peak:], nan=np.inf) <= COLLAPSE * top)
    if low.size:
        i = peak + int(low[0])
        return Event(int(steps[i]), float(total[i]))
    return Event(None, reason=f"test accuracy fell from {test[peak]:.1%} to {test[-1]:.1%}, but "
                              f"the total weight norm never fell to {COLLAPSE:.0%} of its peak "
                              f"{top:.3g} (lowest after the test peak "
                              f"{float(np.nanmin(total[peak:])):.3g}).")


def _snapshot_model(model: nn.Module, snapshots: Mapping[str, Tensor]
                    ) -> tuple[nn.Module, list[str]] | str:
    """A CPU copy of `model` to load snapshots into and the snapshot names, or why not."""
    state = model.state_dict()
    names = [k for k in snapshots if k != "step"]
    if not names:
        return "the snapshots hold steps but no weights."
    n = len(snapshots["step"])
    for k in names:
        v = snapshots[k]
        if k not in state or tuple(v.shape) != (n, *state[k].shape):
            return (f"snapshot {k!r} of shape {tuple(v.shape)} does not match the model's "
                    "weights.")
    return copy.deepcopy(model).to("cpu"), names


def _neurons(
    model: nn.Module, snapshots: Mapping[str, Tensor], op: str, *, threshold: float | None,
    r: float, convention: str, site: str | NeuronSite | None, memorization: Event,
) -> tuple[NeuronDynamics | None, str | None]:
    if not snapshots or "step" not in snapshots or len(snapshots["step"]) == 0:
        return None, "no weight snapshots were stored during training."
    made = _snapshot_model(model, snapshots)
    if isinstance(made, str):
        return None, made
    snap, names = made
    site_name = find_site(model, site).name
    steps = tuple(int(s) for s in snapshots["step"])
    tensors = dict(snap.named_parameters()) | dict(snap.named_buffers())
    iprs, norms, last = [], [], None
    with single_thread():  # many small tensor ops: a second thread only adds barriers
        for i in range(len(steps)):
            with torch.no_grad():
                for k in names:
                    tensors[k].copy_(snapshots[k][i])
            last = ipr_scores(snap, op, r=r, convention=convention, site=site_name)
            iprs.append(last.combined)
            parts = find_site(snap, site_name).parts
            norms.append(sum(x.detach().cpu().to(torch.float64).square().sum(-1)
                             for x in parts).sqrt())
    ipr, norm = torch.stack(iprs), torch.stack(norms)
    cut = classify_neurons(last).threshold if threshold is None else float(threshold)
    periodic = torch.nan_to_num(ipr, nan=-math.inf) >= cut  # dead neurons are never periodic
    width = ipr.shape[1]
    first = [int(np.flatnonzero(col)[0]) if col.any() else None
             for col in periodic.T.numpy()]
    fate, why = _fate(steps, ipr, norm, periodic, memorization)
    return NeuronDynamics(
        site=site_name, threshold=cut, steps=steps, ipr=ipr, norm=norm,
        periodic_fraction=tuple(float(c) / width for c in periodic.sum(1).tolist()),
        periodic_step=tuple(None if j is None else steps[j] for j in first),
        fate=fate, fate_reason=why,
    ), None


def _fate(steps: tuple[int, ...], ipr: Tensor, norm: Tensor, periodic: Tensor,
          memorization: Event) -> tuple[MemorizingFate | None, str | None]:
    if memorization.unknown:
        return None, (f"whether and when train accuracy reached 90% is unknown "
                      f"({memorization.reason.rstrip('.')}), so there is no step to take the "
                      "cohort at.")
    if memorization.step is None:
        return None, ("train accuracy never reached 90%, so the network never fit its "
                      "training set and there is no step to take the cohort at.")
    later = [i for i, s in enumerate(steps) if s >= memorization.step]
    if not later or later[0] == len(steps) - 1:
        return None, (f"no snapshot lies between the memorization step {memorization.step} "
                      "and the last one, so there is no fate to follow.")
    c, e = later[0], len(steps) - 1
    live = torch.isfinite(ipr[c])
    cohort = live & ~periodic[c]
    level = PRUNED * float(norm[c][live].median()) if live.any() else 0.0
    gone = ~torch.isfinite(ipr[e]) | (norm[e] <= level)
    return MemorizingFate(
        step=steps[c], final_step=steps[e], cohort=cohort, pruned=cohort & gone,
        memorizing=cohort & ~gone & ~periodic[e], periodic=cohort & ~gone & periodic[e],
        prune_level=level,
    ), None


def training_dynamics(
    history: Mapping[str, Sequence[float]],
    snapshots: Mapping[str, Tensor] | None = None,
    *,
    corrupt_frac: float,
    p: int,
    model: nn.Module | None = None,
    op: str = "add",
    threshold: float | None = None,
    r: float = 2.0,
    convention: str = "rfft",
    site: str | NeuronSite | None = None,
) -> Dynamics:
    """Read the training dynamics of a run from its history and weight snapshots.

    Args:
        history: the trainer's record (`Checkpoint.history`): "step", "train_acc",
            "test_acc" and the "norm_*" weight norms are read.
        snapshots: the weight snapshots (`Checkpoint.snapshots`: "step" and one stacked
            tensor per weight name), or None.
        corrupt_frac: xi, the corrupted fraction of the training set.
        p: the modulus (for the inversion level 1 - xi + xi/p).
        model: a model of the run's architecture; only its structure is used, the snapshots
            are loaded into a copy (needed for the per-neuron record).
        op: the task, for the Fourier basis of the IPR.
        threshold: the IPR at or above which a neuron is periodic; default: the neuron-class
            threshold (`classify_neurons`) of the last snapshot.
        r, convention: the IPR's exponent and Fourier convention (as `ipr_scores`).
        site: the neuron site (default: the model's primary one).

    Returns:
        A `Dynamics`; every event without a step carries a one-sentence reason.

    Example:
        >>> d = training_dynamics(ckpt.history, ckpt.snapshots, corrupt_frac=0.35, p=97,
        ...                       model=ckpt.model)
        >>> d.grokking.step, d.unlearning.step, d.neurons.periodic_fraction[-1]
    """
    if not 0.0 <= corrupt_frac < 1.0:
        raise ValueError(f"`corrupt_frac` must lie in [0, 1), got {corrupt_frac}.")
    if p < 2:
        raise ValueError(f"`p` must be at least 2, got {p}.")
    level = 1 - corrupt_frac + corrupt_frac / p if corrupt_frac > 0 else None
    raw_steps = history.get("step")
    if raw_steps is None or len(raw_steps) == 0:
        none = Event(None, reason="there is no training history (a model built in Python or "
                                  "trained outside mechmem's trainer).", unknown=True)
        memorization = grokking = train_peak = test_peak = unlearning = forgetting = none
        delay_reason: str | None = "there is no training history."
    else:
        steps = np.asarray([round(float(s)) for s in raw_steps], dtype=np.int64)
        train, train_why = _series(history, "train_acc", len(steps))
        test, test_why = _series(history, "test_acc", len(steps))
        if train is None:
            memorization = train_peak = unlearning = Event(None, reason=train_why, unknown=True)
        else:
            memorization = _first_at_least(steps, train, "train")
            train_peak, i = _peak(steps, train, "train")
            if level is None:
                unlearning = Event(None, reason="no label is corrupted (xi = 0), so there is "
                                                "nothing to unlearn.")
            elif i is None:
                unlearning = Event(None, reason=train_peak.reason, unknown=True)
            else:
                unlearning = _unlearning(steps, train, i, level)
        if test is None:
            grokking = test_peak = forgetting = Event(None, reason=test_why, unknown=True)
        else:
            grokking = _first_at_least(steps, test, "test")
            test_peak, j = _peak(steps, test, "test")
            forgetting = (Event(None, reason=test_peak.reason, unknown=True) if j is None
                          else _forgetting(history, steps, test, j))
        missing = [w for w, e in (("memorization", memorization), ("grokking", grokking))
                   if e.step is None]
        delay_reason = (None if not missing else
                        f"there is no {' and no '.join(missing)} step.")
    delay = (grokking.step - memorization.step
             if grokking.step is not None and memorization.step is not None else None)
    if model is None:
        neurons, neurons_reason = None, "no model was given to read the snapshots with."
    else:
        neurons, neurons_reason = _neurons(
            model, snapshots or {}, op, threshold=threshold, r=r, convention=convention,
            site=site, memorization=memorization)
    return Dynamics(
        memorization=memorization, grokking=grokking, delay=delay,
        delay_reason=None if delay is not None else delay_reason,
        train_peak=train_peak, test_peak=test_peak, inversion_level=level,
        unlearning=unlearning, forgetting=forgetting, neurons=neurons,
        neurons_reason=neurons_reason,
    )


def dynamics_dict(d: Dynamics) -> dict[str, Any]:
    """`d` as plain types for JSON (NaN as None): the events, the delay and the neuron
    record's per-snapshot and per-neuron lists (not the IPR and norm matrices)."""
    out: dict[str, Any] = {
        name: {"step": e.step, "value": e.value, "reason": e.reason, "status": e.status}
        for name, e in d.events().items()
    }
    out |= {"delay": d.delay, "delay_reason": d.delay_reason,
            "inversion_level": d.inversion_level, "neurons_reason": d.neurons_reason}
    n = d.neurons
    out["neurons"] = None if n is None else {
        "site": n.site, "threshold": n.threshold, "steps": list(n.steps),
        "periodic_fraction": list(n.periodic_fraction), "periodic_step": list(n.periodic_step),
        "fate": None if n.fate is None else {"step": n.fate.step,
                                             "final_step": n.fate.final_step,
                                             "prune_level": n.fate.prune_level,
                                             **n.fate.counts()},
        "fate_reason": n.fate_reason,
    }
    return out

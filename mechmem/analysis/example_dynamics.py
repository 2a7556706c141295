"""Per-example dynamics: when each training example was fitted, unlearned or inverted, and its
data map, from the margins a run with `track_examples=True` recorded at every evaluation."""

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from ..data import ModularDataset
from ._common import nan_to_none


@dataclass(frozen=True)
class ExampleDynamics:
    """Every training example's margins over training, when its label was won and lost, and its
    data map (Swayamdipta et al. 2020). Steps are NaN where the event never happened.

    Examples are in training-set order (aligned with `dataset.train_idx`); an example counts as
    predicting a label at an evaluation when that label's margin is positive there.

    Attributes:
        steps: the evaluated steps.
        margin: the trained label's logit minus the best other class's, per evaluation.
        true_margin: the same for the true label.
        corrupted: the trained label differs from the true one.
        fitted_step: the first step at which the trained label was predicted (for a corrupted
            example: the step it was first memorized).
        unlearned_step: the step from which the trained label, once predicted, was never
            predicted again up to the end.
        inverted_step: corrupted examples only: the step from which the true label was
            predicted up to the end (NaN for clean examples).
        confidence: the mean trained-label margin over the evaluations (the data map's
            confidence: with MSE training the logits are not probabilities, so the margin stands
            in for the trained label's probability).
        variability: the standard deviation of that margin over the evaluations.
        correctness: the share of evaluations at which the trained label was predicted.
    """

    steps: Int[Tensor, " evals"]
    margin: Float[Tensor, "evals train"]
    true_margin: Float[Tensor, "evals train"]
    corrupted: Bool[Tensor, " train"]
    fitted_step: Float[Tensor, " train"]
    unlearned_step: Float[Tensor, " train"]
    inverted_step: Float[Tensor, " train"]
    confidence: Float[Tensor, " train"]
    variability: Float[Tensor, " train"]
    correctness: Float[Tensor, " train"]

    def counts(self) -> dict[str, int]:
        """Of the corrupted examples: how many were ever memorized, then unlearned, and how
        many end inverted; of the clean ones, how many were ever fitted."""
        c = self.corrupted
        return {"corrupted": int(c.sum()),
                "memorized": int((c & ~self.fitted_step.isnan()).sum()),
                "unlearned": int((c & ~self.unlearned_step.isnan()).sum()),
                "inverted": int((c & ~self.inverted_step.isnan()).sum()),
                "clean": int((~c).sum()),
                "clean_fitted": int((~c & ~self.fitted_step.isnan()).sum())}


def example_dynamics(history: Mapping[str, Sequence[Any]], dataset: ModularDataset
                     ) -> ExampleDynamics:
    """Fitting, unlearning and inversion steps and the data map of every training example.

    Args:
        history: a run's history with the per-example margins of `TrainConfig(track_examples=
            True)` ("example_margin", "example_true_margin").
        dataset: the run's dataset.

    Returns:
        An `ExampleDynamics`.

    Raises:
        ValueError: the history has no per-example margins, or they do not fit the dataset.

    Example:
        >>> ckpt = train(TrainConfig(p=23, width=64, corrupt_frac=0.3, track_examples=True))
        >>> example_dynamics(ckpt.history, ckpt.dataset).counts()
    """
    if "example_margin" not in history or "example_true_margin" not in history:
        raise ValueError("This run's history has no per-example margins: train it with "
                         "TrainConfig(track_examples=True) (--track-examples).")
    steps = torch.as_tensor(list(history["step"]), dtype=torch.long)
    margin = torch.stack([torch.as_tensor(m) for m in history["example_margin"]]).double()
    true_margin = torch.stack([torch.as_tensor(m) for m in history["example_true_margin"]]
                              ).double()
    if margin.shape != (steps.numel(), dataset.n_train) or true_margin.shape != margin.shape:
        raise ValueError(f"The per-example margins have shape {tuple(margin.shape)} but the "
                         f"history has {steps.numel()} evaluations and the dataset "
                         f"{dataset.n_train} training examples: pass the run's own dataset.")
    corrupted = dataset.train_labels != dataset.train_true_labels
    hit = margin > 0
    hit_true = true_margin > 0
    at = steps.to(torch.float64)
    fitted = _first(hit, at)
    # From the step after which the label is never predicted again; only for examples fitted.
    lost = _first(_through_end(~hit), at)
    unlearned = torch.where(fitted.isnan(), torch.nan, lost)
    inverted = torch.where(corrupted, _first(_through_end(hit_true), at), torch.nan)
    return ExampleDynamics(
        steps=steps, margin=margin, true_margin=true_margin, corrupted=corrupted,
        fitted_step=fitted, unlearned_step=unlearned, inverted_step=inverted,
        confidence=margin.mean(0), variability=margin.std(0, correction=0),
        correctness=hit.to(torch.float64).mean(0))


def _through_end(x: Bool[Tensor, "evals train"]) -> Bool[Tensor, "evals train"]:
    """Whether x holds at this evaluation and every later one."""
    return x.flip(0).to(torch.int8).cumprod(0).flip(0).bool()


def _first(x: Bool[Tensor, "evals train"], steps: Float[Tensor, " evals"]
           ) -> Float[Tensor, " train"]:
    """The step of the first evaluation where x holds, per example; NaN where it never does."""
    first = x.to(torch.int8).argmax(0)
    return torch.where(x.any(0), steps[first], torch.nan)


def example_dynamics_dict(d: ExampleDynamics) -> dict[str, Any]:
    """Summary numbers for `analyze --json`."""
    c = d.corrupted

    def median(x: Tensor) -> float | None:
        x = x[~x.isnan()]
        return nan_to_none(float(x.median())) if x.numel() else None

    return {"evaluations": int(d.steps.numel()), "counts": d.counts(),
            "memorized_step_median": median(d.fitted_step[c]),
            "unlearned_step_median": median(d.unlearned_step[c]),
            "inverted_step_median": median(d.inverted_step[c]),
            "clean_fitted_step_median": median(d.fitted_step[~c]),
            "confidence_mean": {"corrupted": _mean(d.confidence[c]),
                                "clean": _mean(d.confidence[~c])},
            "variability_mean": {"corrupted": _mean(d.variability[c]),
                                 "clean": _mean(d.variability[~c])}}


def example_dynamics_lines(d: ExampleDynamics) -> list[str]:
    """The summary's line about the per-example dynamics."""
    j = example_dynamics_dict(d)
    c = j["counts"]

    def at(x: float | None) -> str:
        return "n/a" if x is None else f"{x:g}"

    return [f"           over training: {c['memorized']} of {c['corrupted']} corrupted examples"
            f" memorized (median step {at(j['memorized_step_median'])}), {c['unlearned']}"
            f" unlearned (median step {at(j['unlearned_step_median'])}), {c['inverted']}"
            f" inverted at the end"]


def _mean(x: Tensor) -> float | None:
    return nan_to_none(float(x.mean())) if x.numel() else nan_to_none(math.nan)

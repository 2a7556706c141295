"""`MemorizationResult`: counterfactual memorization scores from models trained on random halves."""

import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from ..data import ModularDataset
from ..train.config import TrainConfig


@dataclass(frozen=True, eq=False)
class MemorizationResult:
    """Feldman and Zhang's counterfactual memorization of every training example.

    For example i, mem_i = P(a model predicts its trained label | i was in the model's half)
    - P(same | i was held out), estimated over the K models; `stderr` is the standard error of
    that difference of two proportions. Examples are in training-set order.

    Attributes:
        config: the run every model repeats (model k with seed `config.seed + k`).
        dataset: the full training set the halves are drawn from.
        models: K.
        subset: the fraction of the training set each model trained on.
        in_subset: which examples each model trained on.
        prediction: each model's predicted class for every training example.
        out_logits: each example's logits averaged over the models that held it out (the
            out-of-sample predictions; NaN where no model held it out).
        score, stderr: mem_i and its standard error (NaN where an example was never in, or
            never out).
        p_in, p_out: the two probabilities; n_in, n_out: how many models had / held out each.
        path: the folder the models' results are kept in, if any.
    """

    config: TrainConfig
    dataset: ModularDataset
    models: int
    subset: float
    in_subset: Bool[Tensor, "models train"]
    prediction: Int[Tensor, "models train"]
    out_logits: Float[Tensor, "train p"]
    score: Float[Tensor, " train"] = field(init=False)
    stderr: Float[Tensor, " train"] = field(init=False)
    p_in: Float[Tensor, " train"] = field(init=False)
    p_out: Float[Tensor, " train"] = field(init=False)
    n_in: Int[Tensor, " train"] = field(init=False)
    n_out: Int[Tensor, " train"] = field(init=False)
    path: Path | None = None

    def __post_init__(self) -> None:
        correct = self.prediction == self.dataset.train_labels
        inn = self.in_subset
        n_in, n_out = inn.sum(0), (~inn).sum(0)
        p_in = (correct & inn).sum(0) / n_in.clamp_min(1)
        p_out = (correct & ~inn).sum(0) / n_out.clamp_min(1)
        p_in = torch.where(n_in > 0, p_in.double(), torch.nan)
        p_out = torch.where(n_out > 0, p_out.double(), torch.nan)
        var = p_in * (1 - p_in) / n_in + p_out * (1 - p_out) / n_out
        for name, value in (("score", p_in - p_out), ("stderr", var.sqrt()), ("p_in", p_in),
                            ("p_out", p_out), ("n_in", n_in), ("n_out", n_out)):
            object.__setattr__(self, name, value)

    def out_of_sample_votes(self) -> Float[Tensor, "train p"]:
        """Per example, the share of the models that held it out predicting each class (rows
        sum to 1; NaN rows where no model held it out): out-of-sample class probabilities."""
        p = self.dataset.p
        out = ~self.in_subset
        onehot = torch.nn.functional.one_hot(self.prediction.clamp_min(0), p).double()
        votes = (onehot * out[..., None]).sum(0) / self.n_out[:, None].clamp_min(1)
        votes[self.n_out == 0] = torch.nan
        return votes

    def summary(self) -> str:
        """Mean score of the corrupted and the clean examples, one line."""
        c = self.dataset.train_labels != self.dataset.train_true_labels

        def mean(x: Tensor) -> float:
            x = x[~x.isnan()]
            return float(x.mean()) if x.numel() else math.nan

        share = "halves" if self.subset == 0.5 else f"{self.subset:g}-subsets"
        return (f"{self.models} models on random {share} of {self.dataset.n_train} examples: "
                f"mean memorization {mean(self.score[c]):.3f} on the {int(c.sum())} corrupted, "
                f"{mean(self.score[~c]):.3f} on the {int((~c).sum())} clean "
                f"(median standard error {float(self.stderr.nanmedian()):.3f})")

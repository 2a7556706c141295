"""BatchNorm factors: does the network amplify its generalizing neurons and damp the others?"""

import math
from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor, nn

from ..models.sites import find_site
from .ipr import IPRResult
from .neurons import NeuronClasses


@dataclass(frozen=True)
class BatchNormResult:
    """Per-neuron BatchNorm scale factors beside IPR, and their correlations.

    Attributes:
        gamma_abs: |gamma_k|, the BatchNorm weight's magnitude.
        gain: gamma_k / sqrt(running_var_k + eps), the effective (signed) gain in eval mode.
        ipr: the combined IPR of each neuron (NaN for dead ones).
        pearson, spearman: correlation of |gamma| with IPR over live neurons (NaN when
            undefined: fewer than two neurons or a constant variable).
        pearson_gain, spearman_gain: the same for |gain|.
        gamma_abs_generalizing, gamma_abs_memorizing: mean |gamma| per neuron class (NaN
            without `classes` or for an empty class).
    """

    gamma_abs: Float[Tensor, " neurons"]
    gain: Float[Tensor, " neurons"]
    ipr: Float[Tensor, " neurons"]
    pearson: float
    spearman: float
    pearson_gain: float
    spearman_gain: float
    gamma_abs_generalizing: float
    gamma_abs_memorizing: float


def pearson(x: Float[Tensor, " n"], y: Float[Tensor, " n"]) -> float:
    """Pearson correlation; NaN if fewer than two points or either variable is constant."""
    x, y = x.to(torch.float64), y.to(torch.float64)
    if x.numel() < 2:
        return math.nan
    dx, dy = x - x.mean(), y - y.mean()
    denom = math.sqrt(float((dx * dx).sum()) * float((dy * dy).sum()))
    return float((dx * dy).sum()) / denom if denom > 0 else math.nan


def ranks(x: Float[Tensor, " n"]) -> Float[Tensor, " n"]:
    """Ranks 1..n, ties given the mean of the ranks they span."""
    order = torch.argsort(x, stable=True)
    sorted_x = x[order]
    n = x.numel()
    # Group equal values: each run of ties gets the average of its positions (1-based).
    new_run = torch.ones(n, dtype=torch.bool)
    new_run[1:] = sorted_x[1:] != sorted_x[:-1]
    run_id = new_run.cumsum(0) - 1
    pos = torch.arange(1, n + 1, dtype=torch.float64)
    n_runs = int(run_id[-1]) + 1 if n else 0
    run_sum = torch.zeros(n_runs, dtype=torch.float64).index_add_(0, run_id, pos)
    run_len = torch.zeros(n_runs, dtype=torch.float64).index_add_(0, run_id, torch.ones_like(pos))
    out = torch.empty(n, dtype=torch.float64)
    out[order] = (run_sum / run_len)[run_id]
    return out


def spearman(x: Float[Tensor, " n"], y: Float[Tensor, " n"]) -> float:
    """Spearman rank correlation: Pearson correlation of the (tie-averaged) ranks."""
    return pearson(ranks(x), ranks(y))


def _class_mean(x: Tensor, mask: Tensor) -> float:
    sel = x[mask]
    return float(sel.mean()) if sel.numel() else math.nan


def batchnorm_factors(
    model: nn.Module, ipr: IPRResult, *, classes: NeuronClasses | None = None
) -> BatchNormResult:
    """|gamma| and effective gain of each neuron's BatchNorm, and their correlation with IPR.

    Args:
        model: a model whose neuron site `ipr.site` is batch-normalized (`HookedMLP` or
            `HookedMLP3` with `norm="batchnorm"`).
        ipr: its per-neuron IPR.
        classes: optional neuron classes, for the mean |gamma| of each class.

    Returns:
        A `BatchNormResult`; neurons that are dead or have non-finite factors are left out of
        the correlations and class means.

    Raises:
        ValueError: the model has no BatchNorm.

    Example:
        >>> bn = batchnorm_factors(model, ipr_scores(model, "add"))
        >>> bn.pearson
    """
    norm = find_site(model, ipr.site).norm
    if not isinstance(norm, nn.BatchNorm1d):
        kind = getattr(getattr(model, "cfg", None), "norm", type(norm).__name__)
        raise ValueError(
            f"batchnorm_factors needs a model with BatchNorm (norm='batchnorm'), got norm={kind!r}."
        )
    if ipr.combined.shape[0] != norm.num_features:
        raise ValueError(
            f"IPR result has {ipr.combined.shape[0]} neurons but the model has {norm.num_features}."
        )
    n = norm.num_features
    ones = torch.ones(n, dtype=torch.float64)
    gamma = norm.weight.detach().cpu().to(torch.float64) if norm.affine else ones
    if norm.running_var is not None:
        var = norm.running_var.detach().cpu().to(torch.float64)
    else:  # track_running_stats=False: eval mode normalizes with batch statistics
        var = ones
    gain = gamma / torch.sqrt(var + norm.eps)
    score = ipr.combined.to(torch.float64)
    ok = ~ipr.dead_mask & torch.isfinite(gamma) & torch.isfinite(gain)
    g_abs = gamma.abs()
    return BatchNormResult(
        gamma_abs=g_abs,
        gain=gain,
        ipr=score,
        pearson=pearson(g_abs[ok], score[ok]),
        spearman=spearman(g_abs[ok], score[ok]),
        pearson_gain=pearson(gain[ok].abs(), score[ok]),
        spearman_gain=spearman(gain[ok].abs(), score[ok]),
        gamma_abs_generalizing=_class_mean(g_abs, ok & classes.generalizing_mask)
        if classes is not None else math.nan,
        gamma_abs_memorizing=_class_mean(g_abs, ok & classes.memorizing_mask)
        if classes is not None else math.nan,
    )

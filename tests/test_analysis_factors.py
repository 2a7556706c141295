"""BatchNorm factors, phases and corrupted-example logits."""

import math

import numpy as np
import pytest
import torch

from mechmem import HookedMLP, MLPConfig, analytic_solution, make_dataset
from mechmem.analysis import (
    AccuracyResult,
    batchnorm_factors,
    classify_neurons,
    classify_phase,
    corrupted_logits,
    ipr_scores,
)
from mechmem.analysis.batchnorm import pearson, ranks, spearman

pytestmark = pytest.mark.usefixtures("one_thread")


def _bn_model(width=12, seed=0):
    model = HookedMLP(MLPConfig(p=23, width=width, norm="batchnorm"), seed=seed)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        model.norm.weight.copy_(torch.randn(width, generator=gen))
        model.norm.running_var.copy_(torch.rand(width, generator=gen) + 0.1)
    return model


def test_batchnorm_factors_formulas_and_correlations():
    model = _bn_model()
    ipr = ipr_scores(model, "add")
    res = batchnorm_factors(model, ipr)
    gamma = model.norm.weight.detach().double()
    var = model.norm.running_var.double()
    torch.testing.assert_close(res.gamma_abs, gamma.abs())
    torch.testing.assert_close(res.gain, gamma / torch.sqrt(var + model.norm.eps))
    ref = np.corrcoef(gamma.abs().numpy(), ipr.combined.numpy())[0, 1]
    assert res.pearson == pytest.approx(ref, rel=1e-9)
    assert math.isnan(res.gamma_abs_generalizing)  # no classes given


def test_batchnorm_class_means_and_strong_correlation_with_ipr():
    # Analytic neurons (IPR 1) next to random ones (low IPR); gamma proportional to IPR.
    width = 20
    model = HookedMLP(MLPConfig(p=23, width=width, norm="batchnorm"), seed=0)
    good = analytic_solution(p=23, width=width)
    half = width // 2
    with torch.no_grad():
        model.U[:half] = good.U[:half]
        model.V[:half] = good.V[:half]
        model.W[:, :half] = good.W[:, :half]
    ipr = ipr_scores(model, "add")
    with torch.no_grad():
        model.norm.weight.copy_(0.05 * ipr.combined.float())
    classes = classify_neurons(ipr)
    res = batchnorm_factors(model, ipr, classes=classes)
    assert res.pearson == pytest.approx(1.0, abs=1e-6)
    assert res.spearman > 0.9  # float32 gamma ties some of the IPR-1 neurons
    assert res.gamma_abs_memorizing < res.gamma_abs_generalizing


def test_batchnorm_factors_need_batchnorm():
    model = HookedMLP(MLPConfig(p=23, width=4, norm="layernorm"))
    with pytest.raises(ValueError, match="needs a model with BatchNorm.*norm='layernorm'"):
        batchnorm_factors(model, ipr_scores(model, "add"))


def test_ranks_average_ties_and_spearman_is_rank_pearson():
    x = torch.tensor([10.0, 20.0, 20.0, 5.0, 20.0])
    assert ranks(x).tolist() == [2.0, 4.0, 4.0, 1.0, 4.0]
    y = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0])
    assert spearman(x, y) == pytest.approx(pearson(ranks(x), y))
    assert spearman(y, y**3) == pytest.approx(1.0)
    assert spearman(y, -torch.exp(y)) == pytest.approx(-1.0)
    assert math.isnan(pearson(torch.ones(4), y[:4])) and math.isnan(pearson(y[:1], y[:1]))


def _acc(train, test):
    return AccuracyResult(train=train, test=test, clean_train=math.nan,
                          corrupted_memorized=math.nan, corrupted_true=math.nan,
                          n_train=1, n_test=1, n_corrupted=1)


@pytest.mark.parametrize(
    "train, test, xi, history, phase",
    [
        (0.978, 0.983, 0.35, None, "coexistence"),
        (0.786, 1.0, 0.35, None, "partial_inversion"),
        (0.654, 1.0, 0.35, None, "full_inversion"),
        (0.71, 1.0, 0.35, None, "partial_inversion"),  # 1.05 - xi = 0.70
        (0.69, 1.0, 0.35, None, "full_inversion"),
        (1.0, 0.2, 0.35, None, "memorization"),
        (0.01, 0.01, 0.35, {"test_acc": [0.1, 0.99, 0.5]}, "forgetting"),
        (0.01, 0.01, 0.35, {"test_acc": [0.1, 0.5]}, "confusion"),
        (0.3, 0.2, 0.35, None, "confusion"),
        (0.89, 0.95, 0.1, None, "full_inversion"),  # 1.05 - xi = 0.95 lies above 0.9
    ],
)
def test_phase_table(train, test, xi, history, phase):
    res = classify_phase(_acc(train, test), xi, history)
    assert res.phase == phase
    assert f"{test:.1%}" in res.reason


def test_phase_rejects_bad_input():
    with pytest.raises(ValueError, match="corrupt_frac"):
        classify_phase(_acc(1.0, 1.0), 1.5)
    with pytest.raises(ValueError, match="finite train and test"):
        classify_phase(_acc(math.nan, 1.0), 0.1)


def test_corrupted_logits_read_the_right_entries():
    model = HookedMLP(MLPConfig(p=23, width=32), seed=2)
    ds = make_dataset(p=23, train_frac=0.6, corrupt_frac=0.4, seed=3)
    res = corrupted_logits(model, ds)
    differs = ds.corrupted & (ds.train_labels != ds.train_true_labels)
    assert res.index.tolist() == torch.nonzero(differs).squeeze(1).tolist()
    assert int(differs.sum()) < ds.n_corrupted  # some random labels hit the true one
    with torch.no_grad():
        logits = model(ds.train_pairs[res.index]).double()
    lab, true = ds.train_labels[res.index], ds.train_true_labels[res.index]
    torch.testing.assert_close(res.corrupted_label_logit, logits[torch.arange(len(lab)), lab])
    torch.testing.assert_close(res.true_label_logit, logits[torch.arange(len(lab)), true])
    masked = logits.clone()
    masked[torch.arange(len(lab)), lab] = -torch.inf
    masked[torch.arange(len(lab)), true] = -torch.inf
    torch.testing.assert_close(res.max_other_logit, masked.amax(1))
    assert res.frac_corrupted_wins == pytest.approx((res.margin > 0).double().mean().item())


def test_corrupted_logits_without_corruption():
    model = HookedMLP(MLPConfig(p=23, width=8))
    res = corrupted_logits(model, make_dataset(p=23, train_frac=0.5))
    assert res.index.numel() == 0 and math.isnan(res.frac_corrupted_wins)

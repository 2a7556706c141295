"""Ablation and pruning curves, on a small network that both memorizes and generalizes."""

import copy

import pytest
import torch
from _analysis_train import train_full_batch

from mechmem import HookedMLP, MLPConfig, make_dataset
from mechmem.analysis import (
    ablate,
    accuracies,
    classify_neurons,
    ipr_scores,
    pruning_curves,
)
from mechmem.analysis.accuracy import METRICS
from mechmem.analysis.pruning import removal_counts

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def coexisting():
    """p = 41, alpha 0.6, xi 0.2, light weight decay: memorizes its corrupted labels and
    generalizes (train and test both >= 90%), with a bimodal IPR."""
    model, ds = train_full_batch(p=41, width=128, alpha=0.6, xi=0.2, wd=0.3, steps=800)
    return model, ds, ipr_scores(model, "add")


def _pruned_copy(model, neurons):
    clone = copy.deepcopy(model)
    with torch.no_grad():
        clone.U[neurons] = 0
        clone.V[neurons] = 0
        clone.W[:, neurons] = 0
    return clone


def test_fixture_is_in_the_coexistence_phase(coexisting):
    model, ds, ipr = coexisting
    acc = accuracies(model, ds)
    assert acc.train >= 0.9 and acc.test >= 0.9 and acc.corrupted_memorized >= 0.8
    classes = classify_neurons(ipr)
    assert classes.method == "otsu"
    assert classes.generalizing > 20 and classes.memorizing > 20


def test_accuracies_match_a_direct_count(coexisting):
    model, ds, _ = coexisting
    acc = accuracies(model, ds)
    with torch.no_grad():
        pred = model(ds.train_pairs).argmax(-1)
        test_pred = model(ds.test_pairs).argmax(-1)
    c = ds.corrupted
    assert acc.train == pytest.approx((pred == ds.train_labels).double().mean().item())
    assert acc.test == pytest.approx((test_pred == ds.test_labels).double().mean().item())
    assert acc.clean_train == pytest.approx(
        (pred[~c] == ds.train_labels[~c]).double().mean().item())
    assert acc.corrupted_memorized == pytest.approx(
        (pred[c] == ds.train_labels[c]).double().mean().item())
    assert acc.corrupted_true == pytest.approx(
        (pred[c] == ds.train_true_labels[c]).double().mean().item())
    assert (acc.n_train, acc.n_corrupted) == (ds.n_train, ds.n_corrupted)


def test_zero_ablation_equals_pruning_the_weights_and_leaves_the_model_untouched(coexisting):
    model, ds, _ = coexisting
    before = {k: v.clone() for k, v in model.state_dict().items()}
    neurons = [0, 5, 17, 100]
    with ablate(model, neurons) as m:
        ablated = m(ds.pairs)
    torch.testing.assert_close(ablated, _pruned_copy(model, neurons)(ds.pairs))
    assert model.list_hooks() == {}
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])
    assert not torch.allclose(model(ds.pairs), ablated)


def test_ablation_hook_is_removed_after_an_error(coexisting):
    model, ds, _ = coexisting
    with pytest.raises(RuntimeError, match="boom"):
        with ablate(model, torch.tensor([1, 2])):
            raise RuntimeError("boom")
    assert model.list_hooks() == {}


def test_mean_ablation_of_every_neuron_makes_the_output_constant(coexisting):
    model, ds, _ = coexisting
    everything = torch.ones(model.cfg.width, dtype=torch.bool)
    with ablate(model, everything, how="mean", dataset=ds):
        _, cache = model.run_with_cache(ds.pairs, names_filter="hook_normed")
        logits = model(ds.pairs)
    _, clean = model.run_with_cache(ds.train_pairs, names_filter="hook_normed")
    torch.testing.assert_close(cache["hook_normed"][0], clean["hook_normed"].mean(0))
    torch.testing.assert_close(logits, logits[:1].expand_as(logits))


def test_ablation_rejects_bad_input(coexisting):
    model, ds, _ = coexisting
    with pytest.raises(ValueError, match="out of range"):
        with ablate(model, [128]):
            pass
    with pytest.raises(ValueError, match="needs `dataset=`"):
        with ablate(model, [1], how="mean"):
            pass
    with pytest.raises(ValueError, match="'zero' or 'mean'"):
        with ablate(model, [1], how="max"):
            pass


def test_fast_pruning_equals_ablated_forward_passes(coexisting):
    model, ds, ipr = coexisting
    fast = pruning_curves(model, ds, ipr, seed=3)
    slow = pruning_curves(model, ds, ipr, seed=3, method="forward")
    assert (fast.method, slow.method) == ("fast", "forward")
    for name, curve in fast.curves.items():
        ref = slow.curves[name]
        assert torch.equal(curve.order, ref.order)
        for m in METRICS:
            # Identical up to a rare float tie-break: at most one example apart anywhere.
            assert (getattr(curve, m) - getattr(ref, m)).abs().max() <= 1 / ds.n_corrupted


def test_pruning_points_match_real_pruned_networks(coexisting):
    model, ds, ipr = coexisting
    curve = pruning_curves(model, ds, ipr, resolution=None).curves["ipr_ascending"]
    assert curve.removed.tolist() == list(range(129))
    for k in (0, 1, 40, 64, 127, 128):
        acc = accuracies(_pruned_copy(model, curve.order[:k]), ds)
        for m in METRICS:
            assert getattr(curve, m)[k] == pytest.approx(getattr(acc, m), abs=1 / ds.n_corrupted)


def test_pruning_orders_and_the_science(coexisting):
    model, ds, ipr = coexisting
    res = pruning_curves(model, ds, ipr, seed=0)
    asc, desc, rnd = (res.curves[k] for k in ("ipr_ascending", "ipr_descending", "random"))
    assert bool((ipr.combined[asc.order].diff() >= 0).all())
    assert torch.equal(desc.order, asc.order.flip(0)) or bool(
        (ipr.combined[desc.order].diff() <= 0).all())
    assert sorted(rnd.order.tolist()) == list(range(128))
    other_seed = pruning_curves(model, ds, ipr, seed=1).curves["random"]
    assert rnd.order.tolist() != other_seed.order.tolist()
    assert len(asc.fraction) == 101 and asc.fraction[0] == 0 and asc.fraction[-1] == 1
    assert torch.equal(asc.fraction, asc.removed / 128)
    # Low-IPR neurons carry the memorization, high-IPR ones the rule.
    half = asc.at(0.5)
    assert half["corrupted_memorized"] < 0.2 and half["test"] > 0.9
    assert desc.at(0.5)["test"] < 0.5
    assert desc.at(0.3)["test"] < rnd.at(0.3)["test"] <= asc.at(0.3)["test"]


@pytest.mark.parametrize(
    ("width", "resolution", "counts"),
    [
        (500, 100, list(range(0, 501, 5))),
        (128, 4, [0, 32, 64, 96, 128]),
        (10, 4, [0, 3, 5, 8, 10]),  # ceil(i N / resolution): 2.5 -> 3, 7.5 -> 8
        (128, 100, sorted({-(-i * 128 // 100) for i in range(101)})),
        (100, 100, list(range(101))),
        (60, 100, list(range(61))),
        (7, None, list(range(8))),
    ],
)
def test_removal_counts(width, resolution, counts):
    assert removal_counts(width, resolution) == counts


@pytest.mark.parametrize("bad", [0, -3, True])
def test_removal_counts_rejects_a_bad_resolution(bad):
    with pytest.raises(ValueError, match=f"`resolution` must be a positive integer or None, "
                                         f"got {bad!r}"):
        removal_counts(50, bad)


def test_a_curve_at_every_percent_is_the_full_curve_at_its_points(coexisting):
    model, ds, ipr = coexisting
    full = pruning_curves(model, ds, ipr, seed=2, resolution=None)
    grid = pruning_curves(model, ds, ipr, seed=2)
    for name, curve in grid.curves.items():
        ref = full.curves[name]
        assert curve.removed.tolist() == removal_counts(128, 100)
        assert torch.equal(curve.fraction, ref.fraction[curve.removed])
        for m in METRICS:
            assert (getattr(curve, m) - getattr(ref, m)[curve.removed]).abs().max() \
                <= 1 / ds.n_corrupted
        for i in range(101):  # what the summary and the report read
            assert curve.at(i / 100)["fraction"] == ref.at(i / 100)["fraction"]


def test_sparse_points_equal_ablated_forward_passes_at_the_same_points():
    # width 300 at resolution 150: two neurons between points, 151 points, so the running
    # logits also pass two exact recomputations (every 64 points).
    model, ds = train_full_batch(p=31, width=300, alpha=0.6, xi=0.2, wd=0.3, steps=300)
    ipr = ipr_scores(model, "add")
    fast = pruning_curves(model, ds, ipr, resolution=150)
    slow = pruning_curves(model, ds, ipr, resolution=150, method="forward")
    assert (fast.method, slow.method) == ("fast", "forward")
    for name, curve in fast.curves.items():
        ref = slow.curves[name]
        assert curve.removed.tolist() == list(range(0, 301, 2)) == ref.removed.tolist()
        for m in METRICS:
            assert (getattr(curve, m) - getattr(ref, m)).abs().max() <= 1 / ds.n_corrupted
        k = int(curve.removed[40])
        acc = accuracies(_pruned_copy(model, curve.order[:k]), ds)
        for m in METRICS:
            assert getattr(curve, m)[40] == pytest.approx(getattr(acc, m), abs=1 / ds.n_corrupted)


@pytest.mark.parametrize("norm", ["batchnorm", "layernorm"])
def test_fast_pruning_is_exact_with_normalization(norm):
    model, ds = train_full_batch(p=23, width=48, alpha=0.6, xi=0.2, wd=0.5, steps=150, norm=norm)
    ipr = ipr_scores(model, "add")
    fast = pruning_curves(model, ds, ipr, method="fast").curves["random"]
    for k in (0, 7, 24, 47, 48):
        with ablate(model, fast.order[:k]):
            acc = accuracies(model, ds)
        for m in METRICS:
            assert getattr(fast, m)[k] == pytest.approx(getattr(acc, m), abs=1 / ds.n_corrupted)


def test_pruning_restores_train_mode_and_checks_sizes():
    model = HookedMLP(MLPConfig(p=23, width=16, norm="batchnorm", dropout=0.5), seed=0)
    ds = make_dataset(p=23, train_frac=0.5, corrupt_frac=0.1)
    model.train()
    res = pruning_curves(model, ds, ipr_scores(model, "add"))
    assert model.training and model.norm.training and model.dropout.training
    assert res.curves["random"].train.shape == (17,)
    other = ipr_scores(HookedMLP(MLPConfig(p=23, width=8)), "add")
    with pytest.raises(ValueError, match="8 neurons but the model has 16"):
        pruning_curves(model, ds, other)


def test_fast_pruning_one_neuron_at_a_time_on_a_large_task():
    # p = 103: p^3 logits exceed one block, so the fast path takes rank-1 steps.
    model = HookedMLP(MLPConfig(p=103, width=24), seed=5)
    ds = make_dataset(p=103, train_frac=0.5, corrupt_frac=0.3, seed=1)
    curve = pruning_curves(model, ds, ipr_scores(model, "add")).curves["ipr_descending"]
    for k in (0, 1, 13, 23, 24):
        acc = accuracies(_pruned_copy(model, curve.order[:k]), ds)
        for m in METRICS:
            assert getattr(curve, m)[k] == pytest.approx(getattr(acc, m), abs=1 / ds.n_corrupted)

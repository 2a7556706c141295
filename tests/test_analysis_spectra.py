"""Fourier, IPR and neuron classes: oracles, invariants, and every operation."""

import math

import numpy as np
import pytest
import torch
from _analysis_train import train_full_batch

from mechmem import HookedMLP, MLPConfig, analytic_solution
from mechmem.analysis import classify_neurons, fourier, ipr_scores
from mechmem.analysis.ipr import _reference_levels, reference_levels
from mechmem.analysis.neurons import otsu_threshold
from mechmem.data import OPERATIONS, primitive_root

pytestmark = pytest.mark.usefixtures("one_thread")

OPS = tuple(OPERATIONS)



def test_fourier_power_matches_numpy_rfft_for_addition():
    model = HookedMLP(MLPConfig(p=23, width=8), seed=3)
    res = fourier(model, "add")
    for name, w in (("U", model.U), ("V", model.V), ("W", model.W.T)):
        ref = np.abs(np.fft.rfft(w.detach().double().numpy(), axis=1)) ** 2
        np.testing.assert_allclose(getattr(res, f"power_{name}").numpy(), ref, rtol=1e-9)
    assert res.freqs.tolist() == list(range(12))


def test_fourier_uses_discrete_log_for_multiplication():
    p = 23
    model = HookedMLP(MLPConfig(p=p, width=4), seed=1)
    g = primitive_root(p)
    log_order = [pow(g, k, p) for k in range(p - 1)]  # residue at each log position
    ref = np.abs(np.fft.rfft(model.U.detach().double().numpy()[:, log_order], axis=1)) ** 2
    np.testing.assert_allclose(fourier(model, "mul").power_U.numpy(), ref, rtol=1e-9)


@pytest.mark.parametrize("convention", ["rfft", "dft"])
def test_fourier_of_analytic_solution(convention):
    p, width = 31, 45
    res = fourier(analytic_solution(p=p, width=width, seed=2), "add", convention=convention)
    expected = torch.arange(width) % 15 + 1  # analytic_solution's frequency of each neuron
    assert torch.equal(res.dominant_freq, expected)
    torch.testing.assert_close(res.dominant_power_frac, torch.ones(width, dtype=torch.float64))
    assert res.phase_relation.abs().max() < 1e-5  # float32 weights
    assert res.freq_counts.tolist() == [0] + [3] * 15 + [0] * (len(res.freqs) - 16)


@pytest.mark.parametrize("op", OPS)
def test_analytic_solution_scores_the_periodic_reference_for_every_op(op):
    model = analytic_solution(p=23, width=40, op=op)
    res = ipr_scores(model, op)
    assert res.dead == 0
    assert res.mean == pytest.approx(res.reference_periodic, rel=0.05)
    if op != "sq_sum":
        # Pure cosines in the task's coordinates: IPR 1 under rfft, 1/2 under the full DFT.
        assert res.mean == pytest.approx(1.0, abs=1e-9)
        assert ipr_scores(model, op, convention="dft").mean == pytest.approx(0.5, abs=1e-9)
    else:
        # Inputs enter through r^2: the transform is not orthogonal and U, V score low.
        assert res.W.mean() == pytest.approx(1.0, abs=1e-9)
        assert 0.15 < res.U.mean() < 0.4
    classes = classify_neurons(res)
    assert classes.generalizing == 40 and classes.method == "reference"


@pytest.mark.parametrize("op", OPS)
def test_a_generalizing_network_scores_high_ipr_whatever_its_operation(op):
    model, ds = train_full_batch(op=op, p=31, width=96, wd=1.0, steps=400)
    acc = (model(ds.test_pairs).argmax(-1) == ds.test_labels).float().mean()
    assert acc > 0.95, "the network must generalize for this test to mean anything"
    trained = ipr_scores(model, op)
    untrained = ipr_scores(HookedMLP(MLPConfig(p=31, width=96), seed=1), op)
    assert trained.mean > 0.75 * trained.reference_periodic
    assert trained.mean > 3 * untrained.mean
    assert classify_neurons(trained).generalizing > 0.6 * 96
    assert classify_neurons(untrained).generalizing == 0
    if op in ("mul", "div"):
        # In the plain residue basis the same network looks unstructured.
        assert ipr_scores(model, "add").mean < 2 * untrained.mean


def test_ipr_exponent_and_convention_are_recorded():
    model = analytic_solution(p=23, width=11)
    res = ipr_scores(model, "add", r=3.0, convention="dft")
    assert (res.r, res.convention) == (3.0, "dft")
    assert res.mean == pytest.approx(0.25, abs=1e-9)  # 2 * (1/2)^3 over the pair +-s
    with pytest.raises(ValueError, match="greater than 1"):
        ipr_scores(model, "add", r=1.0)
    with pytest.raises(ValueError, match="'rfft' or 'dft'"):
        fourier(model, "add", convention="fft")


def test_ipr_lies_between_its_bounds_for_random_weights():
    res = ipr_scores(HookedMLP(MLPConfig(p=29, width=64), seed=4), "add")
    for part in (res.U, res.V, res.W):
        assert bool(((part > 1 / 15 - 1e-12) & (part <= 1 + 1e-12)).all())
    assert abs(res.mean - res.reference_random) < 0.05


def test_otsu_finds_the_gap_of_a_bimodal_sample():
    gen = torch.Generator().manual_seed(0)
    low = 0.1 + 0.03 * torch.rand(60, generator=gen)
    high = 0.8 + 0.1 * torch.rand(40, generator=gen)
    cut, mu0, mu1 = otsu_threshold(torch.cat([high, low]))
    assert float(low.max()) < cut < float(high.min())
    assert mu0 == pytest.approx(float(low.mean())) and mu1 == pytest.approx(float(high.mean()))
    assert all(math.isnan(v) for v in otsu_threshold(torch.full((5,), 0.3)))


def test_user_threshold_overrides_the_automatic_one():
    model = HookedMLP(MLPConfig(p=23, width=50), seed=0)
    res = ipr_scores(model, "add")
    auto = classify_neurons(res)
    assert auto.method == "reference" and auto.generalizing == 0
    t = float(res.combined.median())
    user = classify_neurons(res, threshold=t)
    assert (user.method, user.threshold) == ("user", t)
    assert user.generalizing == int((res.combined >= t).sum())
    assert user.generalizing + user.memorizing + user.dead == 50
    with pytest.raises(ValueError, match="finite"):
        classify_neurons(res, threshold=math.nan)


@pytest.mark.parametrize(("op", "p", "convention", "parts"), [
    ("add", 23, "rfft", ("a", "b", "out")),
    ("mul", 23, "dft", ("a", "b", "out")),
    ("sq_sum", 19, "rfft", ("a", "out")),
    ("add", 2, "rfft", ("out",)),
])
def test_cached_reference_levels_equal_fresh_ones(op, p, convention, parts):
    fresh = _reference_levels.__wrapped__(op, p, 2.0, convention, parts)
    first = reference_levels(op, p, convention=convention, parts=parts)
    hits = _reference_levels.cache_info().hits
    again = reference_levels(op, p, convention=convention, parts=parts)
    assert _reference_levels.cache_info().hits == hits + 1
    assert first == again == fresh
    assert all(math.isfinite(x) for x in fresh)
    # Another exponent or convention is another key, not a stale hit.
    other = reference_levels(op, p, r=3.0, convention=convention, parts=parts)
    assert other == _reference_levels.__wrapped__(op, p, 3.0, convention, parts) != fresh


def test_reference_levels_cache_is_bounded():
    for p in (5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71, 73, 79,
              83, 89, 97, 101, 103, 107, 109, 113, 127, 131, 137, 139, 149, 151):
        reference_levels("add", p)
    info = _reference_levels.cache_info()
    assert info.maxsize == 32 and info.currsize == 32


def test_ipr_scores_give_the_reference_levels_of_their_site():
    model = HookedMLP(MLPConfig(p=23, width=8), seed=0)
    res = ipr_scores(model, "sub", r=2.5, convention="dft")
    fresh = _reference_levels.__wrapped__("sub", 23, 2.5, "dft", ("a", "b", "out"))
    assert (res.reference_random, res.reference_periodic) == fresh

"""Neuron frequencies from activations: the projection formula against a full 2-D NumPy DFT."""

import numpy as np
import pytest
import torch

from mechmem import analytic_solution, make_dataset
from mechmem.analysis import frequencies, neuron_frequencies
from mechmem.analysis.frequencies import frequency_power
from mechmem.data import OPERATIONS, task_coordinates

pytestmark = pytest.mark.usefixtures("one_thread")


def _numpy_frequency_power(acts, pairs, op, p):
    """The definition, written out: each cell's mean activation on the P x P coordinate grid,
    centered over the filled cells, its full 2-D DFT, and for each k the power on rows and
    columns {0, k, P - k} (less the constant term) over the total."""
    coords = task_coordinates(op, p)
    P = coords.period
    a, b = coords.a[pairs[:, 0]].numpy(), coords.b[pairs[:, 1]].numpy()
    acts = acts.double().numpy()
    n = acts.shape[1]
    total = np.zeros((P, P, n))
    count = np.zeros((P, P))
    for i in range(len(a)):
        if a[i] >= 0 and b[i] >= 0:
            total[a[i], b[i]] += acts[i]
            count[a[i], b[i]] += 1
    filled = count > 0
    grid = np.where(filled[..., None], total / np.maximum(count, 1)[..., None], 0.0)
    grid = np.where(filled[..., None], grid - grid[filled].mean(0), 0.0)
    power = np.abs(np.fft.fft2(grid, axes=(0, 1))) ** 2  # (P, P, neurons)
    power[0, 0] = 0.0
    out = np.zeros((n, P // 2 + 1))
    for k in range(1, P // 2 + 1):
        idx = sorted({0, k, (P - k) % P})
        out[:, k] = power[np.ix_(idx, idx)].sum((0, 1))
    tot = power.sum((0, 1))
    return np.where(tot[:, None] > 0, out / np.maximum(tot, 1e-300)[:, None], 0.0)


@pytest.mark.parametrize("op", OPERATIONS)
@pytest.mark.parametrize("p", [2, 3, 7, 11, 13])
def test_frequency_power_matches_the_full_2d_dft(op, p):
    # mul/div: the period p - 1 is even (k = P/2 is its own mirror) and residue 0 is off the
    # grid; sq_sum: several pairs share a cell and some cells stay empty.
    ds = make_dataset(p=p, op=op)
    gen = torch.Generator().manual_seed(p)
    acts = torch.randn(ds.pairs.shape[0], 5, generator=gen, dtype=torch.float64)
    acts[:, 1] = 2.5  # constant: no variance anywhere
    acts[:, 2] = acts[:, 3] ** 2  # not centered
    ours = frequency_power(acts, ds.pairs, op, p)
    ref = _numpy_frequency_power(acts, ds.pairs, op, p)
    assert ours.shape == ref.shape == (5, task_coordinates(op, p).period // 2 + 1)
    np.testing.assert_allclose(ours.numpy(), ref, rtol=1e-10, atol=1e-12)
    assert bool((ours[:, 0] == 0).all())


def test_frequency_power_of_float32_activations_of_a_large_task():
    ds = make_dataset(p=53)
    acts = torch.randn(ds.pairs.shape[0], 7, generator=torch.Generator().manual_seed(0))
    ours = frequency_power(acts, ds.pairs, "add", 53)
    np.testing.assert_allclose(ours.numpy(), _numpy_frequency_power(acts, ds.pairs, "add", 53),
                               rtol=1e-10, atol=1e-12)
    # A function of a plus a function of b has power on the axes only, which the frequencies
    # share out completely.
    separable = acts[ds.pairs[:, 0], :] + 2 * acts[ds.pairs[:, 1] * 53, :]
    torch.testing.assert_close(frequency_power(separable, ds.pairs, "add", 53).sum(1),
                               torch.ones(7, dtype=torch.float64))


def test_frequency_power_leaves_its_input_alone():
    ds = make_dataset(p=11, op="sq_sum")
    acts = torch.randn(ds.pairs.shape[0], 3, dtype=torch.float64)
    before = acts.clone()
    frequency_power(acts, ds.pairs, "sq_sum", 11)
    assert torch.equal(acts, before)


def test_neuron_frequencies_of_the_analytic_solution():
    model = analytic_solution(p=31, width=45)
    freq = neuron_frequencies(model, make_dataset(p=31))
    assert freq.key_freq.tolist() == [k % 15 + 1 for k in range(45)]
    assert freq.freq_counts.tolist() == [0] + [3] * 15
    assert not bool(freq.dead.any())


def test_frequency_power_in_blocks_of_neurons_is_the_same(monkeypatch):
    ds = make_dataset(p=13, op="sq_sum")
    acts = torch.randn(ds.pairs.shape[0], 7, generator=torch.Generator().manual_seed(1))
    whole = frequency_power(acts, ds.pairs, "sq_sum", 13)
    monkeypatch.setattr(frequencies, "_NEURON_BLOCK", 3)
    assert frequencies.frequency_power is frequency_power
    torch.testing.assert_close(frequency_power(acts, ds.pairs, "sq_sum", 13), whole,
                               rtol=1e-14, atol=1e-15)

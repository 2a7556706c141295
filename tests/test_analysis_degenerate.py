"""Dead, NaN and inf neurons: counted as such, never a crash, never a NaN inside an average."""

import json
import math

import pytest
import torch

from mechmem import HookedMLP, MLPConfig, analyze, make_dataset
from mechmem.analysis import (
    accuracies,
    classify_neurons,
    fourier,
    ipr_scores,
    pruning_curves,
)
from mechmem.analysis.accuracy import METRICS

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def broken():
    """Width 10: neuron 1 all zero, neuron 2 with a zero W column, 3 with a NaN, 4 with +inf."""
    model = HookedMLP(MLPConfig(p=23, width=10), seed=0)
    with torch.no_grad():
        model.U[1] = 0
        model.V[1] = 0
        model.W[:, 1] = 0
        model.W[:, 2] = 0
        model.U[3, 5] = math.nan
        model.V[4, 0] = math.inf
    return model, make_dataset(p=23, train_frac=0.5, corrupt_frac=0.2, seed=0)


def test_dead_neurons_are_counted_not_averaged(broken):
    model, _ = broken
    res = ipr_scores(model, "add")
    assert res.dead == 4 and res.nonfinite == 2
    assert res.dead_mask.tolist() == [False, True, True, True, True] + [False] * 5
    assert math.isfinite(res.mean)
    assert res.mean == pytest.approx(float(res.combined[~res.dead_mask].mean()))
    classes = classify_neurons(res)
    assert classes.dead == 4 and classes.labels[1:5] == ("dead",) * 4
    assert classes.generalizing + classes.memorizing == 6
    f = fourier(model, "add")
    assert f.dominant_freq[1:5].tolist() == [-1] * 4
    assert int(f.freq_counts.sum()) == 6
    assert bool(torch.isfinite(f.dominant_power_frac[~f.dead]).all())


def test_nan_weights_make_wrong_predictions_and_pruning_takes_the_forward_path(broken):
    model, ds = broken
    acc = accuracies(model, ds)
    assert all(math.isfinite(getattr(acc, m)) for m in METRICS)
    res = pruning_curves(model, ds, ipr_scores(model, "add"))
    assert res.method == "forward"
    asc = res.curves["ipr_ascending"]
    assert set(asc.order[:4].tolist()) == {1, 2, 3, 4}  # dead neurons go first
    # Rows with a NaN or inf logit count as wrong; once those neurons are gone the curve
    # is the accuracy of the repaired network.
    assert asc.train[0] == pytest.approx(acc.train)
    repaired = HookedMLP(model.cfg)
    repaired.load_state_dict(model.state_dict())
    with torch.no_grad():
        for w in (repaired.U, repaired.V):
            w[1:5] = 0
        repaired.W[:, 1:5] = 0
    assert asc.train[4] == pytest.approx(accuracies(repaired, ds).train)
    assert asc.train[4] > asc.train[0]
    for curve in res.curves.values():
        for m in METRICS:
            assert bool(torch.isfinite(getattr(curve, m)).all())
    with pytest.raises(ValueError, match="method='forward'"):
        pruning_curves(model, ds, ipr_scores(model, "add"), method="fast")


@pytest.mark.parametrize("norm", ["none", "batchnorm", "layernorm"])
def test_an_all_zero_model_analyzes_to_valid_json(norm):
    model = HookedMLP(MLPConfig(p=23, width=6, norm=norm), seed=0)
    with torch.no_grad():
        for w in (model.U, model.V, model.W):
            w.zero_()
    ds = make_dataset(p=23, train_frac=0.5, corrupt_frac=0.2, seed=0)
    a = analyze(model, ds)
    assert a.ipr.dead == 6 and math.isnan(a.ipr.mean)
    assert a.neurons.dead == 6 and a.neurons.generalizing == 0
    text = json.dumps(a.to_json_dict(), allow_nan=False)
    assert '"mean": null' in text
    assert "dead" in a.summary()
    # Every logit is 0: argmax picks class 0, so accuracy is the share of label 0.
    assert a.accuracy.test == pytest.approx(float((ds.test_labels == 0).double().mean()))

"""Per-example attribution: exact margins per neuron, holding sets, statuses, every family."""

import pytest
import torch
from _analysis_train import train_full_batch

from mechmem import (
    HookedMLP,
    HookedMLP3,
    HookedTransformer,
    MLP3Config,
    MLPConfig,
    TransformerConfig,
    make_dataset,
)
from mechmem.analysis import ablate, analyze, classify_neurons, examples, ipr_scores
from mechmem.analysis.examples import STATUSES, examples_dict, examples_lines
from mechmem.metrics import predict

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def coexisting():
    """p = 41, alpha 0.6, xi 0.2, light weight decay: memorizes its corrupted labels and
    generalizes, with a bimodal IPR."""
    model, ds = train_full_batch(p=41, width=128, alpha=0.6, xi=0.2, wd=0.3, steps=800)
    return model, ds, examples(model, ds)


def test_contributions_sum_to_the_margin(coexisting):
    model, ds, ex = coexisting
    with torch.no_grad():
        logits = model(ds.train_pairs).double()
    y, r = ds.train_labels, ex.runner_up
    margin = logits.gather(1, y[:, None])[:, 0] - logits.gather(1, r[:, None])[:, 0]
    torch.testing.assert_close(ex.margin, margin)
    torch.testing.assert_close(ex.contributions.sum(1) + ex.rest, margin, atol=1e-5, rtol=1e-5)
    assert ex.exact
    assert ex.rest.abs().max() == 0  # no bias: the neurons hold the whole margin
    # The runner-up is the best class other than the trained label.
    others = logits.scatter(1, y[:, None], -torch.inf)
    assert torch.equal(others.argmax(1), r)


def test_statuses_match_the_predictions(coexisting):
    model, ds, ex = coexisting
    with torch.no_grad():
        pred = predict(model(ds.train_pairs))
    y, t = ds.train_labels, ds.train_true_labels
    status = list(ex.status)
    for i in range(ds.n_train):
        if y[i] != t[i]:
            want = "memorized" if pred[i] == y[i] else "inverted" if pred[i] == t[i] else "neither"
        else:
            want = "fitted" if pred[i] == y[i] else "missed"
        assert status[i] == want
    c = ex.counts()
    assert set(c) == set(STATUSES) and sum(c.values()) == ds.n_train
    assert c["memorized"] > 0.8 * int(ds.mislabelled.sum())
    assert ex.memorized.tolist() == [i for i, s in enumerate(status) if s == "memorized"]
    assert (ex.margin[ex.memorized] > 0).all()


def test_holding_sets_are_the_smallest_reaching_the_fraction(coexisting):
    _, _, ex = coexisting
    for row, i in enumerate(ex.memorized.tolist()):
        c = ex.contributions[i]
        held = ex.holders[row]
        k = int(held.sum())
        assert ex.holders_reach[row]
        assert c[held].sum() >= 0.9 * ex.margin[i]
        # No set of k - 1 neurons reaches it: the k - 1 largest contributions do not.
        assert c.sort(descending=True).values[: k - 1].sum() < 0.9 * ex.margin[i]
        assert ex.holding(i) == tuple(sorted(held.nonzero()[:, 0].tolist(),
                                             key=lambda n: -float(c[n])))


def test_removing_the_holding_neurons_flips_the_example(coexisting):
    model, ds, ex = coexisting
    sample = ex.memorized[torch.randperm(ex.memorized.numel(),
                                         generator=torch.Generator().manual_seed(0))[:25]]
    flipped = 0
    for i in sample.tolist():
        neurons = list(ex.holding(i))
        with ablate(model, neurons), torch.no_grad():
            logits = model(ds.train_pairs[i : i + 1]).double()[0]
        y, r = int(ds.train_labels[i]), int(ex.runner_up[i])
        # The margin over the runner-up loses exactly the removed neurons' contributions...
        left = float(logits[y] - logits[r])
        want = float(ex.margin[i] - ex.contributions[i, neurons].sum())
        assert left == pytest.approx(want, abs=1e-5)
        assert left <= 0.1 * float(ex.margin[i]) + 1e-5
        # ... and another class usually overtakes the trained label.
        flipped += int(logits.argmax()) != y
    assert flipped >= 0.75 * len(sample)


def test_flipping_sets_are_the_fewest_largest_first_that_flip(coexisting):
    model, ds, ex = coexisting
    assert ex.flip_reach.all()
    sample = ex.memorized[torch.randperm(ex.memorized.numel(),
                                         generator=torch.Generator().manual_seed(1))[:25]]
    for i in sample.tolist():
        neurons = ex.flipping(i)
        order = ex.contributions[i].argsort(descending=True)
        assert list(neurons) == order[: len(neurons)].tolist()
        x, y = ds.train_pairs[i : i + 1], int(ds.train_labels[i])
        with ablate(model, list(neurons)), torch.no_grad():
            assert int(model(x).argmax()) != y
        with ablate(model, list(neurons[:-1])), torch.no_grad():
            assert int(model(x).argmax()) == y
    assert examples_dict(ex)["flip_median"] == float(ex.flip_count.double().median())


def test_low_ipr_neurons_hold_most_of_the_memorized_margin(coexisting):
    model, ds, ex = coexisting
    classes = classify_neurons(ipr_scores(model, "add"))
    assert torch.equal(ex.low_ipr, classes.memorizing_mask)
    share = ex.margin_share_low_ipr()
    held = ex.contributions[ex.memorized][:, ex.low_ipr].sum()
    assert share == pytest.approx(float(held / ex.margin[ex.memorized].sum()))
    assert share > 0.5
    # Every neuron a low-IPR neuron: all of the margin; none: none of it.
    everyone = examples(model, ds, classes=classify_neurons(ipr_scores(model, "add"),
                                                            threshold=10.0))
    assert everyone.margin_share_low_ipr() == pytest.approx(1.0)
    # Per example the neurons' sum and the margin differ by float32 rounding only.
    torch.testing.assert_close(everyone.low_ipr_share, torch.ones_like(everyone.low_ipr_share),
                               atol=1e-4, rtol=0)


def test_summary_numbers_are_plain(coexisting):
    _, _, ex = coexisting
    d = examples_dict(ex)
    assert d["counts"] == ex.counts()
    assert d["low_ipr_margin_share"] == pytest.approx(ex.margin_share_low_ipr())
    assert d["holders_median"] == float(ex.holders.sum(1).double().median())
    lines = examples_lines(ex)
    assert lines[0].startswith("examples   of ") and "memorized" in lines[0]
    assert "low-IPR neurons hold" in lines[1]
    assert "loses the label" in lines[2]


@pytest.mark.parametrize("family", ["mlp-bias", "mlp-batchnorm", "mlp3", "transformer"])
def test_every_family_decomposes_exactly(family):
    p = 13
    ds = make_dataset(p=p, train_frac=0.6, corrupt_frac=0.3, seed=1)
    if family == "mlp-bias":
        model = HookedMLP(MLPConfig(p=p, width=16, bias=True), seed=0)
        with torch.no_grad():
            model.b_out.normal_()
    elif family == "mlp-batchnorm":
        model = HookedMLP(MLPConfig(p=p, width=16, norm="batchnorm"), seed=0)
        model.train()
        with torch.no_grad():
            model(ds.train_pairs)  # running statistics away from their defaults
    elif family == "mlp3":
        model = HookedMLP3(MLP3Config(p=p, width=16), seed=0)
    else:
        model = HookedTransformer(TransformerConfig(p=p, d_model=8, n_heads=2, d_mlp=12),
                                  seed=0)
    was_training = model.training
    ex = examples(model, ds)
    assert model.training == was_training
    with torch.no_grad():
        model.eval()
        logits = model(ds.model_inputs(ds.train_pairs)).double()
        model.train(was_training)
    y, r = ds.train_labels, ex.runner_up
    margin = logits.gather(1, y[:, None])[:, 0] - logits.gather(1, r[:, None])[:, 0]
    assert ex.exact
    torch.testing.assert_close(ex.contributions.sum(1) + ex.rest, margin, atol=1e-5, rtol=1e-5)
    if family == "mlp-bias":
        b = model.b_out.detach().double()
        torch.testing.assert_close(ex.rest, b[y] - b[r])
    if family == "transformer":
        assert ex.site == "blocks.0.mlp"
        assert ex.rest.abs().max() > 0  # the residual stream reaches the logits too


def test_a_normalized_transformer_gets_direct_effects():
    p = 13
    ds = make_dataset(p=p, train_frac=0.6, corrupt_frac=0.3, seed=1)
    model = HookedTransformer(TransformerConfig(p=p, d_model=8, n_heads=2, d_mlp=12,
                                                norm="layernorm"), seed=0)
    ex = examples(model, ds)
    assert not ex.exact
    torch.testing.assert_close(ex.contributions.sum(1) + ex.rest, ex.margin)
    assert "not exact" in "".join(examples_lines(ex)) or ex.memorized.numel() == 0


def test_bad_input_is_refused(coexisting):
    model, ds, ex = coexisting
    with pytest.raises(ValueError, match=r"`fraction` must be a number in \(0, 1\], got 1.5"):
        examples(model, ds, fraction=1.5)
    clean = [i for i, s in enumerate(ex.status) if s == "fitted"][0]
    with pytest.raises(ValueError, match=f"Training example {clean} is not memorized"):
        ex.holding(clean)
    with pytest.raises(ValueError, match="out of range"):
        ex.holding(10**6)
    small = classify_neurons(ipr_scores(HookedMLP(MLPConfig(p=41, width=8)), "add"))
    with pytest.raises(ValueError, match="`classes` has 8 neurons but site 'hidden' has 128"):
        examples(model, ds, classes=small)


def test_analyze_carries_the_examples(coexisting):
    model, ds, ex = coexisting
    a = analyze(model, ds)
    assert a.examples is not None and a.examples.counts() == ex.counts()
    assert torch.equal(a.examples.low_ipr, a.neurons.memorizing_mask)
    j = a.to_json_dict()["examples"]
    assert j["counts"] == ex.counts() and j["site"] == "hidden"
    assert j["low_ipr_margin_share"] == pytest.approx(a.examples.margin_share_low_ipr())
    assert "\nexamples   of " in a.summary()


def test_a_transformer_lens_model_decomposes_exactly():
    tl = pytest.importorskip("transformer_lens")
    import warnings

    from mechmem.interop import TransformerLensModel, dataset_from_split

    p = 13
    cfg = tl.HookedTransformerConfig(
        n_layers=1, n_heads=2, d_model=16, d_head=8, d_mlp=24, act_fn="relu",
        normalization_type=None, d_vocab=p + 1, d_vocab_out=p, n_ctx=3, device="cpu", seed=0)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        model = tl.HookedTransformer(cfg)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "b_" in name:
                param.normal_(0, 0.1)  # biases reach the logits outside the neurons too
    ds = dataset_from_split(torch.randperm(p * p, generator=torch.Generator().manual_seed(0))
                            [: p * p // 2], p)
    wrapped = TransformerLensModel(model)
    ex = examples(wrapped, ds)
    with torch.no_grad():
        logits = model(ds.model_inputs(ds.train_pairs))[:, -1].double()
    y, r = ds.train_labels, ex.runner_up
    margin = logits.gather(1, y[:, None])[:, 0] - logits.gather(1, r[:, None])[:, 0]
    assert ex.exact and ex.site == "blocks.0.mlp"
    torch.testing.assert_close(ex.margin, margin, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ex.contributions.sum(1) + ex.rest, margin, atol=1e-5, rtol=1e-5)

"""Training dynamics: stage steps on hand-made histories whose answer is known by construction,
neuron fates on hand-made snapshots, and tiny real trainings checked against their own record."""

import json
import math

import pytest
import torch

from mechmem import (
    HookedMLP,
    MLPConfig,
    TrainConfig,
    analytic_solution,
    analyze,
    make_dataset,
    train,
)
from mechmem.analysis import Event, ipr_scores, training_dynamics

pytestmark = pytest.mark.usefixtures("one_thread")


def history(train, test, **norms):
    return {"step": [10 * i for i in range(len(train))], "train_acc": train, "test_acc": test,
            **norms}


def test_grokking_then_unlearning():
    # xi 0.3, p 10: the inversion level is 1 - 0.3 + 0.03 = 0.73
    h = history([0.1, 0.5, 0.95, 1.0, 1.0, 0.9, 0.735, 0.73],
                [0.02, 0.05, 0.1, 0.5, 0.95, 1.0, 1.0, 1.0])
    d = training_dynamics(h, corrupt_frac=0.3, p=10)
    assert d.memorization == Event(20, 0.95)
    assert d.grokking == Event(40, 0.95)
    assert (d.delay, d.delay_reason) == (20, None)
    assert d.train_peak == Event(30, 1.0) and d.test_peak == Event(50, 1.0)
    assert d.inversion_level == pytest.approx(0.73)
    assert d.unlearning == Event(60, 0.735)
    assert d.forgetting.step is None
    assert d.forgetting.reason == "test accuracy ends at 100.0%, not below 90%: nothing was " \
                                  "forgotten."
    assert d.neurons is None and d.neurons_reason.startswith("no model")


def test_forgetting_is_the_collapse_of_the_weight_norms():
    # total norm sqrt(U^2 + V^2): 1.41, 2.83, 5.66 (peak), 2.83, 0.71 -> 25% of the peak at 40
    h = history([0.2, 1.0, 1.0, 0.6, 0.05], [0.1, 0.95, 0.97, 0.5, 0.1],
                norm_U=[1, 2, 4, 2, 0.5], norm_V=[1, 2, 4, 2, 0.5])
    d = training_dynamics(h, corrupt_frac=0.0, p=10)
    assert d.forgetting.step == 40 and d.forgetting.value == pytest.approx(math.sqrt(0.5))
    assert d.test_peak == Event(20, 0.97)
    assert d.inversion_level is None and "xi = 0" in d.unlearning.reason
    assert (d.memorization.step, d.grokking.step, d.delay) == (10, 10, 0)
    # the same loss of test accuracy without a collapse is not forgetting
    kept = {**h, "norm_U": [1, 2, 4, 3, 2], "norm_V": [1, 2, 4, 3, 2]}
    e = training_dynamics(kept, corrupt_frac=0.0, p=10).forgetting
    assert e.step is None and "never fell to 25% of its peak 5.66" in e.reason
    without = {k: v for k, v in h.items() if not k.startswith("norm_")}
    assert "no weight norms" in training_dynamics(without, corrupt_frac=0.0, p=10).forgetting.reason


def test_a_run_that_never_gets_there_says_why_for_each_event():
    d = training_dynamics(history([0.1, 0.3, 0.2], [0.1, 0.2, 0.15]), corrupt_frac=0.2, p=10)
    assert d.memorization.reason == "train accuracy never reached 90% (best 30.0%)."
    assert d.grokking.reason == "test accuracy never reached 90% (best 20.0%)."
    assert (d.delay, d.delay_reason) == (None,
                                         "there is no memorization and no grokking step.")
    assert "never rose more than one point above the inversion level 82.0%" in \
        d.unlearning.reason
    assert "nothing to forget" in d.forgetting.reason
    for e in d.events().values():
        assert (e.step is None) != (e.reason is None)


@pytest.mark.parametrize(
    ("train", "test", "event", "expected"),
    [
        # coexistence: memorized and never unlearned
        ([0.5, 1.0, 1.0, 1.0], [0.1, 0.5, 0.95, 0.99], "unlearning", None),
        # generalized first: a negative delay
        ([0.5, 0.7, 0.95], [0.5, 0.95, 0.99], "delay", -10),
        # a fall that jumps over the band between two evaluations has no unlearning step
        ([0.5, 1.0, 0.9, 0.6], [0.1, 0.95, 0.99, 0.99], "unlearning", None),
        # NaN evaluations count as not reached
        ([math.nan, 0.95, 1.0], [math.nan, 0.2, 0.91], "grokking", 20),
    ],
)
def test_rules_at_their_edges(train, test, event, expected):
    d = training_dynamics(history(train, test), corrupt_frac=0.3, p=10)
    got = d.delay if event == "delay" else getattr(d, event).step
    assert got == expected


def test_a_damaged_or_missing_history_gives_reasons_not_errors():
    d = training_dynamics({}, corrupt_frac=0.2, p=23)
    assert all("no training history" in e.reason for e in d.events().values())
    short = {"step": [0, 10, 20], "train_acc": [0.1, 0.95], "test_acc": [0.1, 0.2, 0.3]}
    d = training_dynamics(short, corrupt_frac=0.2, p=23)
    assert d.memorization.reason == "the training history has 2 values of train_acc for 3 " \
                                    "steps."
    assert d.grokking.step is None and "never reached" in d.grokking.reason
    d = training_dynamics({"step": [0, 10], "test_acc": [0.5, 1.0]}, corrupt_frac=0.2, p=23)
    assert d.grokking == Event(10, 1.0) and "records no train_acc" in d.memorization.reason
    with pytest.raises(ValueError, match=r"`corrupt_frac` must lie in \[0, 1\), got 1.5"):
        training_dynamics({}, corrupt_frac=1.5, p=23)
    with pytest.raises(ValueError, match="either a step or a reason"):
        Event(10, reason="both")


P, WIDTH = 23, 30


def _snapshots():
    """Three snapshots of a 30-neuron MLP with known fates: neurons 0-9 random, then periodic
    (the analytic solution's), 10-19 random, then shrunk a thousandfold (neuron 10 to zero),
    20-29 random throughout."""
    rand = [HookedMLP(MLPConfig(p=P, width=WIDTH), seed=s).state_dict() for s in (1, 2, 3)]
    exact = analytic_solution(p=P, width=WIDTH, seed=0).state_dict()
    end = {k: v.clone() for k, v in rand[2].items()}
    for k in ("U", "V"):
        end[k][:10] = exact[k][:10]
        end[k][10:20] *= 1e-3
        end[k][10] = 0.0
    end["W"][:, :10] = exact["W"][:, :10]
    end["W"][:, 10:20] *= 1e-3
    end["W"][:, 10] = 0.0
    states = [rand[0], rand[1], end]
    snaps = {"step": torch.tensor([0, 100, 200])}
    snaps |= {k: torch.stack([s[k] for s in states]) for k in ("U", "V", "W")}
    return snaps, end


def test_neuron_fates_on_hand_made_snapshots():
    snaps, end = _snapshots()
    model = HookedMLP(MLPConfig(p=P, width=WIDTH), seed=9)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    h = {"step": [0, 50, 100, 200], "train_acc": [0.1, 0.95, 1.0, 0.8],
         "test_acc": [0.1, 0.1, 0.5, 1.0]}
    d = training_dynamics(h, snaps, corrupt_frac=0.2, p=P, model=model, threshold=0.5)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())  # untouched
    n = d.neurons
    assert (n.site, n.threshold, n.steps) == ("hidden", 0.5, (0, 100, 200))
    assert n.periodic_step == (200,) * 10 + (None,) * 20
    assert n.periodic_fraction == pytest.approx((0.0, 0.0, 10 / WIDTH))
    fate = n.fate
    assert (fate.step, fate.final_step) == (100, 200)  # first snapshot after step 50
    assert fate.counts() == {"cohort": 30, "pruned": 10, "memorizing": 10, "periodic": 10}
    assert fate.pruned[10:20].all() and fate.periodic[:10].all() and fate.memorizing[20:].all()
    # oracles: the IPR of the final weights through ipr_scores, the norm by hand
    final = HookedMLP(MLPConfig(p=P, width=WIDTH))
    final.load_state_dict(end)
    torch.testing.assert_close(n.ipr[-1], ipr_scores(final, "add").combined, equal_nan=True)
    norm = (end["U"].double().square().sum(1) + end["V"].double().square().sum(1)
            + end["W"].double().square().sum(0)).sqrt()
    torch.testing.assert_close(n.norm[-1], norm)
    assert math.isnan(n.ipr[-1, 10])  # the zeroed neuron is dead, counted as pruned
    assert fate.prune_level == pytest.approx(0.1 * float(n.norm[1].median()))


def test_no_fate_without_memorization_or_snapshots_after_it():
    snaps, _ = _snapshots()
    model = HookedMLP(MLPConfig(p=P, width=WIDTH))
    never = {"step": [0, 100, 200], "train_acc": [0.1, 0.5, 0.6], "test_acc": [0.1, 0.1, 0.1]}
    n = training_dynamics(never, snaps, corrupt_frac=0.2, p=P, model=model).neurons
    assert n.fate is None and "never fit its training set" in n.fate_reason
    late = {**never, "train_acc": [0.1, 0.5, 0.95]}
    n = training_dynamics(late, snaps, corrupt_frac=0.2, p=P, model=model).neurons
    assert n.fate is None and "no snapshot lies between" in n.fate_reason
    wrong = {**snaps, "U": snaps["U"][:, :5]}
    d = training_dynamics(never, wrong, corrupt_frac=0.2, p=P, model=model)
    assert d.neurons is None and "does not match the model's weights" in d.neurons_reason
    d = training_dynamics(never, {}, corrupt_frac=0.2, p=P, model=model)
    assert d.neurons is None and d.neurons_reason == "no weight snapshots were stored during " \
                                                     "training."


@pytest.fixture(scope="module")
def grokked():
    """A tiny real run that memorizes, groks and unlearns within 200 steps."""
    config = TrainConfig(p=31, width=64, train_frac=0.8, corrupt_frac=0.1, weight_decay=5.0,
                         steps=200, eval_every=10, snapshot_every=40, device="cpu")
    return analyze(train(config))


def test_a_real_run_against_its_own_record(grokked):
    a = grokked
    d, h = a.dynamics, a.history
    steps = [int(s) for s in h["step"]]
    for event, key in ((d.memorization, "train_acc"), (d.grokking, "test_acc")):
        assert event.step is not None, event.reason
        i = steps.index(event.step)
        assert h[key][i] >= 0.9 > max(h[key][:i], default=0.0)
    assert d.delay == d.grokking.step - d.memorization.step
    level = 1 - 0.1 + 0.1 / 31
    assert d.unlearning.step is not None, d.unlearning.reason
    j = steps.index(d.unlearning.step)
    assert abs(h["train_acc"][j] - level) <= 0.01 and d.unlearning.step > d.train_peak.step
    assert d.test_peak.value == max(h["test_acc"])
    n = d.neurons
    assert n.steps == (0, 40, 80, 120, 160, 200) and n.threshold == a.neurons.threshold
    # the last snapshot is the final model: its periodic share is the generalizing class
    assert n.periodic_fraction[-1] == a.neurons.generalizing / 64
    assert all(s is None or s in n.steps for s in n.periodic_step)
    assert sum(s is not None for s in n.periodic_step) >= a.neurons.generalizing
    c = n.fate.counts()
    assert c["pruned"] + c["memorizing"] + c["periodic"] == c["cohort"] > 0


def test_json_and_summary_carry_the_dynamics(grokked):
    a = grokked
    out = json.loads(json.dumps(a.to_json_dict(), allow_nan=False))["dynamics"]
    d = a.dynamics
    assert out["grokking"] == {"step": d.grokking.step, "value": d.grokking.value,
                               "reason": None, "status": "happened"}
    assert out["forgetting"]["step"] is None and out["forgetting"]["reason"]
    assert out["neurons"]["periodic_step"] == list(d.neurons.periodic_step)
    assert out["neurons"]["fate"]["cohort"] == d.neurons.fate.counts()["cohort"]
    text = a.summary()
    assert f"grokked step {d.grokking.step} ({d.delay:+d} steps)" in text
    assert f"memorized step {d.memorization.step}" in text and "forgot never" in text


def test_a_bare_model_has_no_dynamics():
    ds = make_dataset(p=23, train_frac=0.5, corrupt_frac=0.2)
    a = analyze(HookedMLP(MLPConfig(p=23, width=8)), ds)
    assert a.dynamics is None and a.to_json_dict()["dynamics"] is None
    assert "dynamics" not in a.summary()


def test_the_transformer_dynamics_read_its_mlp_neurons():
    tf = train(TrainConfig(model="transformer", p=23, d_model=32, n_heads=4, width=64,
                           corrupt_frac=0.2, steps=40, eval_every=10, snapshot_every=20,
                           device="cpu"))
    n = analyze(tf).dynamics.neurons
    assert n.site == "blocks.0.mlp" and n.steps == (0, 20, 40)
    assert n.ipr.shape == n.norm.shape == (3, 64) and len(n.periodic_step) == 64

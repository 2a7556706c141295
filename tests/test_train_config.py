"""TrainConfig defaults, validation, round trips, the paper's minibatch rule and presets."""

import dataclasses
import math

import pytest

from mechmem import TrainConfig
from mechmem.train import PRESETS, preset


def test_defaults_are_the_papers():
    c = TrainConfig()
    assert (c.op, c.p, c.train_frac, c.corrupt_frac, c.width, c.act) == ("add", 97, 0.5, 0.0,
                                                                         500, "quad")
    assert (c.optimizer, c.lr, c.betas, c.eps, c.weight_decay) == ("adamw", 0.01, (0.9, 0.98),
                                                                   1e-8, 0.0)
    assert (c.loss, c.batch_size, c.steps, c.norm, c.dropout, c.bias) == ("mse", "full", 2000,
                                                                          "none", 0.0, False)
    assert c.model_config().paper_init_std == pytest.approx(0.05, abs=1e-3)


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("lr", 0.0, "`lr` must be finite and > 0, got 0.0"),
        ("lr", math.inf, "`lr` must be finite"),
        ("weight_decay", -1.0, "`weight_decay` must be finite and >= 0, got -1.0"),
        ("betas", (0.9, 1.0), "`betas` must be two numbers in \\[0, 1\\)"),
        ("batch_size", 0, "`batch_size` must be 'full' or a positive integer, got 0"),
        ("steps", -1, "`steps` must be a non-negative integer, got -1"),
        ("eval_every", 0, "`eval_every` must be a positive integer, got 0"),
        ("snapshot_every", 0, "`snapshot_every` must be a positive integer or None"),
        ("p", 12, None),  # mul needs a prime: checked by DatasetSpec below
        ("width", 0, "`width` must be a positive integer, got 0"),
        ("corrupt_frac", 1.0, "`corrupt_frac` \\(xi\\) must lie in \\[0, 1\\)"),
    ],
)
def test_bad_values_are_one_sentence_errors(field, value, match):
    if match is None:
        with pytest.raises(ValueError, match="`p` must be prime for mul, got 12"):
            TrainConfig(op="mul", p=12)
        return
    with pytest.raises(ValueError, match=match):
        TrainConfig(**{field: value})


@pytest.mark.parametrize(
    ("field", "value"),
    [("loss", "l1"), ("optimizer", "rmsprop"), ("device", "tpu"), ("batch_size", "half")],
)
def test_values_outside_a_literal_are_refused(field, value):
    # A ValueError naming the field; under the test suite's runtime type checking the
    # annotation (a Literal) refuses it first, with a TypeError.
    with pytest.raises((ValueError, TypeError), match=field):
        TrainConfig(**{field: value})


def test_config_is_frozen_and_round_trips_through_a_plain_dict():
    c = TrainConfig(p=31, batch_size=64, snapshot_every=None, name="x", weight_decay=5.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.p = 5  # type: ignore[misc]
    d = c.to_dict()
    assert all(isinstance(v, str | int | float | list | type(None)) for v in d.values())
    assert TrainConfig.from_dict(d) == c
    with pytest.raises(ValueError, match="Unknown TrainConfig fields \\['bogus'\\]"):
        TrainConfig.from_dict({**d, "bogus": 1})


def test_paper_minibatch_rule_scales_steps_and_lr():
    c = TrainConfig().with_paper_minibatch_rule(64)
    assert (c.batch_size, c.steps) == (64, 8000)
    assert c.lr == pytest.approx(0.005)
    same = TrainConfig().with_paper_minibatch_rule(256)
    assert (same.steps, same.lr) == (2000, 0.01)


@pytest.mark.parametrize(
    ("name", "fields"),
    [
        # Steps as the authors' notebook ran each named run.
        ("coexistence", {"weight_decay": 0.0, "corrupt_frac": 0.35, "train_frac": 0.5,
                         "steps": 1000}),
        ("partial-inversion", {"weight_decay": 5.0, "corrupt_frac": 0.35, "steps": 500}),
        ("full-inversion", {"weight_decay": 15.0, "corrupt_frac": 0.35, "steps": 500}),
        ("forgetting", {"weight_decay": 20.0, "corrupt_frac": 0.35, "steps": 5000}),
        ("batchnorm", {"train_frac": 0.65, "corrupt_frac": 0.2, "batch_size": 64, "lr": 0.005,
                       "norm": "batchnorm", "weight_decay": 0.0, "steps": 2000}),
    ],
)
def test_presets_are_the_papers_runs(name, fields):
    c = preset(name)
    assert c.name == name and c.seeding == "paper" and c.seed == 0
    for k, v in fields.items():
        assert getattr(c, k) == v, k
    assert c.width == 500 and c.act == "quad" and c.p == 97


def test_preset_fields_can_be_overridden_and_unknown_names_refused():
    c = preset("full-inversion", steps=7, name="mine", weight_decay=1.0)
    assert (c.steps, c.name, c.weight_decay, c.corrupt_frac) == (7, "mine", 1.0, 0.35)
    assert set(PRESETS) == {"coexistence", "partial-inversion", "full-inversion", "forgetting",
                            "batchnorm", "transformer-coexistence",
                            "transformer-full-inversion", "mlp3-memorization", "mlp3-inversion"}
    assert preset("transformer-full-inversion").model == "transformer"
    with pytest.raises(ValueError, match="Unknown preset 'grok'; choose one of coexistence"):
        preset("grok")

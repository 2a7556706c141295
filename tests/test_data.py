import math

import pytest
import torch

from mechmem.data import (
    OPERATIONS,
    DatasetSpec,
    ModularDataset,
    all_pairs,
    make_dataset,
    primitive_root,
    task_coordinates,
)

ORACLE = {
    "add": lambda a, b, p: (a + b) % p,
    "sub": lambda a, b, p: (a - b) % p,
    "mul": lambda a, b, p: (a * b) % p,
    "div": lambda a, b, p: (a * pow(b, -1, p)) % p,
    "sq_sum": lambda a, b, p: (a * a + b * b) % p,
}


@pytest.mark.parametrize("op", list(OPERATIONS))
def test_labels_match_python_oracle(op):
    p = 13
    pairs, labels = all_pairs(op, p)
    for (a, b), y in zip(pairs.tolist(), labels.tolist(), strict=True):
        assert y == ORACLE[op](a, b, p)
    expected = p * (p - 1) if op == "div" else p * p
    assert pairs.shape == (expected, 2)
    if op == "div":
        assert (pairs[:, 1] != 0).all()


@pytest.mark.parametrize("op", list(OPERATIONS))
@pytest.mark.parametrize("xi", [0.0, 0.35, 0.9])
def test_split_and_corruption_invariants(op, xi):
    spec = DatasetSpec(op=op, p=23, train_frac=0.4, corrupt_frac=xi, seed=3)
    ds = make_dataset(spec)
    n = ds.pairs.shape[0]
    assert ds.n_train == round(0.4 * n)
    both = torch.cat([ds.train_idx, ds.test_idx])
    assert torch.equal(both.sort().values, torch.arange(n))
    assert ds.n_corrupted == math.floor(xi * ds.n_train)
    # Clean examples keep their true labels; the test set is never corrupted.
    assert torch.equal(ds.train_labels[~ds.corrupted], ds.train_true_labels[~ds.corrupted])
    assert torch.equal(ds.test_labels, ds.labels[ds.test_idx])
    assert ds.train_labels.min() >= 0 and ds.train_labels.max() < 23


def test_uniform_corruption_keeps_about_one_in_p_labels():
    ds = make_dataset(op="add", p=11, train_frac=0.9, corrupt_frac=0.9, seed=0)
    kept = (ds.train_labels == ds.train_true_labels)[ds.corrupted].float().mean().item()
    assert 0.02 < kept < 0.2  # 1/11 ~ 0.09 expected
    changed = make_dataset(op="add", p=11, train_frac=0.9, corrupt_frac=0.9, seed=0,
                           corruption="exclude_true")
    assert (changed.train_labels != changed.train_true_labels)[changed.corrupted].all()


def test_same_seed_same_dataset_other_seed_other_split():
    a = make_dataset(op="add", p=17, corrupt_frac=0.3, seed=5)
    b = make_dataset(op="add", p=17, corrupt_frac=0.3, seed=5)
    c = make_dataset(op="add", p=17, corrupt_frac=0.3, seed=6)
    assert torch.equal(a.train_idx, b.train_idx)
    assert torch.equal(a.train_labels, b.train_labels)
    assert torch.equal(a.corrupted, b.corrupted)
    assert not torch.equal(a.train_idx, c.train_idx)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"op": "mul", "p": 12}, "must be prime for mul, got 12"),
        ({"op": "div", "p": 15}, "must be prime for div, got 15"),
        ({"train_frac": 0.0}, r"must lie in \(0, 1\), got 0.0"),
        ({"train_frac": 1.0}, r"must lie in \(0, 1\), got 1.0"),
        ({"corrupt_frac": 1.0}, r"must lie in \[0, 1\), got 1.0"),
        ({"corrupt_frac": -0.1}, r"must lie in \[0, 1\), got -0.1"),
        ({"p": 1}, "must be an integer >= 2, got 1"),
        ({"op": "pow"}, "Unknown operation 'pow'"),
        ({"corruption": "flip"}, "must be 'uniform' or 'exclude_true'"),
        ({"p": 2, "train_frac": 0.1}, "leaves an empty train or test set"),
    ],
)
def test_bad_specs_are_value_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DatasetSpec(**kwargs)


def test_dataset_round_trips_through_plain_dict():
    ds = make_dataset(op="sub", p=19, corrupt_frac=0.2, seed=1)
    back = ModularDataset.from_dict(ds.to_dict())
    for field in ("pairs", "labels", "train_idx", "test_idx", "train_labels", "corrupted"):
        assert torch.equal(getattr(ds, field), getattr(back, field))
    assert back.spec == ds.spec


def test_from_dict_rejects_inconsistent_indices():
    d = make_dataset(op="add", p=7).to_dict()
    d["train_idx"] = d["train_idx"].clone()
    d["train_idx"][0] = 10_000
    with pytest.raises(ValueError, match="indices outside"):
        ModularDataset.from_dict(d)


@pytest.mark.parametrize("op", list(OPERATIONS))
def test_task_coordinates_make_the_operation_additive(op):
    # The generalizing circuit relies on c_out(a op b) = c_a(a) + c_b(b) mod period.
    p = 13
    c = task_coordinates(op, p)
    pairs, labels = all_pairs(op, p)
    a, b = pairs[:, 0], pairs[:, 1]
    ok = (c.a[a] >= 0) & (c.b[b] >= 0) & (c.out[labels] >= 0)
    if op != "sq_sum":
        assert torch.equal((c.a[a] + c.b[b])[ok] % c.period, c.out[labels][ok])
    else:
        assert torch.equal((c.a[a] + c.b[b]) % p, labels)


def test_primitive_root_generates_the_group():
    for p in (3, 5, 7, 11, 13, 97):
        g = primitive_root(p)
        assert sorted(pow(g, k, p) for k in range(p - 1)) == list(range(1, p))
    with pytest.raises(ValueError, match="must be prime"):
        primitive_root(12)

"""The "paper" seeding replays the authors' random calls: their split, labels, init and batches.

The oracles below make the calls the way the authors' notebook makes them, on Python's and
torch's global generators (whose states are restored afterwards); mechmem uses private
generators and must land on the same numbers.
"""

import random
from contextlib import contextmanager

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mechmem import DatasetSpec, TrainConfig, make_dataset, train
from mechmem.cli import main
from mechmem.data import ModularDataset, paper_init_stream
from mechmem.train import initial_model, resume

pytestmark = pytest.mark.usefixtures("one_thread")


@contextmanager
def _global_rng():
    py, th = random.getstate(), torch.get_rng_state()
    try:
        yield
    finally:
        random.setstate(py)
        torch.set_rng_state(th)


def _authors_data(p: int, alpha: float, xi: float, seed: int):
    """Their dataset cell; leaves torch's global stream right after the label draw."""
    pairs = [(i, j) for i in range(p) for j in range(p)]
    random.seed(420 + seed)
    order = list(range(len(pairs)))
    random.shuffle(order)
    x = torch.tensor([pairs[i] for i in order])
    y = (x[:, 0] + x[:, 1]) % p
    n_train = int(alpha * len(pairs))
    n_noise = int(xi * n_train)
    torch.manual_seed(seed)
    y[:n_noise] = torch.randint(0, p, (n_noise,))
    return x[:n_train], y[:n_train], x[n_train:], n_noise


def _authors_init(p: int, width: int, normal: bool = True, norm: bool = False,
                  scale: float = 1.0):
    """Their model cell, drawing from wherever torch's global stream stands (`scale`: what
    mechmem's `init_scale` does on top)."""
    fc1 = nn.Linear(2 * p, width, bias=False)
    fc2 = nn.Linear(width, p, bias=False)
    if normal:
        std = 0.25**0.5 / (2 * width) ** (1 / 3)
        nn.init.normal_(fc1.weight, 0.0, std * scale)
        nn.init.normal_(fc2.weight, 0.0, std * scale)
    elif scale != 1.0:
        with torch.no_grad():
            fc1.weight.mul_(scale)
            fc2.weight.mul_(scale)
    return fc1, fc2, (nn.BatchNorm1d(width) if norm else nn.Identity())


@pytest.mark.parametrize(("p", "alpha", "xi", "seed"),
                         [(97, 0.5, 0.35, 0), (31, 0.65, 0.2, 0), (31, 0.5, 0.35, 3)])
def test_split_and_labels_are_the_authors(p, alpha, xi, seed):
    with _global_rng():
        x_train, y_train, x_test, n_noise = _authors_data(p, alpha, xi, seed)
    ds = make_dataset(p=p, train_frac=alpha, corrupt_frac=xi, seed=seed, seeding="paper")
    assert torch.equal(ds.train_pairs, x_train)  # same examples, in their order
    assert torch.equal(ds.train_labels, y_train)
    assert torch.equal(ds.corrupted, torch.arange(ds.n_train) < n_noise)
    assert sorted(map(tuple, ds.test_pairs.tolist())) == sorted(map(tuple, x_test.tolist()))
    # The order survives a checkpoint round trip.
    back = ModularDataset.from_dict(ds.to_dict())
    assert torch.equal(back.train_idx, ds.train_idx) and torch.equal(back.test_idx, ds.test_idx)


def test_mechmem_seeding_is_not_the_authors_split():
    with _global_rng():
        x_train, *_ = _authors_data(31, 0.5, 0.35, 0)
    ds = make_dataset(p=31, train_frac=0.5, corrupt_frac=0.35)
    assert not torch.equal(ds.train_pairs, x_train)


@pytest.mark.parametrize(("init", "scale"),
                         [("paper", 1.0), ("pytorch", 1.0), ("paper", 2.0), ("pytorch", 0.5)])
def test_initial_weights_continue_the_label_stream(init, scale):
    config = TrainConfig(p=31, width=48, train_frac=0.5, corrupt_frac=0.35, init=init,
                         init_scale=scale, seeding="paper")
    with _global_rng():
        _authors_data(31, 0.5, 0.35, 0)
        fc1, fc2, _ = _authors_init(31, 48, normal=init == "paper", scale=scale)
    model = initial_model(config)
    assert torch.equal(model.U.data, fc1.weight[:, :31])
    assert torch.equal(model.V.data, fc1.weight[:, 31:])
    assert torch.equal(model.W.data, fc2.weight)


def test_init_stream_needs_paper_seeding():
    with pytest.raises(ValueError, match="needs seeding 'paper' or 'scripts'"):
        paper_init_stream(DatasetSpec())


def test_minibatch_run_follows_the_authors_loop():
    """Their BatchNorm cell: a permutation per epoch from the global stream after the init."""
    p, width, bs, steps = 23, 32, 16, 50  # 343 training pairs: 21 batches an epoch, 3 epochs
    config = TrainConfig(p=p, width=width, train_frac=0.65, corrupt_frac=0.2, norm="batchnorm",
                         batch_size=bs, lr=0.005, steps=steps, seeding="paper", device="cpu",
                         snapshot_every=None)
    with _global_rng():
        x_train, y_train, _, _ = _authors_data(p, 0.65, 0.2, 0)
        fc1, fc2, bn = _authors_init(p, width, norm=True)
        x = torch.cat([F.one_hot(x_train[:, 0], p), F.one_hot(x_train[:, 1], p)], 1).float()
        opt = torch.optim.AdamW([fc1.weight, fc2.weight, bn.weight, bn.bias], lr=0.005,
                                betas=(0.9, 0.98), eps=1e-8, weight_decay=0.0)
        per_epoch = len(x) // bs
        for step in range(steps):
            if step % per_epoch == 0:
                perms = torch.randperm(len(x))[:per_epoch * bs].view(per_epoch, bs)
            idx = perms[step % per_epoch]
            opt.zero_grad()
            out = fc2(bn(fc1(x[idx]).pow(2)))
            F.mse_loss(out, F.one_hot(y_train[idx], p).float()).backward()
            opt.step()
    ours = train(config).model
    assert torch.allclose(ours.U, fc1.weight[:, :p], atol=1e-5)
    assert torch.allclose(ours.W, fc2.weight, atol=1e-5)
    assert torch.allclose(ours.norm.weight, bn.weight, atol=1e-5)
    # Another batch order (mechmem's own stream from the same data and init) ends elsewhere.
    other = train(config.replace(seeding="mechmem")).model
    assert not torch.allclose(other.W, fc2.weight, atol=1e-3)


def test_resume_mid_epoch_replays_the_paper_stream(tmp_path):
    config = TrainConfig(p=23, width=32, corrupt_frac=0.3, batch_size=50, norm="batchnorm",
                         dropout=0.2, steps=22, eval_every=11, snapshot_every=None,
                         seeding="paper", device="cpu")  # 5 batches an epoch: 22 is mid-epoch
    train(config, out=tmp_path / "a.pt")
    extended = resume(tmp_path / "a.pt", steps=40)
    direct = train(config.replace(steps=40))
    assert extended.history == direct.history
    for (k, a), b in zip(extended.model.state_dict().items(),
                         direct.model.state_dict().values(), strict=True):
        assert torch.equal(a, b), k


def test_bad_seeding_is_refused_everywhere(capsys):
    msg = "`seeding` must be one of mechmem, paper, scripts, got 'x'"
    with pytest.raises(ValueError, match=msg):
        TrainConfig(seeding="x")
    with pytest.raises(ValueError, match="`seeding` must be one of mechmem, paper"):
        DatasetSpec(seeding="authors")
    with pytest.raises(SystemExit) as e:
        main(["train", "--seeding", "authors"])
    assert e.value.code == 2
    assert "invalid choice: 'authors'" in capsys.readouterr().err


def test_configs_stored_before_seeding_existed_load_as_mechmem():
    d = TrainConfig().to_dict()
    del d["seeding"]
    assert TrainConfig.from_dict(d).seeding == "mechmem"
    spec = DatasetSpec().to_dict()
    del spec["seeding"]
    assert DatasetSpec(**spec).seeding == "mechmem"


def test_info_names_the_seeding(tmp_path, capsys):
    config = TrainConfig(p=23, width=16, corrupt_frac=0.3, steps=2, seeding="paper",
                         device="cpu")
    train(config, out=tmp_path / "a.pt")
    assert main(["info", str(tmp_path / "a.pt")]) == 0
    assert "seed=0 seeding=paper train=264 corrupted=79" in capsys.readouterr().out

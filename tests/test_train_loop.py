"""`train` and `resume` in-process: what a run records, determinism, exactness of reused logits."""

import math

import pytest
import torch

from mechmem import TrainConfig, load_checkpoint, train
from mechmem.analysis.spectrum import mean_ipr
from mechmem.checkpoint import Checkpoint
from mechmem.train import HISTORY_KEYS, resume
from mechmem.train.metrics import loss_value

TINY = TrainConfig(p=23, width=32, corrupt_frac=0.3, weight_decay=1.0, steps=60,
                   eval_every=10, snapshot_every=25, device="cpu")
# Minibatches, dropout and BatchNorm: every source of randomness and state in the loop.
NOISY = TINY.replace(batch_size=50, dropout=0.3, norm="batchnorm", steps=40)


pytestmark = pytest.mark.usefixtures("one_thread")


def _same_run(a: Checkpoint, b: Checkpoint) -> None:
    assert a.step == b.step
    assert a.history == b.history  # exact float equality
    for (k, x), y in zip(a.model.state_dict().items(), b.model.state_dict().values(),
                         strict=True):
        assert torch.equal(x, y), k
    assert a.snapshots.keys() == b.snapshots.keys()
    for k in a.snapshots:
        assert torch.equal(a.snapshots[k], b.snapshots[k]), k
    sa, sb = a.train_state["optimizer"], b.train_state["optimizer"]
    assert sa["steps"] == sb["steps"] == a.step
    for k in ("exp_avg", "exp_avg_sq"):
        assert all(torch.equal(x, y) for x, y in zip(sa[k], sb[k], strict=True)), k


def test_train_records_every_metric_and_snapshot(tmp_path):
    ckpt = train(TINY, out=tmp_path / "run.pt")
    assert isinstance(ckpt, Checkpoint) and ckpt.step == 60 and ckpt.config == TINY
    assert tuple(ckpt.history) == HISTORY_KEYS
    assert ckpt.history["step"] == list(range(0, 61, 10))
    assert all(len(v) == 7 for v in ckpt.history.values())
    for k in HISTORY_KEYS:
        if k.endswith("_acc"):
            assert all(0.0 <= x <= 1.0 for x in ckpt.history[k]), k
    assert ckpt.history["train_acc"][-1] > 0.9  # a tiny net memorizes its training set
    snaps = ckpt.snapshots
    assert snaps["step"].tolist() == [0, 25, 50, 60]
    assert snaps["U"].shape == (4, 32, 23) and snaps["W"].shape == (4, 23, 32)
    assert torch.equal(snaps["U"][-1], ckpt.model.U) and torch.equal(snaps["W"][-1], ckpt.model.W)
    assert not ckpt.model.training
    loaded = load_checkpoint(tmp_path / "run.pt")
    _same_run(ckpt, loaded)
    assert loaded.config == TINY


@pytest.mark.parametrize("config", [TINY, NOISY], ids=["full-batch", "minibatch-dropout-bn"])
def test_last_history_entry_equals_the_returned_model(config):
    """The recorded metrics (reused training logits or a separate pass) describe the model."""
    ckpt = train(config)
    model, ds, last = ckpt.model, ckpt.dataset, {k: v[-1] for k, v in ckpt.history.items()}
    with torch.no_grad():
        train_logits, test_logits = model(ds.train_pairs), model(ds.test_pairs)
    pred = train_logits.argmax(-1)
    c = ds.corrupted
    assert last["train_acc"] == (pred == ds.train_labels).double().mean().item()
    assert last["test_acc"] == (test_logits.argmax(-1) == ds.test_labels).double().mean().item()
    assert last["clean_train_acc"] == (pred[~c] == ds.train_labels[~c]).double().mean().item()
    assert last["corrupted_memorized_acc"] == (pred[c] == ds.train_labels[c]).double().mean().item()
    assert last["corrupted_true_acc"] == (pred[c] == ds.train_true_labels[c]).double().mean().item()
    assert last["train_loss"] == pytest.approx(
        loss_value(config.loss, train_logits, ds.train_labels).item(), rel=1e-5)
    assert last["norm_U"] == pytest.approx(model.U.norm().item(), rel=1e-6)
    assert last["ipr_mean"] == mean_ipr(model, config.op)


def test_no_corrupted_examples_gives_nan_for_their_accuracies():
    ckpt = train(TINY.replace(corrupt_frac=0.0, steps=3, snapshot_every=None))
    assert math.isnan(ckpt.history["corrupted_true_acc"][0]) and ckpt.snapshots == {}


@pytest.mark.parametrize("config", [TINY, NOISY], ids=["full-batch", "minibatch-dropout-bn"])
def test_same_config_and_seed_give_the_same_run(config):
    _same_run(train(config), train(config))
    other = train(config.replace(seed=1))
    assert other.history["train_loss"] != train(config).history["train_loss"]


def test_resume_extends_a_finished_run_like_one_long_run(tmp_path):
    short = NOISY.replace(steps=20, snapshot_every=None)
    train(short, out=tmp_path / "a.pt")
    extended = resume(tmp_path / "a.pt", steps=40)
    direct = train(short.replace(steps=40))
    assert extended.path == tmp_path / "a.pt" and load_checkpoint(tmp_path / "a.pt").step == 40
    for (k, x), y in zip(extended.model.state_dict().items(), direct.model.state_dict().values(),
                         strict=True):
        assert torch.equal(x, y), k
    assert extended.history == direct.history


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
@pytest.mark.parametrize("loss", ["mse", "ce"])
def test_every_optimizer_and_loss_trains(optimizer, loss):
    lr = 0.01 if optimizer == "adam" else 1.0
    ckpt = train(TINY.replace(optimizer=optimizer, loss=loss, lr=lr, act="relu", bias=True,
                              norm="layernorm", snapshot_every=None))
    assert ckpt.history["train_loss"][-1] < 0.95 * ckpt.history["train_loss"][0]


def test_out_is_never_overwritten_unless_asked(tmp_path):
    out = tmp_path / "run.pt"
    out.write_bytes(b"precious")
    with pytest.raises(FileExistsError, match=r"run.pt exists; pass --force \(overwrite=True"):
        train(TINY, out=out)
    assert out.read_bytes() == b"precious"
    train(TINY.replace(steps=2), out=out, overwrite=True)
    assert load_checkpoint(out).step == 2
    with pytest.raises(ValueError, match="`checkpoint_every` needs an output path"):
        train(TINY, checkpoint_every=5)


def test_resume_refuses_a_checkpoint_without_training_state(tmp_path):
    from mechmem import save_checkpoint
    from mechmem.checkpoint import replace

    ckpt = replace(train(TINY.replace(steps=1)), train_state=None)
    save_checkpoint(ckpt, tmp_path / "x.pt")
    with pytest.raises(ValueError, match="has no training state to resume from"):
        resume(tmp_path / "x.pt")


def test_resume_into_another_existing_file_needs_overwrite(tmp_path):
    train(TINY.replace(steps=4, snapshot_every=None), out=tmp_path / "a.pt")
    other = tmp_path / "b.pt"
    other.write_bytes(b"precious")
    with pytest.raises(FileExistsError, match="b.pt exists"):
        resume(tmp_path / "a.pt", steps=6, out=other)
    assert other.read_bytes() == b"precious"
    assert resume(tmp_path / "a.pt", steps=6, out=other, overwrite=True).step == 6
    assert load_checkpoint(tmp_path / "a.pt").step == 4  # the source is left as it was


@pytest.mark.parametrize("batch_size", [50, 200, 10_000])
def test_minibatches_are_equal_disjoint_within_an_epoch_and_reshuffled(batch_size):
    from mechmem import make_dataset
    from mechmem.train.stack import BatchOrder

    config = TINY.replace(batch_size=batch_size)
    ds = make_dataset(config.dataset_spec())
    order = BatchOrder(config, ds.n_train)
    pairs = ds.train_pairs
    size = min(batch_size, ds.n_train)
    per_epoch = ds.n_train // size  # the remainder of an epoch is dropped
    rows = lambda idx: {(int(x), int(y)) for x, y in pairs[idx].tolist()}
    epochs = [[order.indices(e * per_epoch + k) for k in range(per_epoch)] for e in range(2)]
    for epoch in epochs:
        assert all(idx.shape == (size,) for idx in epoch)
        seen = set().union(*(rows(idx) for idx in epoch))
        assert len(seen) == size * per_epoch  # no example twice in an epoch
    if size < ds.n_train:
        assert not torch.equal(epochs[0][0], epochs[1][0])  # a fresh order each epoch
    assert torch.equal(order.indices(1), BatchOrder(config, ds.n_train).indices(1))

"""`TrainConfig(track_examples=True)`: every example's margins at every evaluation, and the
per-example dynamics read from them."""

import pytest
import torch

from mechmem import TrainConfig, analyze, load_checkpoint, make_dataset, train
from mechmem.analysis import example_dynamics
from mechmem.cli import main
from mechmem.train import initial_model, resume
from mechmem.train.memory import bytes_per_run

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = TrainConfig(p=13, width=64, corrupt_frac=0.3, weight_decay=1.0, steps=60, eval_every=20,
                   device="cpu", track_examples=True)


def _margins(model, ds, labels):
    model.eval()
    with torch.no_grad():
        logits = model(ds.model_inputs(ds.train_pairs))
    return logits.gather(1, labels[:, None])[:, 0] - logits.scatter(
        1, labels[:, None], -torch.inf).amax(1)


@pytest.mark.parametrize("family", ["mlp", "transformer"])
def test_margins_are_recorded_at_every_evaluation(family):
    config = TINY if family == "mlp" else TINY.replace(model="transformer", width=16,
                                                       d_model=8, n_heads=2, steps=60)
    ckpt = train(config)
    h, ds = ckpt.history, ckpt.dataset
    assert h["step"] == [0, 20, 40, 60]
    assert len(h["example_margin"]) == len(h["example_true_margin"]) == 4
    assert all(m.shape == (ds.n_train,) and m.dtype == torch.float32
               for m in h["example_margin"])
    torch.testing.assert_close(h["example_margin"][-1], _margins(ckpt.model, ds,
                                                                 ds.train_labels))
    torch.testing.assert_close(h["example_true_margin"][-1],
                               _margins(ckpt.model, ds, ds.train_true_labels))
    start = initial_model(config)
    torch.testing.assert_close(h["example_margin"][0], _margins(start, ds, ds.train_labels))
    # The margins agree with the recorded accuracy.
    assert (h["example_margin"][-1] > 0).double().mean().item() == pytest.approx(
        h["train_acc"][-1])


def test_untracked_runs_and_their_configs_are_unchanged(tmp_path):
    plain = TINY.replace(track_examples=False)
    assert "track_examples" not in plain.to_dict()
    assert TINY.to_dict()["track_examples"] is True
    assert TrainConfig.from_dict(plain.to_dict()) == plain
    assert TrainConfig.from_dict(TINY.to_dict()) == TINY
    ckpt = train(plain, out=tmp_path / "plain.pt")
    assert not any(k.startswith("example_") for k in ckpt.history)
    saved = torch.load(tmp_path / "plain.pt", weights_only=True)
    assert "track_examples" not in saved["train_config"]
    # Tracking changes nothing else.
    tracked = train(TINY)
    for k, v in ckpt.history.items():
        assert tracked.history[k] == v


def test_tracked_margins_survive_a_checkpoint_and_resume(tmp_path):
    whole = train(TINY)
    train(TINY.replace(steps=40), out=tmp_path / "run.pt")
    ckpt = load_checkpoint(tmp_path / "run.pt")
    assert len(ckpt.history["example_margin"]) == 3
    done = resume(tmp_path / "run.pt", steps=60)
    assert done.history["step"] == whole.history["step"]
    for a, b in zip(done.history["example_margin"], whole.history["example_margin"],
                    strict=True):
        assert torch.equal(a, b)


def test_memory_check_counts_the_margins():
    n_train = make_dataset(TINY.dataset_spec()).n_train
    extra = bytes_per_run(TINY) - bytes_per_run(TINY.replace(track_examples=False))
    assert extra == 8 * n_train * (60 // 20 + 2)


def test_dynamics_on_a_table_of_margins():
    ds = make_dataset(p=5, train_frac=0.4, corrupt_frac=0.6, seed=3)
    n = ds.n_train
    corrupted = ds.train_labels != ds.train_true_labels
    i, j = corrupted.nonzero()[:2, 0].tolist()  # two corrupted examples
    k = (~corrupted).nonzero()[0, 0].item()  # a clean one
    m = torch.full((4, n), -1.0)
    t = torch.full((4, n), -1.0)
    m[:, i] = torch.tensor([-1.0, 2.0, 1.0, -0.5])  # memorized at 10, unlearned at 30
    t[:, i] = torch.tensor([-1.0, -2.0, -1.0, 0.5])  # inverted at 30
    m[:, j] = torch.tensor([1.0, -1.0, 1.0, 3.0])  # memorized at 0 and kept
    m[:, k] = torch.tensor([-1.0, -1.0, 1.0, 1.0])  # fitted at 20
    t[:, k] = m[:, k]
    history = {"step": [0, 10, 20, 30], "example_margin": list(m), "example_true_margin": list(t)}
    d = example_dynamics(history, ds)
    assert d.fitted_step[i] == 10 and d.unlearned_step[i] == 30 and d.inverted_step[i] == 30
    assert d.fitted_step[j] == 0 and d.unlearned_step[j].isnan() and d.inverted_step[j].isnan()
    assert d.fitted_step[k] == 20 and d.unlearned_step[k].isnan() and d.inverted_step[k].isnan()
    never = [x for x in range(n) if x not in (i, j, k)][0]
    assert d.fitted_step[never].isnan() and d.unlearned_step[never].isnan()
    assert d.confidence[i] == pytest.approx(0.375)
    assert d.variability[i] == pytest.approx(float(m[:, i].double().std(correction=0)))
    assert d.correctness[j] == pytest.approx(0.75)
    c = d.counts()
    assert (c["memorized"], c["unlearned"], c["inverted"]) == (2, 1, 1)
    assert c["corrupted"] == int(corrupted.sum()) and c["clean_fitted"] == 1


def test_dynamics_needs_tracked_margins_of_the_same_dataset():
    ckpt = train(TINY.replace(track_examples=False, steps=20))
    with pytest.raises(ValueError, match="no per-example margins: train it with"):
        example_dynamics(ckpt.history, ckpt.dataset)
    tracked = train(TINY.replace(steps=20))
    other = make_dataset(p=13, train_frac=0.3)
    with pytest.raises(ValueError, match="pass the run's own dataset"):
        example_dynamics(tracked.history, other)


def test_analyze_and_the_cli_carry_the_dynamics(tmp_path, capsys):
    out = tmp_path / "run.pt"
    rc = main(["train", "--p", "13", "--width", "64", "--corrupt-frac", "0.3", "--steps", "60",
               "--device", "cpu", "--track-examples", "--quiet", "--out", str(out)])
    capsys.readouterr()
    assert rc == 0
    a = analyze(out)
    assert a.example_dynamics is not None
    final = a.example_dynamics.margin[-1]
    torch.testing.assert_close(final, a.examples.margin, atol=1e-5, rtol=1e-5)
    j = a.to_json_dict()["examples"]["dynamics"]
    assert j["evaluations"] == 4 and j["counts"] == a.example_dynamics.counts()
    assert "over training:" in a.summary()
    plain = analyze(train(TINY.replace(track_examples=False, steps=20)))
    assert plain.example_dynamics is None
    assert plain.to_json_dict()["examples"]["dynamics"] is None


def test_sweeps_refuse_per_example_tracking():
    from mechmem import SweepConfig

    with pytest.raises(ValueError, match="`track_examples` applies to single runs"):
        SweepConfig(base=TINY, axes=(("weight_decay", (0.0, 1.0)),))

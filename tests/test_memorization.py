"""Counterfactual memorization: subset models, their scores, and a resumable folder."""

import pytest
import torch
import torch.nn.functional as F

import mechmem
from mechmem import TrainConfig, make_dataset
from mechmem.memorization import subset_dataset, subset_mask
from mechmem.memorization._subsets import model_config, train_subsets
from mechmem.metrics import predict
from mechmem.train import initial_model

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = TrainConfig(p=13, width=32, corrupt_frac=0.3, weight_decay=1.0, steps=40,
                   snapshot_every=None, device="cpu")


def _reference(config, dataset):
    """An independent single run: torch's AdamW on the subset, full batch, MSE."""
    model = initial_model(config)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, betas=config.betas,
                            eps=config.eps, weight_decay=config.weight_decay)
    x, y = dataset.train_pairs, F.one_hot(dataset.train_labels, config.p).float()
    for _ in range(config.steps):
        opt.zero_grad(set_to_none=True)
        F.mse_loss(model(x), y).backward()
        opt.step()
    return model.eval()


def test_halves_are_seeded_and_the_subset_dataset_keeps_labels():
    a, b = subset_mask(101, 0, 3), subset_mask(101, 0, 4)
    assert int(a.sum()) == 50 and torch.equal(a, subset_mask(101, 0, 3))
    assert not torch.equal(a, b) and not torch.equal(a, subset_mask(101, 1, 3))
    ds = make_dataset(TINY.dataset_spec())
    mask = subset_mask(ds.n_train, 0, 0)
    sub = subset_dataset(ds, mask)
    assert sub.n_train == ds.n_train // 2
    assert torch.equal(sub.train_pairs, ds.train_pairs[mask])
    assert torch.equal(sub.train_labels, ds.train_labels[mask])
    assert torch.equal(sub.corrupted, ds.corrupted[mask])
    assert torch.equal(sub.test_idx, ds.test_idx)


def test_each_subset_model_equals_an_independent_run_on_its_subset():
    ds = make_dataset(TINY.dataset_spec())
    ks = [0, 1, 2, 3]
    masks, nets = train_subsets(TINY, ds, ks)
    for k, mask, net in zip(ks, masks, nets, strict=True):
        ref = _reference(model_config(TINY, k), subset_dataset(ds, mask))
        for (name, a), b in zip(net.state_dict().items(), ref.state_dict().values(),
                                strict=True):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4, msg=name)
    # The models differ from each other (their own init and half).
    assert not torch.allclose(nets[0].U, nets[1].U)


def test_scores_count_predictions_in_and_out():
    res = mechmem.memorization(TINY, models=4)
    ds = res.dataset
    _, nets = train_subsets(TINY, ds, [2])
    with torch.no_grad():
        assert torch.equal(res.prediction[2], predict(nets[0](ds.train_pairs)))
    for i in range(0, ds.n_train, 7):
        inn = res.in_subset[:, i]
        hit = (res.prediction[:, i] == ds.train_labels[i]).double()
        if inn.any() and (~inn).any():
            p_in, p_out = hit[inn].mean(), hit[~inn].mean()
            assert res.score[i] == pytest.approx(float(p_in - p_out))
            se = (p_in * (1 - p_in) / inn.sum() + p_out * (1 - p_out) / (~inn).sum()).sqrt()
            assert res.stderr[i] == pytest.approx(float(se))
        else:
            assert res.score[i].isnan()
    assert torch.equal(res.n_in + res.n_out, torch.full((ds.n_train,), 4))
    votes = res.out_of_sample_votes()
    seen = res.n_out > 0
    torch.testing.assert_close(votes[seen].sum(1), torch.ones(int(seen.sum()),
                                                              dtype=torch.float64))
    assert "4 models on random halves" in res.summary()


def test_a_folder_resumes_only_its_missing_chunks(tmp_path):
    out = tmp_path / "mem"
    whole = mechmem.memorization(TINY, models=4, out=out, chunk=2)
    assert sorted(f.name for f in out.iterdir()) == ["chunk-00000.pt", "chunk-00002.pt",
                                                    "memorization.json"]
    (out / "chunk-00002.pt").unlink()
    again = mechmem.memorization(TINY, models=4, out=out, resume=True)
    assert torch.equal(again.prediction, whole.prediction)
    assert torch.equal(again.in_subset, whole.in_subset)
    torch.testing.assert_close(again.score, whole.score, equal_nan=True)
    with pytest.raises(FileExistsError, match="already holds a memorization run"):
        mechmem.memorization(TINY, models=4, out=out)
    with pytest.raises(ValueError, match="holds a different memorization run"):
        mechmem.memorization(TINY, models=6, out=out, resume=True)
    with pytest.raises(FileNotFoundError, match="no memorization run to resume"):
        mechmem.memorization(TINY, models=4, out=tmp_path / "new", resume=True)
    with pytest.raises(ValueError, match=r"`models` must be an integer >= 2 .*, got 1"):
        mechmem.memorization(TINY, models=1)


def test_the_cli_writes_scores(tmp_path, capsys):
    from mechmem.cli import main

    out, table = tmp_path / "mem", tmp_path / "scores.csv"
    argv = ["memorization", "--p", "13", "--width", "32", "--corrupt-frac", "0.3", "--steps",
            "20", "--device", "cpu", "--models", "4", "--out", str(out), "--csv", str(table)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "4 models on random halves" in printed
    rows = table.read_text().splitlines()
    assert rows[0].startswith("example,a,b,label,true_label,memorization,stderr")
    assert len(rows) == 1 + make_dataset(TrainConfig(p=13, corrupt_frac=0.3).dataset_spec()
                                         ).n_train
    assert main(argv) == 2
    assert capsys.readouterr().err.startswith("mechmem memorization: error: ")
    assert main([*argv, "--resume"]) == 0


def test_other_subset_fractions():
    assert int(subset_mask(101, 0, 3, 0.7).sum()) == 70
    res = mechmem.memorization(TINY.replace(steps=10), models=2, subset=0.75)
    n = res.dataset.n_train
    assert res.in_subset.sum(1).tolist() == [int(0.75 * n)] * 2
    assert "0.75-subsets" in res.summary()
    with pytest.raises(ValueError, match=r"`subset` must be a fraction in \(0, 1\), got 1.0"):
        mechmem.memorization(TINY, models=2, subset=1.0)

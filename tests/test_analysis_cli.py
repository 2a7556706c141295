"""`analyze()` on checkpoints and models, and `mechmem analyze` end to end."""

import json
import subprocess
import sys

import pytest
import torch

from mechmem import (
    Checkpoint,
    HookedMLP,
    MLPConfig,
    analytic_solution,
    analyze,
    make_dataset,
    save_checkpoint,
)
from mechmem.cli import main

pytestmark = pytest.mark.usefixtures("one_thread")

PRUNING_KEYS = {"fraction", "corrupted_memorized", "corrupted_true", "clean_train", "train", "test"}


@pytest.fixture
def ckpt_path(tmp_path):
    ds = make_dataset(p=23, train_frac=0.5, corrupt_frac=0.3, seed=0)
    ckpt = Checkpoint(model=analytic_solution(p=23, width=40), dataset=ds,
                      history={"step": [10, 20], "test_acc": [0.5, 1.0]}, step=20,
                      meta={"name": "analytic"})
    return save_checkpoint(ckpt, tmp_path / "analytic.pt")


def test_analyze_a_checkpoint_file(ckpt_path):
    a = analyze(ckpt_path)
    assert a.name == "analytic" and a.history["test_acc"] == [0.5, 1.0]
    assert a.phase.phase == "full_inversion"
    assert a.neurons.generalizing == 40 and a.batchnorm is None
    assert a.config == {"model": a.model.cfg.to_dict(), "model_family": "mlp",
                        "dataset": a.dataset.spec.to_dict()}
    text = a.summary()
    for word in ("full_inversion", "40 periodic", "ipr_ascending", "random"):
        assert word in text


def test_analyze_a_model_needs_its_dataset():
    model = HookedMLP(MLPConfig(p=23, width=8, norm="batchnorm"))
    ds = make_dataset(p=23, train_frac=0.5)
    a = analyze(model, ds, seed=4, threshold=0.5)
    assert a.neurons.method == "user" and a.pruning.seed == 4
    assert a.batchnorm is not None and a.to_json_dict()["batchnorm"].keys() >= {"pearson",
                                                                                  "spearman"}
    with pytest.raises(ValueError, match="needs the model's dataset"):
        analyze(model)
    with pytest.raises(TypeError, match="analyze"):  # the runtime type checker may answer first
        analyze(3)
    with pytest.raises(ValueError, match="does not match dataset p=31"):
        analyze(model, make_dataset(p=31, train_frac=0.5))


def test_cli_text_and_json(ckpt_path, capsys):
    assert main(["analyze", str(ckpt_path)]) == 0
    assert "full_inversion" in capsys.readouterr().out
    assert main(["analyze", str(ckpt_path), "--json", "--threshold", "0.5"]) == 0
    out = capsys.readouterr().out
    assert "NaN" not in out and out.count("\n") == 1
    d = json.loads(out)
    assert d["phase"] == "full_inversion"
    assert d["accuracy"].keys() >= {"train", "test", "clean_train", "corrupted_memorized",
                                    "corrupted_true"}
    assert 0 <= d["accuracy"]["test"] <= 1
    assert d["ipr"]["convention"] == "rfft" and d["ipr"]["dead_neurons"] == 0
    neurons = {k: v for k, v in d["neurons"].items()
               if k not in ("basis_reason", "memorized_accuracy")}
    assert neurons == {"generalizing": 40, "memorizing": 0, "dead": 0, "threshold": 0.5,
                       "method": "user", "basis": "ipr",
                       "names": {"generalizing": "periodic", "memorizing": "non-periodic"}}
    # the analytic solution predicts the true rule: nothing memorized to call a class after
    assert "nothing memorized" in d["neurons"]["basis_reason"]
    assert d["batchnorm"] is None and "config" in d
    for order in ("ipr_ascending", "ipr_descending", "random"):
        curve = d["pruning"][order]
        assert set(curve) == PRUNING_KEYS
        assert {len(v) for v in curve.values()} == {41}


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _bad_files(tmp_path, ckpt_path):
    hostile = tmp_path / "hostile.pt"
    torch.save({"format": "mechmem.checkpoint", "x": _Payload(str(tmp_path / "pwned"))}, hostile)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(ckpt_path.read_bytes()[:3000])
    foreign = tmp_path / "foreign.pt"
    torch.save(HookedMLP(MLPConfig(p=23, width=4)).state_dict(), foreign)
    return [hostile, truncated, foreign, tmp_path / "missing.pt", tmp_path]


def test_cli_refuses_bad_checkpoints_with_one_line(tmp_path, ckpt_path, capsys):
    for path in _bad_files(tmp_path, ckpt_path):
        assert main(["analyze", str(path)]) == 2, path
        captured = capsys.readouterr()
        assert captured.out == ""
        assert captured.err.startswith("mechmem analyze: error: ")
        assert captured.err.count("\n") == 1, captured.err
    assert not (tmp_path / "pwned").exists()


def test_cli_console_script_and_no_plotly(ckpt_path):
    code = (
        "import sys, mechmem, mechmem.analysis\n"
        f"mechmem.analyze({str(ckpt_path)!r}).to_json_dict()\n"
        "assert 'plotly' not in sys.modules, 'plotly was imported'\n"
        "from mechmem.cli import main\n"
        f"sys.exit(main(['analyze', {str(ckpt_path / 'nope')!r}]))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and "no such checkpoint" in proc.stderr


def test_analyze_a_checkpoint_written_by_the_trainer(tmp_path, capsys):
    from mechmem.train import TrainConfig
    from mechmem.train import train as train_run

    cfg = TrainConfig(p=23, width=32, corrupt_frac=0.2, weight_decay=1.0, steps=60,
                      eval_every=20, snapshot_every=30)
    ckpt = train_run(cfg, out=tmp_path / "run.pt")
    a = analyze(tmp_path / "run.pt")
    assert a.config == ckpt.train_config and a.config["weight_decay"] == 1.0
    assert a.history["test_acc"] == ckpt.history["test_acc"]
    assert a.snapshots["U"].shape[1:] == (32, 23)
    assert main(["analyze", str(tmp_path / "run.pt"), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["config"]["betas"] == [0.9, 0.98] and d["config"]["steps"] == 60
    assert d["dynamics"]["neurons"]["steps"] == [0, 30, 60]
    assert d["dynamics"]["test_peak"]["value"] == max(ckpt.history["test_acc"])


def test_cli_progress_definition_reaches_the_progress_measures(tmp_path, capsys):
    from mechmem import TrainConfig, train

    path = tmp_path / "tf.pt"
    train(TrainConfig(model="transformer", p=11, d_model=16, n_heads=2, width=32, steps=30,
                      eval_every=10, device="cpu"), out=path)
    losses = {}
    for definition in ("logits", "mlp"):
        assert main(["analyze", str(path), "--json", "--progress-definition", definition]) == 0
        progress = json.loads(capsys.readouterr().out)["progress"]
        assert progress["definition"] == definition
        losses[definition] = (progress["restricted_loss"], progress["excluded_loss"])
    assert losses["logits"] != losses["mlp"]  # two different measurements, not one relabelled
    out = tmp_path / "tf.html"
    assert main(["report", str(path), "-o", str(out), "--progress-definition", "mlp"]) == 0
    assert out.is_file()
    with pytest.raises(SystemExit) as bad:
        main(["analyze", str(path), "--progress-definition", "activations"])
    assert bad.value.code == 2 and "invalid choice" in capsys.readouterr().err

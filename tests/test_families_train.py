"""Training the 3-layer MLP and the transformer: family defaults, history, snapshots,
checkpoints (and the version-1 file), resume to the same bits, the CLI and sweeps."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from mechmem import SweepConfig, TrainConfig, analyze, load_checkpoint, load_sweep, sweep, train
from mechmem.cli import main
from mechmem.models.families import weight_names
from mechmem.train import resume
from mechmem.train.metrics import HISTORY_KEYS, history_keys

pytestmark = pytest.mark.usefixtures("one_thread")

V1 = Path(__file__).parent / "data" / "checkpoint_v1.pt"
SMALL = {
    "mlp3": {"model": "mlp3", "p": 13, "width": 24},
    "transformer": {"model": "transformer", "p": 13, "d_model": 16, "n_heads": 2, "width": 24},
}


def _config(family, **kw):
    base = {"corrupt_frac": 0.3, "weight_decay": 1.0, "device": "cpu", "steps": 60,
            "eval_every": 10, "snapshot_every": 20, "lr": 3e-3}
    return TrainConfig(**(SMALL[family] | base | kw))


def test_family_defaults_are_the_papers():
    t = TrainConfig(model="transformer")
    assert (t.width, t.act, t.lr, t.steps, t.d_model, t.n_heads, t.init) == (
        512, "relu", 1e-3, 3000, 128, 4, "paper")
    m = TrainConfig()
    assert (m.width, m.act, m.lr, m.steps, m.d_model, m.init) == (500, "quad", 0.01, 2000, None,
                                                                  "paper")
    assert (TrainConfig(model="mlp3").act, TrainConfig(model="mlp3").init) == ("relu", "paper")
    back = t.replace(model="mlp")
    assert back == TrainConfig()
    assert TrainConfig().replace(model="transformer", lr=0.002).lr == 0.002
    assert TrainConfig(model="transformer", width=64).model_config().d_mlp == 64


@pytest.mark.parametrize("fields, message", [
    ({"d_model": 64}, "applies to the transformer only"),
    ({"model": "mlp3", "seeding": "paper"}, "takes seeding='mechmem'"),
    ({"model": "transformer", "norm": "batchnorm"}, "must be one of none, layernorm"),
    ({"model": "transformer", "d_model": 30, "n_heads": 4}, "multiple of `n_heads`"),
    ({"model": "transformer", "dropout_site": "post"}, "applies to the MLPs only"),
    ({"model": "cnn"}, "`model` must be one of mlp, mlp3, transformer"),
])
def test_impossible_family_configs_are_clear_errors(fields, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**fields)


@pytest.mark.parametrize("family", ["mlp3", "transformer"])
def test_config_round_trips(family):
    c = _config(family)
    assert TrainConfig.from_dict(c.to_dict()) == c


@pytest.mark.parametrize("family", ["mlp3", "transformer"])
def test_training_records_history_and_snapshots_and_saves_the_family(family, tmp_path):
    c = _config(family)
    ckpt = train(c, out=tmp_path / "r.pt")
    keys = history_keys(ckpt.model)
    assert tuple(ckpt.history) == keys and ckpt.history["step"] == list(range(0, 61, 10))
    assert "ipr_mean" in keys and ("ipr_embed" in keys or "ipr_layers_0" in keys)
    assert list(ckpt.snapshots) == ["step", *weight_names(ckpt.model)]
    assert ckpt.snapshots["step"].tolist() == [0, 20, 40, 60]
    last = ckpt.snapshots[weight_names(ckpt.model)[0]][-1]
    assert torch.equal(last, dict(ckpt.model.named_parameters())[weight_names(ckpt.model)[0]])
    loaded = load_checkpoint(tmp_path / "r.pt")
    assert loaded.family == family and loaded.config == c
    with torch.no_grad():
        pairs = loaded.dataset.test_pairs
        assert torch.equal(loaded.model(pairs), ckpt.model(pairs))
    # The history's accuracies are the analyzers' accuracies at the end (one kernel).
    acc = analyze(loaded).accuracy
    assert ckpt.history["test_acc"][-1] == acc.test
    assert ckpt.history["corrupted_true_acc"][-1] == acc.corrupted_true


def test_mlp_history_keys_are_unchanged():
    assert history_keys(train(TrainConfig(p=7, width=4, steps=0)).model) == HISTORY_KEYS


@pytest.mark.parametrize("family", ["mlp3", "transformer"])
def test_resume_extends_to_the_same_bits(family, tmp_path):
    kw = {"dropout": 0.1, "batch_size": 40}
    whole = train(_config(family, steps=60, **kw))
    train(_config(family, steps=40, **kw), out=tmp_path / "r.pt")  # 40: a snapshot step
    resumed = resume(tmp_path / "r.pt", steps=60)
    assert resumed.history == whole.history
    for (k, a), b in zip(resumed.model.state_dict().items(), whole.model.state_dict().values(),
                         strict=True):
        assert torch.equal(a, b), k
    for k in whole.snapshots:
        assert torch.equal(resumed.snapshots[k], whole.snapshots[k]), k


LONG_FLAGS = ["--model", "transformer", "--p", "13", "--d-model", "16", "--n-heads", "2",
              "--width", "24", "--device", "cpu", "--corrupt-frac", "0.3", "--steps", "1200",
              "--eval-every", "50", "--snapshot-every", "500", "--batch-size", "40",
              "--dropout", "0.1", "--lr", "0.003"]


_CODE = "import sys; from mechmem.cli import main; raise SystemExit(main(sys.argv[1:]))"


def _cli_process(*argv):
    # A child process runs at full speed (no runtime type checks) on one thread.
    return subprocess.Popen([sys.executable, "-c", _CODE, *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})


def test_transformer_sigkill_then_resume_ends_bit_identical(tmp_path):
    whole = _cli_process("train", *LONG_FLAGS, "--quiet", "-o", str(tmp_path / "whole.pt"))
    out = tmp_path / "run.pt"
    proc = _cli_process("train", *LONG_FLAGS, "--checkpoint-every", "50", "--quiet", "-o",
                        str(out))
    deadline = time.monotonic() + 120
    while not out.exists():
        assert proc.poll() is None, proc.communicate()[1]
        assert time.monotonic() < deadline, "no periodic checkpoint appeared"
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    killed_at = load_checkpoint(out).step
    assert 0 < killed_at < 1200, (killed_at, proc.returncode)
    resumed = _cli_process("train", "--resume", str(out), "--quiet")
    for child in (resumed, whole):
        _, err = child.communicate(timeout=300)  # also closes the pipes
        assert child.returncode == 0, err
    a, b = load_checkpoint(out), load_checkpoint(tmp_path / "whole.pt")
    assert a.step == b.step == 1200
    assert a.history == b.history
    for (k, x), y in zip(a.model.state_dict().items(), b.model.state_dict().values(),
                         strict=True):
        assert torch.equal(x, y), k


def test_cli_trains_analyzes_and_reports_a_transformer(tmp_path, capsys):
    ckpt = tmp_path / "tf.pt"
    flags = LONG_FLAGS[:12] + ["--steps", "20", "--eval-every", "10"]
    assert main(["train", *flags, "--quiet", "-o", str(ckpt)]) == 0
    assert load_checkpoint(ckpt).family == "transformer"
    capsys.readouterr()
    assert main(["analyze", str(ckpt), "--json"]) == 0
    import json

    j = json.loads(capsys.readouterr().out)
    assert j["family"] == "transformer" and set(j["sites"]) == {"embed", "blocks.0.mlp"}
    assert main(["report", str(ckpt), "-o", str(tmp_path / "tf.html")]) == 0
    html = (tmp_path / "tf.html").read_text()
    # what the transformer lacks (BatchNorm) is said in its panel, not in the headline
    assert 'id="fig-site-ipr"' in html and 'id="missing-batchnorm"' in html
    assert 'id="missing-spectra"' in html


@pytest.mark.parametrize("argv, message", [
    (["--model", "mlp", "--n-heads", "2"], "applies to the transformer only"),
    (["--model", "transformer", "--act", "quad"], "must be one of relu, gelu"),
    (["--model", "rnn"], "invalid choice"),
])
def test_cli_family_errors_are_one_line(tmp_path, capsys, argv, message):
    try:
        rc = main(["train", *argv, "--quiet", "-o", str(tmp_path / "x.pt")])
    except SystemExit as e:
        rc = e.code
    err = capsys.readouterr().err
    assert rc == 2 and message in err and len(err.strip().splitlines()) <= 2
    assert not (tmp_path / "x.pt").exists()


@pytest.mark.parametrize("family", ["mlp3", "transformer"])
def test_sweep_trains_other_families(family, tmp_path):
    sc = SweepConfig(_config(family, steps=20, snapshot_every=None),
                     axes=(("weight_decay", (0.0, 1.0)), ("corrupt_frac", (0.1, 0.3))))
    sweep(sc, out=tmp_path / "s", save_weights=True)
    res = load_sweep(tmp_path / "s")
    cell = res.cell(weight_decay=1.0, corrupt_frac=0.3)
    alone = train(_config(family, steps=20, snapshot_every=None))
    assert cell["accuracy"]["test"] == alone.history["test_acc"][-1]
    assert cell["history"]["train_loss"] == alone.history["train_loss"]
    assert set(cell["weight_norms"]) == {k[5:] for k in alone.history if k.startswith("norm_")}
    ckpt = res.checkpoint(weight_decay=1.0, corrupt_frac=0.3)
    assert ckpt.family == family
    for (k, a), b in zip(ckpt.model.state_dict().items(), alone.model.state_dict().values(),
                         strict=True):
        assert torch.equal(a, b), k


def test_version_1_checkpoint_still_loads_and_resumes(tmp_path):
    raw = torch.load(V1, weights_only=True)
    assert raw["version"] == 1 and "model_family" not in raw
    ckpt = load_checkpoint(V1)
    assert ckpt.family == "mlp" and ckpt.step == 20
    w = raw["weights"]
    pairs = ckpt.dataset.pairs
    h = (w["U"][:, pairs[:, 0]] + w["V"][:, pairs[:, 1]]).T ** 2
    h = (h - w["norm.running_mean"]) / torch.sqrt(w["norm.running_var"] + 1e-5)
    h = h * w["norm.weight"] + w["norm.bias"]
    with torch.no_grad():
        torch.testing.assert_close(ckpt.model(pairs), h @ w["W"].T)
    copy = tmp_path / "v1.pt"
    shutil.copy(V1, copy)
    done = resume(copy, steps=30)
    assert done.step == 30 and done.history["step"][-1] == 30
    assert load_checkpoint(copy).to_dict()["version"] == 2


def test_mlp3_with_batchnorm_analyzes_and_reports(tmp_path):
    ckpt = train(_config("mlp3", norm="batchnorm", batch_size=40))
    a = analyze(ckpt)
    assert a.family == "mlp3" and a.batchnorm is not None and a.fourier is None
    assert set(a.site_ipr) == {"layers.0", "layers.1"}
    assert a.batchnorm.gamma_abs.shape == (24,)
    assert "ipr_layers_0" in ckpt.history
    html = a.to_html(tmp_path / "m3.html").read_text()
    assert 'id="fig-batchnorm"' in html and 'id="fig-site-ipr"' in html

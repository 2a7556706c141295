"""`mechmem train`: flags, presets, safe output, and interruption (SIGINT, SIGKILL) in a real
subprocess, resumed to the same bits as an uninterrupted run."""

import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from mechmem import TrainConfig, load_checkpoint, train
from mechmem.cli import main

BASE = ["--p", "23", "--width", "32", "--device", "cpu"]
TINY = BASE + ["--corrupt-frac", "0.3", "--weight-decay", "1"]
# Long enough that the first periodic checkpoint lands well before the end.
LONG = TrainConfig(p=23, width=32, corrupt_frac=0.3, weight_decay=1.0, device="cpu",
                   steps=3000, eval_every=50, snapshot_every=500, batch_size=100, dropout=0.2)
LONG_FLAGS = TINY + ["--steps", "3000", "--eval-every", "50", "--snapshot-every", "500",
                     "--batch-size", "100", "--dropout", "0.2"]


pytestmark = pytest.mark.usefixtures("one_thread")


def _cli(capsys, *argv):
    try:
        rc = main(["train", *argv])
    except SystemExit as e:  # argparse usage errors
        rc = e.code
    out, err = capsys.readouterr()
    return rc, out, err


def test_preset_with_overrides_writes_the_default_path(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    rc, out, err = _cli(capsys, "--preset", "full-inversion", *BASE, "--steps", "20", "--quiet")
    assert (rc, out, err) == (0, "", "")
    ckpt = load_checkpoint(tmp_path / "runs" / "full-inversion.pt")
    c = ckpt.config
    assert (c.weight_decay, c.corrupt_frac, c.p, c.steps, c.name) == (15.0, 0.35, 23, 20,
                                                                     "full-inversion")


def test_summary_line_and_flags_reach_the_config(tmp_path, capsys):
    out_path = tmp_path / "r.pt"
    rc, out, err = _cli(capsys, *TINY, "--steps", "2", "--batch-size", "64", "--act", "relu",
                        "--paper-minibatch-rule", "--snapshot-every", "0", "--name", "n<1>",
                        "--loss", "ce", "--optimizer", "adam", "--lr", "0.02", "-o",
                        str(out_path))
    assert rc == 0 and out.startswith(f"wrote {out_path}: step 8 ")
    c = load_checkpoint(out_path).config
    assert (c.batch_size, c.steps, c.act, c.snapshot_every, c.name, c.loss, c.optimizer) == (
        64, 8, "relu", None, "n<1>", "ce", "adam")
    assert c.lr == pytest.approx(0.01)  # 0.02 x sqrt(64 / 256)


def test_existing_output_is_kept_unless_forced(tmp_path, capsys):
    out_path = tmp_path / "r.pt"
    out_path.write_bytes(b"precious")
    rc, out, err = _cli(capsys, *TINY, "--steps", "2", "-o", str(out_path), "--quiet")
    assert rc == 2 and err.count("\n") == 1 and "exists; pass" in err and "--force" in err
    assert out_path.read_bytes() == b"precious"
    rc, _, _ = _cli(capsys, *TINY, "--steps", "2", "-o", str(out_path), "--quiet", "--force")
    assert rc == 0 and load_checkpoint(out_path).step == 2


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--lr", "-1"], "`lr` must be finite and > 0, got -1.0"),
        (["--batch-size", "0"], "--batch-size: must be 'full' or a positive integer, got '0'"),
        (["--op", "mul", "--p", "12"], "`p` must be prime for mul, got 12"),
        (["--steps", "x"], "--steps: invalid int value: 'x'"),
        (["--device", "tpu"], "--device: invalid choice: 'tpu'"),
        (["--preset", "grok"], "--preset: invalid choice: 'grok'"),
        (["--corrupt-frac", "1.5"], "`corrupt_frac` (xi) must lie in [0, 1), got 1.5"),
        (["--checkpoint-every", "0"], "`checkpoint_every` must be a positive integer, got 0"),
        (["--paper-minibatch-rule"], "--paper-minibatch-rule needs an integer --batch-size"),
        (["--resume", "missing.pt"], "missing.pt: no such checkpoint file"),
        (["--resume", "x.pt", "--width", "8"], "--width cannot change"),
    ],
)
def test_bad_values_are_one_line_and_exit_2(tmp_path, monkeypatch, capsys, argv, message):
    monkeypatch.chdir(tmp_path)
    rc, out, err = _cli(capsys, *argv, "--quiet")
    assert rc == 2 and out == ""
    assert err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "runs" / "default.pt").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present")
def test_cuda_without_a_gpu_is_a_clear_error(tmp_path, capsys):
    rc, _, err = _cli(capsys, "--device", "cuda", "-o", str(tmp_path / "r.pt"))
    assert rc == 2 and "no CUDA GPU is available" in err


@pytest.fixture(scope="module")
def uninterrupted():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # as in the child process (OMP_NUM_THREADS=1)
    try:
        return train(LONG)
    finally:
        torch.set_num_threads(before)


def _start(out):
    code = "import sys; from mechmem.cli import main; raise SystemExit(main(sys.argv[1:]))"
    return subprocess.Popen(
        [sys.executable, "-c", code, "train", *LONG_FLAGS, "--checkpoint-every", "100",
         "--quiet", "-o", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )


def _wait_for(path, proc, timeout=120.0):
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"the run ended early: {proc.communicate()}")
        assert time.monotonic() < deadline, "no periodic checkpoint appeared"
        time.sleep(0.005)


def _assert_same(a, b):
    assert a.step == b.step == LONG.steps
    assert a.history == b.history
    for (k, x), y in zip(a.model.state_dict().items(), b.model.state_dict().values(),
                         strict=True):
        assert torch.equal(x, y), k
    for k in b.snapshots:
        assert torch.equal(a.snapshots[k], b.snapshots[k]), k


def test_sigkill_then_resume_ends_bit_identical(tmp_path, capsys, uninterrupted):
    out = tmp_path / "run.pt"
    proc = _start(out)
    _wait_for(out, proc)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    killed_at = load_checkpoint(out).step  # the atomic write left a whole file
    assert 0 < killed_at < LONG.steps and killed_at % 100 == 0
    rc, _, err = _cli(capsys, "--resume", str(out), "--quiet")
    assert rc == 0, err
    _assert_same(load_checkpoint(out), uninterrupted)


def test_sigint_saves_exits_cleanly_and_resumes_bit_identical(tmp_path, capsys, uninterrupted):
    out = tmp_path / "run.pt"
    proc = _start(out)
    _wait_for(out, proc)
    os.kill(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    saved = load_checkpoint(out)
    assert 0 < saved.step < LONG.steps
    assert err == (f"mechmem train: interrupted at step {saved.step}; saved to {out}; "
                   f"continue with: mechmem train --resume {out}\n")
    rc, _, err = _cli(capsys, "--resume", str(out), "--quiet")
    assert rc == 0, err
    _assert_same(load_checkpoint(out), uninterrupted)

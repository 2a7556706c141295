"""A chunk in training keeps its state in the sweep folder: a sweep killed in the middle of a chunk
continues that chunk on --resume, to the same cells, bit for bit, as an uninterrupted sweep."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from mechmem import TrainConfig
from mechmem.sweep import SweepConfig, load_sweep, sweep, train_chunk
from mechmem.sweep.partial import load_partial, partial_path, save_partial

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("kw", [
    {"model": "mlp"},
    {"model": "mlp", "batch_size": 32, "dropout": 0.1, "norm": "batchnorm"},
    {"model": "transformer", "d_model": 16, "n_heads": 2, "batch_size": 32, "dropout": 0.1},
    {"model": "mlp3", "batch_size": 32},
])
def test_a_chunk_continued_from_any_saved_state_ends_bit_identical(kw):
    configs = [TrainConfig(p=13, width=16, steps=30, eval_every=10, device="cpu", seed=k,
                           corrupt_frac=0.2, **kw) for k in range(2)]
    whole, weights = train_chunk(configs, keep_weights=True)
    states: list = []
    train_chunk(configs, save=states.append, save_every=1e-9)  # a save before every step
    assert [s["step"] for s in states] == list(range(1, 30))
    for state in (states[0], states[9], states[17]):  # after, at and before an evaluation
        seen = []
        cells, w = train_chunk(configs, keep_weights=True, start=state, on_step=seen.append)
        assert cells == whole
        assert all(torch.equal(w[k], weights[k]) for k in weights)
        assert sum(seen) == 2 * 30  # the progress of the saved steps is counted once


def test_resume_continues_from_the_saved_state(tmp_path):
    grid = SweepConfig(TrainConfig(p=13, width=16, steps=40, eval_every=10, device="cpu"),
                       axes=(("seed", (0, 1)),))
    states: list = []
    train_chunk(grid.cells(), save=states.append, save_every=1e-9)
    folder = tmp_path / "s"
    whole = sweep(grid, out=tmp_path / "whole")
    sweep(grid, out=folder)
    (folder / "cells.jsonl").write_text("")  # the folder as a kill in its chunk leaves it
    state = states[24]
    state["history"][1]["train_acc"][0] = -1.0  # a mark only the saved state carries
    ids = json.loads((folder / "sweep.json").read_text())["cells"]
    save_partial(partial_path(folder, 0), ids, state)
    cells = sorted(sweep(out=folder, resume=True).cells, key=lambda c: c["index"])
    assert cells[1]["history"]["train_acc"][0] == -1.0
    cells[1]["history"]["train_acc"][0] = whole.cells[1]["history"]["train_acc"][0]
    assert cells == sorted(whole.cells, key=lambda c: c["index"])
    assert not partial_path(folder, 0).exists()  # gone once the chunk's cells are written


def test_a_partial_state_of_other_cells_is_refused(tmp_path):
    path = partial_path(tmp_path, 3)
    save_partial(path, ["a", "b"], {"step": 1, "state": {}, "optimizer": [], "history": []})
    with pytest.raises(ValueError, match=r"chunk-00003.pt holds the state of other cells"):
        load_partial(path, ["a", "c"])
    path.write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(ValueError, match=r"cannot be read safely .*remove it to train"):
        load_partial(path, ["a", "b"])
    assert load_partial(partial_path(tmp_path, 4), ["a"]) is None


def test_the_save_interval_is_checked(tmp_path):
    grid = SweepConfig(TrainConfig(p=13, width=16, steps=5, device="cpu"))
    with pytest.raises(ValueError, match=r"save_every\) must be a positive .* got -1"):
        sweep(grid, out=tmp_path / "s", save_every=-1)
    with pytest.raises(ValueError, match=r"positive number of seconds, got nan"):
        sweep(grid, out=tmp_path / "s", save_every=float("nan"))
    assert not (tmp_path / "s").exists()


def test_the_cli_refuses_a_bad_save_interval_in_one_line(tmp_path, capsys):
    from mechmem.cli import main

    rc = main(["sweep", "--p", "11", "--width", "8", "--steps", "3", "--device", "cpu",
               "--chunk-save-every", "0", "-o", str(tmp_path / "s")])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "got 0.0" in err, err
    assert not (tmp_path / "s").exists()


# One chunk of two runs, long enough to be killed in its middle (seconds at one thread).
LONG = ["--p", "23", "--width", "64", "--device", "cpu", "--steps", "20000", "--eval-every", "50",
        "--weight-decay", "0,1", "--chunk-size", "2", "--quiet"]


def _spawn(*argv):
    return subprocess.Popen([sys.executable, "-m", "mechmem", "sweep", *argv],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})


def _cells(folder):
    return sorted((json.loads(x) for x in (folder / "cells.jsonl").read_text().splitlines()),
                  key=lambda c: c["index"])


def test_sigkill_in_the_middle_of_a_chunk_then_resume_continues_it_bit_identical(tmp_path):
    whole = _spawn(*LONG, "-o", str(tmp_path / "whole"))
    folder = tmp_path / "killed"
    proc = _spawn(*LONG, "--chunk-save-every", "0.2", "-o", str(folder))
    partial = partial_path(folder, 0)
    deadline = time.monotonic() + 300
    while not partial.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no chunk state was saved"
        time.sleep(0.01)
    time.sleep(0.3)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert (folder / "cells.jsonl").read_text() == ""  # killed in the middle of its one chunk
    ids = json.loads((folder / "sweep.json").read_text())["cells"]
    step = load_partial(partial, ids)["step"]
    assert 0 < step < 20000
    resumed = _spawn("--resume", str(folder))
    for child in (resumed, whole):
        _, err = child.communicate(timeout=600)
        assert child.returncode == 0, err
    assert _cells(folder) == _cells(tmp_path / "whole")
    assert not partial.exists()
    assert load_sweep(folder).n_cells == 2

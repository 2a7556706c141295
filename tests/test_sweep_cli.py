"""`mechmem sweep`: flags into grids, one-line errors, and interruption (SIGINT, SIGKILL) of a real
subprocess, resumed to the cells of an uninterrupted sweep."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from mechmem.cli import main
from mechmem.sweep import load_sweep

BASE = ["--p", "23", "--width", "32", "--device", "cpu", "--steps", "40", "--eval-every", "10"]

pytestmark = pytest.mark.usefixtures("one_thread")


def _cli(capsys, *argv):
    try:
        rc = main(["sweep", *argv])
    except SystemExit as e:  # argparse usage errors
        rc = e.code
    out, err = capsys.readouterr()
    return rc, out, err


def test_lists_and_ranges_become_axes_and_single_values_the_base(tmp_path, capsys):
    out = tmp_path / "s"
    rc, stdout, err = _cli(capsys, *BASE, "--weight-decay", "0,2", "--corrupt-frac", "0:0.4:3",
                           "--train-frac", "0.5", "--act", "quad,relu", "-o", str(out),
                           "--quiet")
    assert (rc, stdout, err) == (0, "", "")
    result = load_sweep(out)
    assert dict(result.config.axes) == {"weight_decay": (0.0, 2.0),
                                        "corrupt_frac": (0.0, 0.2, 0.4), "act": ("quad", "relu")}
    assert result.config.base.train_frac == 0.5 and result.config.base.p == 23
    assert len(result.cells) == 12 and result.complete


def test_preset_axes_are_replaced_by_flags_and_the_summary_names_the_folder(tmp_path, capsys,
                                                                            monkeypatch):
    monkeypatch.chdir(tmp_path)
    rc, stdout, err = _cli(capsys, "--preset", "fig3a", *BASE, "--weight-decay", "15",
                           "--train-frac", "0.3,0.6", "--corrupt-frac", "0.1,0.5", "--quiet")
    assert rc == 0, err
    result = load_sweep(tmp_path / "sweeps" / "fig3a")
    assert dict(result.config.axes) == {"weight_decay": (15.0,), "corrupt_frac": (0.1, 0.5),
                                        "train_frac": (0.3, 0.6)}
    assert result.config.base.steps == 40 and len(result.cells) == 4
    rc, stdout, err = _cli(capsys, *BASE, "--seed", "0,1", "-o", str(tmp_path / "t"))
    assert rc == 0 and stdout.startswith(f"wrote {tmp_path / 't'}: 2 cells (")


@pytest.mark.parametrize(("argv", "message"), [
    (["--corrupt-frac", "0.1,1.2"], r"corrupt_frac=1.2: `corrupt_frac` \(xi\) must lie"),
    (["--op", "mul", "--p", "12"], "`p` must be prime for mul, got 12"),
    (["--weight-decay", "0,x"], "argument --weight-decay: invalid float value: 'x'"),
    (["--train-frac", "0.1:0.9"], "argument --train-frac"),
    (["--norm", "batchnorm,bogus"], "invalid choice: 'bogus'"),
    (["--p", "3000", "--seed", "0,1"], r"needs about [\d.]+ GB of cpu memory"),
    (["--chunk-size", "0"], "--chunk-size must be a positive integer"),
])
def test_bad_input_is_one_line_and_exit_2_before_training(tmp_path, capsys, argv, message):
    out = tmp_path / "bad"
    rc, stdout, err = _cli(capsys, *BASE, *argv, "-o", str(out))
    assert rc == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert __import__("re").search(message, err), err
    assert not out.exists()  # nothing written


def test_existing_folders_need_resume_or_force(tmp_path, capsys):
    out = str(tmp_path / "s")
    assert _cli(capsys, *BASE, "--seed", "0,1", "-o", out, "--quiet")[0] == 0
    rc, _, err = _cli(capsys, *BASE, "--seed", "0,1", "-o", out)
    assert rc == 2 and "--resume to continue it or --force" in err
    rc, _, err = _cli(capsys, "--resume", out, "--seed", "3")
    assert rc == 2 and "--seed cannot be given" in err
    assert _cli(capsys, "--resume", out, "--quiet")[0] == 0
    rc, _, err = _cli(capsys, "--resume", str(tmp_path))
    assert rc == 2 and "is not a sweep folder" in err
    assert _cli(capsys, *BASE, "--seed", "5", "-o", out, "--force", "--quiet")[0] == 0
    assert load_sweep(out).n_cells == 1


# Four chunks of one cell each, long enough to be stopped in the middle.
LONG = ["--p", "23", "--width", "32", "--device", "cpu", "--steps", "1500", "--eval-every", "50",
        "--weight-decay", "0,1,2,3", "--chunk-size", "1", "--save-weights"]


def _spawn(*argv):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "mechmem", "sweep", *argv],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _finish(proc, timeout=600):
    out, err = proc.communicate(timeout=timeout)  # also closes the pipes
    return proc.returncode, out, err


def _wait_for_cells(folder, n, proc, timeout=120):
    start = time.monotonic()
    path = folder / "cells.jsonl"
    while time.monotonic() - start < timeout:
        if path.exists() and len(path.read_text().splitlines()) >= n:
            return
        if proc.poll() is not None:
            raise AssertionError(f"sweep ended early: {_finish(proc)}")
        time.sleep(0.05)
    raise AssertionError("no cell finished in time")


def _cells(folder):
    return sorted((json.loads(x) for x in (folder / "cells.jsonl").read_text().splitlines()),
                  key=lambda c: c["index"])


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sweep") / "full"
    rc, _, err = _finish(_spawn(*LONG, "-o", str(folder), "--quiet"))
    assert rc == 0, err
    return folder


def test_sigkill_then_resume_trains_only_missing_chunks_bit_identical(tmp_path, uninterrupted):
    folder = tmp_path / "killed"
    proc = _spawn(*LONG, "-o", str(folder), "--quiet")
    _wait_for_cells(folder, 1, proc)
    proc.send_signal(signal.SIGKILL)
    assert _finish(proc, 60)[0] == -signal.SIGKILL
    kept = _cells(folder)
    assert 1 <= len(kept) < 4  # finished chunks survived, unfinished ones did not
    rc, _, err = _finish(_spawn("--resume", str(folder), "--quiet"))
    assert rc == 0, err
    cells = _cells(folder)
    assert cells[: len(kept)] == kept  # finished cells were not trained again
    assert cells == _cells(uninterrupted)
    assert load_sweep(folder).checkpoint(weight_decay=3.0).step == 1500


def test_sigint_keeps_finished_chunks_exits_130_and_resumes(tmp_path, uninterrupted):
    folder = tmp_path / "stopped"
    proc = _spawn(*LONG, "-o", str(folder))
    _wait_for_cells(folder, 1, proc)
    proc.send_signal(signal.SIGINT)
    rc, _, err = _finish(proc, 120)
    assert rc == 130, err
    assert f"continue with: mechmem sweep --resume {folder}" in err
    assert "Traceback" not in err
    assert 1 <= len(_cells(folder)) < 4
    rc, _, err = _finish(_spawn("--resume", str(folder), "--quiet"))
    assert rc == 0, err
    assert _cells(folder) == _cells(uninterrupted)

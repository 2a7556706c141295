import subprocess
import sys

from mechmem import Checkpoint, analytic_solution, make_dataset, save_checkpoint
from mechmem.cli import build_parser


def test_help_lists_every_command():
    text = build_parser().format_help()
    for command in ("info", "train", "analyze", "report"):
        assert command in text


def test_usage_errors_are_one_line_exit_2():
    r = subprocess.run([sys.executable, "-m", "mechmem", "bogus"], capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "invalid choice" in r.stderr


def test_reader_closing_the_pipe_is_not_an_error(tmp_path):
    # JSON far larger than a pipe buffer, read only in part.
    path = save_checkpoint(
        Checkpoint(analytic_solution(p=31, width=400), make_dataset(op="add", p=31)),
        tmp_path / "a.pt",
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "mechmem", "analyze", str(path), "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    assert proc.stdout.read(10).startswith(b"{")
    proc.stdout.close()
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0
    assert err == b""


def test_version_prints_the_package_version():
    import mechmem

    r = subprocess.run([sys.executable, "-m", "mechmem", "--version"], capture_output=True,
                       text=True)
    assert r.returncode == 0 and r.stdout == f"mechmem {mechmem.__version__}\n"


def _info(path, *extra, env=None):
    return subprocess.run([sys.executable, "-m", "mechmem", "info", str(path), *extra],
                          capture_output=True, text=True, env=env)


def test_info_shows_the_final_accuracies_and_phase(tmp_path):
    from mechmem import TrainConfig, train
    from mechmem.analysis import accuracies, classify_phase

    ckpt = train(TrainConfig(p=23, width=32, steps=60, corrupt_frac=0.2, snapshot_every=None,
                             device="cpu"), out=tmp_path / "a.pt")
    acc = accuracies(ckpt.model, ckpt.dataset)
    phase = classify_phase(acc, 0.2, ckpt.history)
    r = _info(tmp_path / "a.pt")
    assert r.returncode == 0, r.stderr
    lines = dict(line.split(None, 1) for line in r.stdout.splitlines())
    assert lines["accuracy"] == (f"train {acc.train:.1%}  test {acc.test:.1%}  corrupted "
                                 f"memorized {acc.corrupted_memorized:.1%}  corrupted true "
                                 f"{acc.corrupted_true:.1%}")
    assert lines["phase"] == f"{phase.phase} ({phase.reason})"
    # a clean run has no corrupted labels to report on
    path = save_checkpoint(Checkpoint(analytic_solution(p=23, width=64),
                                      make_dataset(op="add", p=23)), tmp_path / "clean.pt")
    out = _info(path).stdout
    import re

    assert re.search(r"\naccuracy    train [\d.]+%  test [\d.]+%\nphase", out), out


def test_threads_flag_and_environment_are_checked(tmp_path):
    import os

    import pytest

    from mechmem._threads import default_threads, use_threads

    for command in ("train", "sweep", "analyze", "report"):
        assert "--threads N" in build_parser()._subparsers._group_actions[0].choices[
            command].format_usage()
    path = save_checkpoint(Checkpoint(analytic_solution(p=23, width=64),
                                      make_dataset(op="add", p=23)), tmp_path / "a.pt")
    r = subprocess.run([sys.executable, "-m", "mechmem", "analyze", str(path), "--threads",
                        "0"], capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr == (
        "mechmem analyze: error: argument --threads: must be a positive integer, got '0'\n")
    r = _info(path, env={**os.environ, "MECHMEM_THREADS": "many"})
    assert r.returncode == 2 and r.stderr == (
        "mechmem info: error: MECHMEM_THREADS must be a positive integer, got 'many'.\n")
    import torch

    before = torch.get_num_threads()
    try:
        assert use_threads(1) == 1 and torch.get_num_threads() == 1
        with pytest.raises(ValueError, match="positive integer, got 0"):
            use_threads(0)
    finally:
        torch.set_num_threads(before)
    assert default_threads() == int(os.environ.get("MECHMEM_THREADS", "1"))


def test_the_commands_run_on_the_thread_count_asked_for(tmp_path):
    import os

    code = ("import sys, torch\nfrom mechmem.cli import main\n"
            "assert main(['train', '--p', '7', '--width', '4', '--steps', '1', '--quiet', "
            "'-o', sys.argv[1], '--force'] + sys.argv[2:]) == 0\n"
            "print(torch.get_num_threads())\n")
    env = {k: v for k, v in os.environ.items() if k not in ("MECHMEM_THREADS", "OMP_NUM_THREADS")}
    for extra, env_threads, expected in (([], None, "1"), (["--threads", "2"], None, "2"),
                                         ([], "2", "2"), (["--threads", "1"], "2", "1")):
        e = env if env_threads is None else {**env, "MECHMEM_THREADS": env_threads}
        out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "a.pt"), *extra],
                             env=e, capture_output=True, text=True, check=True).stdout
        assert out.strip() == expected

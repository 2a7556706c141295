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

"""`mechmem report CKPT`: default output path, --force, and refusals of bad checkpoints."""

import os
import shutil

import pytest
import torch

from mechmem import TrainConfig, train
from mechmem.cli import main


@pytest.fixture(scope="module")
def ckpt_path(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli")
    config = TrainConfig(p=23, width=32, corrupt_frac=0.2, steps=60, eval_every=20,
                         snapshot_every=None, device="cpu")
    train(config, out=folder / "run.pt")
    return folder / "run.pt"


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("mechmem report: error: "), err
    return err


def test_report_writes_next_to_the_checkpoint_and_respects_force(ckpt_path, tmp_path, capsys):
    src = tmp_path / "run.pt"
    shutil.copy(ckpt_path, src)
    assert main(["report", str(src)]) == 0
    out = tmp_path / "run.html"
    assert capsys.readouterr().out.strip() == str(out)
    assert out.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")

    out.write_text("keep me")
    assert main(["report", str(src)]) == 2
    assert "exists; pass --force" in one_error_line(capsys)
    assert out.read_text() == "keep me"

    assert main(["report", str(src), "--force"]) == 0
    assert "plotly.js v" in out.read_text(encoding="utf-8")

    other = tmp_path / "elsewhere.html"
    assert main(["report", str(src), "-o", str(other)]) == 0
    assert other.exists()
    assert sorted(os.listdir(tmp_path)) == ["elsewhere.html", "run.html", "run.pt"]


class _Boom:
    """Unpickling this runs a shell command; a safe loader must refuse before that."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _hostile(folder):
    path = folder / "hostile.pt"
    torch.save({"format": "mechmem.checkpoint", "version": 1, "x": _Boom(folder / "pwned")},
               path)
    return path


def _truncated(folder, ckpt_path):
    data = ckpt_path.read_bytes()
    path = folder / "truncated.pt"
    path.write_bytes(data[: len(data) // 2])
    return path


def _foreign(folder):
    path = folder / "foreign.pt"
    torch.save({"weight": torch.zeros(3, 3)}, path)
    return path


@pytest.mark.parametrize("kind", ["hostile", "truncated", "foreign", "missing"])
def test_bad_checkpoint_is_one_line_exit_2_and_leaves_no_file(kind, ckpt_path, tmp_path,
                                                              capsys):
    path = {
        "hostile": lambda: _hostile(tmp_path),
        "truncated": lambda: _truncated(tmp_path, ckpt_path),
        "foreign": lambda: _foreign(tmp_path),
        "missing": lambda: tmp_path / "missing.pt",
    }[kind]()
    before = set(os.listdir(tmp_path))
    assert main(["report", str(path)]) == 2
    err = one_error_line(capsys)
    assert str(path.name) in err
    assert not (tmp_path / "pwned").exists()  # nothing in the file was executed
    assert set(os.listdir(tmp_path)) == before  # no report, no temporary file


def test_report_refuses_to_write_over_its_own_checkpoint(ckpt_path, capsys):
    before = ckpt_path.read_bytes()
    assert main(["report", str(ckpt_path), "-o", str(ckpt_path), "--force"]) == 2
    assert "would replace the checkpoint" in one_error_line(capsys)
    assert ckpt_path.read_bytes() == before

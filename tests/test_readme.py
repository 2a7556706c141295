"""The README runs as written: its code blocks, in order, in a temporary copy of the repository.

Bash blocks run through bash with `.venv/bin` standing for the set-up's virtual environment (its
`mechmem` is this interpreter's `python -m mechmem`, its `activate` puts it on PATH); the set-up
lines themselves (`bash .ci/setup`, `bash .ci/test`) are not rerun. Python blocks run in one
interpreter namespace. Nothing is shrunk: this trains what the README trains (minutes).
"""

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

import mechmem

ROOT = Path(__file__).resolve().parent.parent
SETUP = re.compile(r"^bash \.ci/(setup|test)\b(\s*&&\s*)?")

pytestmark = pytest.mark.slow


def blocks(text: str) -> list[tuple[str, str]]:
    """The README's fenced code blocks, (language, code), in order."""
    return re.findall(r"^```(bash|python)\n(.*?)^```", text, flags=re.S | re.M)


def without_setup(code: str) -> str:
    """A bash block without the set-up commands (`bash .ci/setup && rest` keeps `rest`)."""
    out = []
    for line in code.splitlines():
        m = SETUP.match(line)
        if m:
            if not m.group(2):
                continue  # the whole line is the set-up
            line = line[m.end():]
        out.append(line)
    return "\n".join(out) + "\n"


def _venv(root: Path) -> dict[str, str]:
    """`.venv/bin` in the copy: `mechmem`, `python` and `activate` standing for the set-up's."""
    bin_ = root / ".venv" / "bin"
    bin_.mkdir(parents=True)
    (bin_ / "mechmem").write_text(f'#!/bin/sh\nexec "{sys.executable}" -m mechmem "$@"\n')
    (bin_ / "mechmem").chmod(0o755)
    (bin_ / "python").symlink_to(sys.executable)
    (bin_ / "activate").write_text(f'export PATH="{bin_}:$PATH"\n')
    package_root = str(Path(mechmem.__file__).resolve().parent.parent)
    return {**os.environ, "PYTHONPATH": package_root}


def test_blocks_are_found_and_the_setup_is_the_only_line_left_out():
    found = blocks((ROOT / "README.md").read_text())
    assert [lang for lang, _ in found][:2] == ["bash", "bash"] and found[-1][0] == "python"
    first = without_setup(found[0][1])
    assert "bash .ci" not in first and ".venv/bin/mechmem train" in first
    assert without_setup("bash .ci/test\nmechmem info x\n") == "mechmem info x\n"


def test_readme_runs_in_order(tmp_path, monkeypatch):
    copy = tmp_path / "mechmem"
    shutil.copytree(ROOT, copy, ignore=shutil.ignore_patterns(
        ".git", ".venv", "runs", "sweeps", "small-sweep", "__pycache__", "*.pt"))
    env = _venv(copy)
    monkeypatch.chdir(copy)
    namespace: dict = {}
    times = []
    for k, (lang, code) in enumerate(blocks((copy / "README.md").read_text())):
        start = time.perf_counter()
        if lang == "bash":
            r = subprocess.run(["bash", "-euo", "pipefail", "-c", without_setup(code)],
                               cwd=copy, env=env, capture_output=True, text=True)
            assert r.returncode == 0, f"README bash block {k} failed:\n{r.stderr[-3000:]}"
        else:
            if "to_transformer_lens" in code:
                pytest.importorskip("transformer_lens")
            exec(compile(code, f"README.md python block {k}", "exec"), namespace)
        times.append((k, lang, time.perf_counter() - start))
    # what the README promises exists
    for path in ("runs/partial-inversion.pt", "runs/partial-inversion.html", "runs/wd15.html",
                 "runs/wd15-pruning.html", "sweeps/small/report.html", "small-sweep"):
        assert (copy / path).exists(), path
    # the transformer's lines print real values: it generalized, so it has key frequencies
    tf = namespace["tf"]
    assert tf.history["test_acc"][-1] > 0.9
    assert len(namespace["analyze"](tf).progress.key_freqs) > 0
    # the README's outputs are ignored by git
    written = ["runs/x.pt", "sweeps/small/sweep.json", "small-sweep/sweep.json"]
    r = subprocess.run(["git", "check-ignore", *written], cwd=ROOT, capture_output=True,
                       text=True)
    assert r.stdout.split() == written
    print("README block seconds:", ", ".join(f"{k} {lang} {s:.0f}" for k, lang, s in times))

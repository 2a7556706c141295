"""A sweep's plan and time estimate before it starts, and an ETA that settles."""

import math
import os
import subprocess
import sys

import pytest
import torch

import mechmem
from mechmem import SweepConfig, TrainConfig, sweep
from mechmem.sweep import plan_chunks
from mechmem.sweep.estimate import Eta, estimate_plan, format_seconds

BASE = TrainConfig(p=11, width=8, steps=20, eval_every=10, snapshot_every=None, device="cpu")
GRID = SweepConfig(BASE, axes=(("weight_decay", (0.0, 1.0)), ("train_frac", (0.3, 0.7))),
                   chunk_size=2)


def test_estimate_counts_the_plan_and_times_a_warmup():
    cells = GRID.cells()
    chunks = plan_chunks(cells, torch.device("cpu"), 2)
    est = estimate_plan(cells, chunks, chunks, torch.device("cpu"))
    assert (est.cells, est.chunks, est.model_steps) == (4, len(chunks), 80)
    assert 0 < est.seconds < 60 and math.isfinite(est.seconds) and est.device == "cpu"
    assert est.describe().startswith(f"plan: 4 cells in {len(chunks)} chunks, 80 model-steps; "
                                     "estimated ")
    nothing = estimate_plan(cells, chunks, [], torch.device("cpu"))
    assert nothing.seconds == 0.0


def test_eta_starts_at_the_estimate_and_settles_on_the_measured_rate():
    eta = Eta(total=1000, estimate=500.0)
    assert eta.remaining(0.0) == pytest.approx(500.0)
    # The sweep really runs at 2 s per model-step, in chunks alternately 4x faster and slower
    # than that: the ETA moves toward the truth and, once there, swings far less than the speed.
    elapsed, etas = 0.0, []
    for k in range(10):
        rate = 0.8 if k % 2 == 0 else 3.2
        for _ in range(10):
            eta.update(10)
            elapsed += 10 * rate
        etas.append((eta.remaining(elapsed), (1000 - eta.done) * 2.0))
    late = [e / truth for e, truth in etas[3:-1]]
    assert max(late) / min(late) < 1.6  # the chunk speeds differ by 4x
    assert eta.remaining(elapsed) == 0.0
    unknown = Eta(total=10, estimate=None)
    assert unknown.remaining(0.0) == math.inf
    unknown.update(5)
    assert unknown.remaining(10.0) == pytest.approx(10.0)


@pytest.mark.parametrize(("seconds", "text"), [(12.3, "12 s"), (600, "10 min"),
                                                (9000, "2.5 h"), (math.inf, "?")])
def test_format_seconds(seconds, text):
    assert format_seconds(seconds) == text


def test_a_sweep_with_progress_prints_its_plan_first(tmp_path, capsys):
    sweep(GRID, out=tmp_path / "s", progress=True)
    err = capsys.readouterr().err
    assert err.startswith("plan: 4 cells in 2 chunks, 80 model-steps; estimated ")
    assert "eta=" in err and "cells=4/4" in err
    sweep(GRID, out=tmp_path / "quiet")
    assert capsys.readouterr().err == ""


def test_cli_plan_prints_and_writes_nothing(tmp_path):
    r = subprocess.run([sys.executable, "-m", "mechmem", "sweep", "--p", "11", "--width", "8",
                        "--steps", "20", "--weight-decay", "0,1", "--plan", "--device", "cpu"],
                       capture_output=True, text=True, cwd=tmp_path,
                       env={**os.environ, "PYTHONPATH": os.path.dirname(
                           os.path.dirname(mechmem.__file__))})
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("plan: 2 cells in 1 chunk, 40 model-steps; estimated ")
    assert list(tmp_path.iterdir()) == []

"""The Ray backend against a real local Ray instance: the same cells as a local sweep, a killed
worker's chunk retried, a killed driver resumed, and Ray kept out of everything else."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from mechmem import TrainConfig
from mechmem.cli import main
from mechmem.sweep import SweepConfig, load_sweep, sweep

ray = pytest.importorskip("ray")

pytestmark = pytest.mark.usefixtures("one_thread")

GRID = SweepConfig(
    TrainConfig(p=23, width=32, steps=300, eval_every=50, snapshot_every=None, device="cpu",
                corrupt_frac=0.2),
    axes=(("weight_decay", (0.0, 1.0, 2.0, 3.0)), ("train_frac", (0.4, 0.6))),
    chunk_size=2,
)


@pytest.fixture(scope="module")
def ray_instance():
    """One local Ray instance for the module (starting one costs seconds)."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def local_cells(tmp_path_factory):
    return load_sweep(sweep(GRID, out=tmp_path_factory.mktemp("local") / "s").path).cells


def test_a_ray_sweep_has_the_cells_of_a_local_sweep(ray_instance, local_cells, tmp_path):
    result = sweep(GRID, out=tmp_path / "r", backend="ray", save_weights=True)
    assert result.cells == local_cells  # bit-identical records on the CPU
    assert len(list((tmp_path / "r" / "weights").iterdir())) == 4  # written by the driver
    assert result.checkpoint(weight_decay=3.0, train_frac=0.6).step == 300
    assert ray.is_initialized()  # an instance the caller started is left running


def _task_pids() -> list[int]:
    """Worker processes running a chunk now (Ray titles them after the task's function)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmd = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if cmd.startswith(b"ray::_chunk_task"):
                pids.append(int(entry.name))
    return pids


def test_a_killed_worker_is_retried_and_the_sweep_completes_the_same(ray_instance, tmp_path):
    slow = SweepConfig(GRID.base.replace(steps=1500), GRID.axes, chunk_size=2)
    reference = sweep(slow, out=tmp_path / "ref")
    outcome: dict = {}
    runner = threading.Thread(
        target=lambda: outcome.update(result=sweep(slow, out=tmp_path / "r", backend="ray")))
    runner.start()
    start, killed = time.monotonic(), None
    while killed is None and time.monotonic() - start < 120:
        pids = _task_pids()
        if pids:
            killed = pids[0]
            os.kill(killed, signal.SIGKILL)
        time.sleep(0.05)
    runner.join(timeout=600)
    assert killed is not None, "no chunk was seen running"
    assert not runner.is_alive() and "result" in outcome
    assert outcome["result"].cells == reference.cells


def _spawn(*argv):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "mechmem", "sweep", *argv],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def test_a_killed_driver_resumes_training_only_missing_chunks(tmp_path):
    # A subprocess driver that starts (and fate-shares) its own local Ray instance.
    args = ["--p", "23", "--width", "32", "--device", "cpu", "--steps", "1500",
            "--eval-every", "50", "--weight-decay", "0,1,2,3", "--chunk-size", "1", "--quiet"]
    full = tmp_path / "full"
    proc = _spawn(*args, "-o", str(full))
    assert proc.communicate(timeout=600)[0] == "" and proc.returncode == 0
    folder = tmp_path / "killed"
    proc = _spawn(*args, "--backend", "ray", "-o", str(folder))
    start = time.monotonic()
    path = folder / "cells.jsonl"
    while time.monotonic() - start < 300:
        if path.exists() and path.read_text().strip():
            break
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    kept = [json.loads(x) for x in path.read_text().splitlines()]
    assert 1 <= len(kept) < 4
    resumed = _spawn("--resume", str(folder), "--backend", "ray")
    _, err = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, err
    cells = sorted(load_sweep(folder).cells, key=lambda c: c["index"])
    assert [c for c in cells if c["id"] in {k["id"] for k in kept}] == sorted(
        kept, key=lambda c: c["index"])  # finished chunks were not trained again
    assert cells == list(load_sweep(full).cells)


def test_without_ray_the_backend_is_one_line_naming_the_extra(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    rc = main(["sweep", "--p", "23", "--width", "32", "--steps", "5", "--device", "cpu",
               "--backend", "ray", "-o", str(tmp_path / "s")])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1
    assert 'pip install "mechmem[ray]"' in err and not (tmp_path / "s").exists()


def test_ray_never_loads_with_mechmem_or_a_local_sweep(tmp_path):
    code = (
        "import sys\n"
        "import mechmem\n"
        "from mechmem import TrainConfig, sweep\n"
        "from mechmem.sweep import SweepConfig\n"
        f"sweep(SweepConfig(TrainConfig(p=11, width=8, steps=3, device='cpu'), "
        f"axes=(('seed', (0, 1)),)), out={str(tmp_path / 's')!r})\n"
        "assert 'ray' not in sys.modules, 'ray was imported'\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr

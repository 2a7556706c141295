"""The Ray backend on a real multi-node cluster on this machine (a head without CPUs and two worker
nodes of one CPU each): the chunks spread over both nodes, and when a worker node is removed in
the middle of a chunk the sweep completes with a local sweep's cells.

Its own module, so that it never shares a session with test_sweep_ray.py's one-node instance; it
joins its cluster by the cluster's own address.
"""

import re
import threading
import time
from pathlib import Path

import pytest

from mechmem import TrainConfig
from mechmem.sweep import SweepConfig, load_sweep, sweep
from mechmem.sweep.partial import PARTIAL_DIR

ray = pytest.importorskip("ray")
cluster_utils = pytest.importorskip("ray.cluster_utils")

pytestmark = pytest.mark.usefixtures("one_thread")

# Four chunks of one run, long enough that a node can be removed in the middle of one.
GRID = SweepConfig(
    TrainConfig(p=23, width=32, steps=1500, eval_every=50, snapshot_every=None, device="cpu",
                corrupt_frac=0.2),
    axes=(("weight_decay", (0.0, 1.0, 2.0, 3.0)),),
    chunk_size=1,
)
# A lost node is noticed within about a second (the default waits far longer).
FAST_HEALTH_CHECK = {"health_check_initial_delay_ms": 0, "health_check_period_ms": 200,
                     "health_check_failure_threshold": 3}


@pytest.fixture
def cluster():
    if ray.is_initialized():
        ray.shutdown()
    c = cluster_utils.Cluster(initialize_head=True, head_node_args={
        "num_cpus": 0, "include_dashboard": False, "_system_config": FAST_HEALTH_CHECK})
    workers = [c.add_node(num_cpus=1) for _ in range(2)]
    c.wait_for_nodes()
    ray.init(address=c.address, include_dashboard=False, log_to_driver=False,
             configure_logging=False)
    yield c, workers
    ray.shutdown()
    c.shutdown()


def _raylet_pid(node) -> int:
    return node.all_processes["raylet"][0].process.pid


def _chunk_tasks() -> dict[int, int]:
    """Worker processes running a chunk now, each with its parent (its node's raylet)."""
    out = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmd = (entry / "cmdline").read_bytes()
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if cmd.startswith(b"ray::_chunk_task"):
                out[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    return out


def test_a_sweep_spreads_over_two_nodes_and_survives_losing_one(cluster, tmp_path, capsys):
    c, workers = cluster
    raylets = {_raylet_pid(w): k for k, w in enumerate(workers)}
    local = sweep(GRID, out=tmp_path / "local")
    folder = tmp_path / "ray"
    outcome: dict = {}

    def run():
        outcome["result"] = sweep(GRID, out=folder, backend="ray", address=c.address,
                                  progress=True, save_every=0.2)

    runner = threading.Thread(target=run)
    runner.start()
    ran_on, removed, deadline = set(), False, time.monotonic() + 120
    while runner.is_alive() and time.monotonic() < deadline:
        on = {raylets[parent] for parent in _chunk_tasks().values() if parent in raylets}
        ran_on |= on
        # Remove the second node once both have worked and it is in the middle of a chunk
        # whose state is saved.
        partial = folder / PARTIAL_DIR
        if (not removed and ran_on == {0, 1} and 1 in on and partial.is_dir()
                and any(partial.iterdir())):
            c.remove_node(workers[1], allow_graceful=False)
            removed = True
        time.sleep(0.02)
    runner.join(timeout=300)
    assert not runner.is_alive() and "result" in outcome
    assert ran_on == {0, 1}, "the chunks did not spread over both nodes"
    assert removed, "the node was never seen in the middle of a chunk"
    assert outcome["result"].cells == local.cells  # bit-identical records on the CPU
    assert load_sweep(folder).n_cells == 4
    left = [p.name for p in (folder / PARTIAL_DIR).iterdir()]
    assert not left, left  # every chunk written, none left over
    bar = capsys.readouterr().err.replace("\r", "\n").strip().splitlines()[-1]
    assert re.search(r"100%.*cells=4/4", bar), bar  # the progress bar ends where the folder does

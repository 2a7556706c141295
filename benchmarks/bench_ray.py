"""The Ray backend's overhead on the CPU: one grid swept with the local backend and with Ray on
a local instance, in this process, with the same torch threads per chunk.

    python benchmarks/bench_ray.py [--steps 500] [--chunks 4]

Prints the local wall time, the time to start Ray, the Ray sweep's wall time (chunks run as
tasks, as many at once as the CPUs allow) and whether the cells are identical.
"""

import argparse
import tempfile
import time
from pathlib import Path

import ray
import torch

from mechmem import TrainConfig
from mechmem.sweep import SweepConfig, sweep


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--chunks", type=int, default=4)
    args = parser.parse_args()
    torch.set_num_threads(1)  # one thread per chunk on both sides: two chunks at once on Ray
    config = SweepConfig(
        TrainConfig(p=31, width=128, steps=args.steps, snapshot_every=None, device="cpu",
                    train_frac=0.5),
        axes=(("weight_decay", tuple(float(w) for w in range(args.chunks))),
              ("corrupt_frac", (0.0, 0.2, 0.4, 0.7))),
        chunk_size=4)
    n = len(config.cells())
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        local = sweep(config, out=Path(tmp) / "local")
        t_local = time.perf_counter() - start
        start = time.perf_counter()
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
                 configure_logging=False)
        t_init = time.perf_counter() - start
        start = time.perf_counter()
        remote = sweep(config, out=Path(tmp) / "ray", backend="ray")
        t_ray = time.perf_counter() - start
        ray.shutdown()
    steps = n * args.steps
    print(f"{n} cells x {args.steps} steps (p 31, width 128) in {args.chunks * 4 // 4} chunks "
          f"of 4, 1 torch thread per chunk, 2 CPUs")
    print(f"  local backend:  {t_local:7.2f} s  {steps / t_local:8.0f} model-steps/s")
    print(f"  ray.init:       {t_init:7.2f} s")
    print(f"  ray backend:    {t_ray:7.2f} s  {steps / t_ray:8.0f} model-steps/s "
          f"(2 chunks at a time)")
    print(f"  cells identical: {local.cells == remote.cells}")


if __name__ == "__main__":
    main()

"""Threads: torch's default thread count against one thread, on an idle and on a loaded machine.

For each machine state (idle: whatever else runs here now; loaded: this benchmark also starts a
second process that keeps 2 threads busy with matrix products, as another training run would)
and each size (paper: p 97, width 500, full batch, the paper's defaults; small: p 23, width 32),
`mechmem.train` is timed with torch's default thread count (one per core) and with one thread,
in interleaved repeats, and the best and median are printed side by side. It also prints what a
load-aware rule (free cores = cores - 1-minute load average) would have picked in each state.

    python benchmarks/bench_threads.py [--paper-steps 50] [--small-steps 200] [--repeats 2]
"""

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time

import torch

from mechmem import TrainConfig, train

LOAD = ("import torch\ntorch.set_num_threads(2)\na = torch.randn(384, 384)\n"
        "while True:\n    a = torch.tanh(a @ a)\n")


def seconds(config: TrainConfig, threads: int) -> float:
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        start = time.perf_counter()
        train(config)
        return time.perf_counter() - start
    finally:
        torch.set_num_threads(before)


def free_cores() -> int:
    cores = len(os.sched_getaffinity(0))
    return max(1, min(cores, round(cores - os.getloadavg()[0])))


def measure(state: str, sizes: dict, default: int, repeats: int) -> dict:
    out = {}
    for name, config in sizes.items():
        seconds(config.replace(steps=5), 1)  # warm up
        times: dict[int, list[float]] = {default: [], 1: []}
        for _ in range(repeats):
            for t in times:
                times[t].append(seconds(config, t))
        out[name] = times
        print(f"  measured {state}, {name}: " + ", ".join(
            f"{t} thread(s) {min(v):.2f} s" for t, v in times.items()), flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--paper-steps", type=int, default=50)
    ap.add_argument("--small-steps", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    default = torch.get_num_threads()
    cores = len(os.sched_getaffinity(0))
    base = dict(corrupt_frac=0.35, snapshot_every=None, device="cpu")
    sizes = {"paper (p 97, width 500)": TrainConfig(steps=args.paper_steps, **base),
             "small (p 23, width 32)": TrainConfig(p=23, width=32, steps=args.small_steps,
                                                   **base)}
    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, "
          f"{cores} cores available, torch default {default} threads")
    print(f"paper size {args.paper_steps} steps, small size {args.small_steps} steps; best "
          f"(median) of {args.repeats}; shared machine, so the figures are noisy")
    results = {}
    picks = {}
    picks["idle"] = (os.getloadavg()[0], free_cores())
    results["idle"] = measure("idle", sizes, default, args.repeats)
    load = subprocess.Popen([sys.executable, "-c", LOAD], env={**os.environ,
                                                              "OMP_NUM_THREADS": "2"})
    try:
        time.sleep(20)  # let the 1-minute load average see it
        picks["loaded"] = (os.getloadavg()[0], free_cores())
        results["loaded"] = measure("loaded", sizes, default, args.repeats)
    finally:
        load.kill()
        load.wait()
    print()
    print(f"{'machine':8} {'size':26} {f'default ({default} threads) s':>28} "
          f"{'1 thread s':>18} {'default / 1':>12}")
    for state, by_size in results.items():
        for name, times in by_size.items():
            d, o = times[default], times[1]
            print(f"{state:8} {name:26} {min(d):13.2f} ({statistics.median(d):6.2f})      "
                  f"{min(o):9.2f} ({statistics.median(o):6.2f}) {min(d) / min(o):11.2f}x")
    print()
    for state, (load1, pick) in picks.items():
        print(f"{state}: 1-minute load average {load1:.2f} at the start; a free-cores rule "
              f"would pick {pick} thread(s)")


if __name__ == "__main__":
    main()

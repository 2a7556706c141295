"""Counterfactual memorization's speed: K subset models trained together against K single runs.

At small size (p 31, width 128, alpha 0.5, xi 0.3, 500 full-batch steps, K 64) it times
`mechmem.memorization`'s stacked training of the K models on their random halves beside the same
K runs trained one after another (each a single run of the trainer on its half), prints both and
their ratio, and exits 1 when the ratio is under 3. Then it estimates the cost at the paper's
size (p 97, width 500, 2000 steps, K 64) from a few timed steps of a stack of 16 models.

    OMP_NUM_THREADS=1 python benchmarks/bench_memorization.py [--models 64] [--steps 500]
        [--threads 1] [--skip-paper]
"""

import argparse
import sys
import time

import torch

from mechmem import TrainConfig, make_dataset, memorization
from mechmem.memorization._subsets import train_subsets


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", type=int, default=64)
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--skip-paper", action="store_true")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    config = TrainConfig(p=31, width=128, corrupt_frac=0.3, steps=args.steps,
                         snapshot_every=None, device="cpu")
    ds = make_dataset(config.dataset_spec())
    t = time.perf_counter()
    res = memorization(config, models=args.models)
    stacked = time.perf_counter() - t
    t = time.perf_counter()
    for k in range(args.models):
        train_subsets(config, ds, [k])
    single = time.perf_counter() - t
    ratio = single / stacked
    print(f"p 31, width 128, {args.steps} steps, K {args.models}, {args.threads} thread(s) "
          "(CPU)")
    print(f"  stacked (mechmem.memorization): {stacked:7.2f} s")
    print(f"  {args.models} single runs, one by one: {single:7.2f} s")
    print(f"  speed-up: {ratio:.1f}x  (need >= 3: {'PASS' if ratio >= 3 else 'FAIL'})")
    print(f"  {res.summary()}")
    if not args.skip_paper:
        paper = TrainConfig(corrupt_frac=0.35, snapshot_every=None, device="cpu")
        big = make_dataset(paper.dataset_spec())
        m, steps = 16, 10
        t = time.perf_counter()
        train_subsets(paper.replace(steps=steps), big, list(range(m)))
        per_model_step = (time.perf_counter() - t) / (m * steps)
        total = per_model_step * 64 * paper.steps
        print(f"paper size (p 97, width 500, {paper.steps} steps), K 64, stacks of {m}: "
              f"{1e3 * per_model_step:.2f} ms per model-step, about {total / 60:.0f} min "
              f"on this CPU at {args.threads} thread(s)")
    return 0 if ratio >= 3 else 1


if __name__ == "__main__":
    sys.exit(main())

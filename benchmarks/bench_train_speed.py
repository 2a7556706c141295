"""Training speed: mechmem's loop against a faithful re-creation of the paper's loop.

Both run in this process at the paper's defaults (p 97, alpha 0.5, width 500, x^2, full-batch
AdamW lr 0.01, MSE), in interleaved blocks so that a busy machine slows both alike; the best
block of each is reported (and the median). The paper's loop: nn.Linear on the concatenated
one-hot input (built once), torch.pow, MSE against F.one_hot built every step, torch AdamW.

    python benchmarks/bench_train_speed.py [--steps 100] [--repeats 5]
"""

import argparse
import platform
import statistics
import time

import torch
from _paper_loop import paper_loop

from mechmem import TrainConfig, train


def paper_loop_seconds(steps: int) -> float:
    """Seconds for `steps` steps of the paper's training loop (after two warm-up steps)."""
    step, _ = paper_loop(TrainConfig(corrupt_frac=0.35, device="cpu"))
    for _ in range(2):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return time.perf_counter() - start


def mechmem_loop(steps: int, logging: bool) -> float:
    """Seconds for `train` at the paper's defaults; without logging, history only at the
    first and last step and no snapshots."""
    config = TrainConfig(corrupt_frac=0.35, steps=steps, device="cpu")
    if not logging:
        config = config.replace(eval_every=10**9, snapshot_every=None)
    start = time.perf_counter()
    train(config)
    return time.perf_counter() - start


def sgemm_gflops(b: int, n: int, p: int, repeats: int = 20) -> float:
    """Measured float32 matmul rate on a (b, n) x (n, p) product, the step's shape."""
    a, w = torch.randn(b, n), torch.randn(n, p)
    for _ in range(3):
        a @ w
    start = time.perf_counter()
    for _ in range(repeats):
        a @ w
    return 2 * b * n * p * repeats / (time.perf_counter() - start) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100, help="steps per timed block")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved blocks per loop")
    args = parser.parse_args()
    print(f"{platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; {args.repeats} interleaved blocks of "
          f"{args.steps} steps each")
    mechmem_loop(3, True)  # warm-up: imports, allocator
    times: dict[str, list[float]] = {"paper": [], "mechmem": [], "mechmem+history": []}
    for _ in range(args.repeats):
        times["paper"].append(paper_loop_seconds(args.steps) / args.steps)
        times["mechmem"].append(mechmem_loop(args.steps, logging=False) / args.steps)
        times["mechmem+history"].append(mechmem_loop(args.steps, logging=True) / args.steps)
    best = {k: min(v) for k, v in times.items()}
    med = {k: statistics.median(v) for k, v in times.items()}
    for k in times:
        print(f"{k:>16}: {1 / best[k]:6.1f} steps/s ({best[k] * 1e3:5.1f} ms/step best, "
              f"{med[k] * 1e3:5.1f} median; blocks: "
              f"{' '.join(f'{t * 1e3:.1f}' for t in times[k])})")
    print(f"speed-up over the paper's loop: {best['paper'] / best['mechmem']:.2f}x best-of, "
          f"{med['paper'] / med['mechmem']:.2f}x median (target >= 2x)")
    overhead = best["mechmem+history"] / best["mechmem"] - 1
    print(f"history every {TrainConfig().eval_every} steps + snapshots every "
          f"{TrainConfig().snapshot_every}: +{overhead * 100:.1f}% best-of, "
          f"+{(med['mechmem+history'] / med['mechmem'] - 1) * 100:.1f}% median (target <= 10%)")
    b, n, p = 4704, 500, 97
    rate = max(sgemm_gflops(b, n, p) for _ in range(5))  # best of five, like the loops
    ours, theirs = 3 * b * n * p * 2 / rate / 1e6, 7 * b * n * p * 2 / rate / 1e6
    print(f"FLOP bound at the measured sgemm rate {rate:.0f} GFLOP/s: mechmem 3BNp MACs >= "
          f"{ours:.1f} ms/step, paper 3BNp + 4BNp (one-hot layer) >= {theirs:.1f} ms/step: "
          f"a matmul-bound limit of 7/3 = {7 / 3:.2f}x")


if __name__ == "__main__":
    main()

"""Speed and memory of `analyze`: a width-500 checkpoint (budget 5 s, all three full pruning
curves included) and a width-10,000 model (the paper's App. Q scale; budget: this machine's
24 GB), with the naive one-forward-pass-per-point pruning timed beside the fast path.

    python benchmarks/bench_analyze.py [--ckpt runs/coexistence.pt] [--skip-large]
"""

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from mechmem import (
    Checkpoint,
    analytic_solution,
    analyze,
    load_checkpoint,
    make_dataset,
    save_checkpoint,
)
from mechmem.analysis import (
    accuracies,
    classify_neurons,
    corrupted_logits,
    fourier,
    ipr_scores,
    pruning_curves,
)
from mechmem.analysis.pruning import _forward, removal_orders

_LARGE = """
import json, resource, sys, time, torch
from mechmem import analyze, load_checkpoint
t = time.perf_counter()
a = analyze(sys.argv[1])
dt = time.perf_counter() - t
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
print(json.dumps({"seconds": dt, "peak_rss_gb": rss, "method": a.pruning.method,
                  "points": len(a.pruning.curves["random"].fraction),
                  "generalizing": a.neurons.generalizing, "ipr_mean": a.ipr.mean}))
"""


def width500_checkpoint(path: Path | None, tmp: Path) -> Path:
    if path is not None and path.exists():
        return path
    from mechmem.train import preset, train

    print("  (no trained checkpoint given: training the coexistence preset for 300 steps)")
    train(preset("coexistence", steps=300, eval_every=100), out=tmp / "w500.pt")
    return tmp / "w500.pt"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ckpt", type=Path, default=Path("runs/coexistence.pt"))
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--skip-large", action="store_true")
    args = ap.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        path = width500_checkpoint(args.ckpt, tmp)
        ckpt = load_checkpoint(path)
        print(f"\nanalyze({path}): width {ckpt.model.cfg.width}, p {ckpt.dataset.p}, "
              f"{ckpt.dataset.pairs.shape[0]} pairs, 3 x {ckpt.model.cfg.width + 1} pruning points")
        analyze(path)  # warm-up
        times = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            a = analyze(path)
            times.append(time.perf_counter() - t)
        print(f"  wall time, {args.repeats} runs: min {min(times):.2f} s, median "
              f"{statistics.median(times):.2f} s, max {max(times):.2f} s   (budget 5 s) "
              f"[{'ok' if statistics.median(times) <= 5 else 'OVER'}]  pruning method: "
              f"{a.pruning.method}")

        model, ds, op = ckpt.model, ckpt.dataset, ckpt.dataset.spec.op
        parts = {}
        for name, fn in [
            ("load_checkpoint", lambda: load_checkpoint(path)),
            ("accuracies", lambda: accuracies(model, ds)),
            ("fourier", lambda: fourier(model, op)),
            ("ipr_scores", lambda: ipr_scores(model, op)),
            ("classify_neurons", lambda: classify_neurons(a.ipr)),
            ("pruning_curves (3 orders)", lambda: pruning_curves(model, ds, a.ipr)),
            ("corrupted_logits", lambda: corrupted_logits(model, ds)),
        ]:
            t = time.perf_counter()
            fn()
            parts[name] = time.perf_counter() - t
        for name, dt in parts.items():
            print(f"    {name:<28} {dt:.3f} s")

        # The naive way: one ablated forward pass per point. Timed on 60 points, extrapolated.
        order = removal_orders(a.ipr)["random"].tolist()
        n = model.cfg.width
        t = time.perf_counter()
        _forward(model, ds.pairs, order[:59])
        per_point = (time.perf_counter() - t) / 60
        print(f"  naive pruning: {per_point * 1e3:.1f} ms per forward point -> "
              f"{per_point * 3 * (n + 1):.1f} s for the three curves (fast path: "
              f"{parts['pruning_curves (3 orders)']:.2f} s)")

        if args.skip_large:
            return
        print("\nwidth 10,000 (analytic solution, p 97, alpha 0.5, xi 0.35), in a fresh process")
        ds = make_dataset(p=97, train_frac=0.5, corrupt_frac=0.35, seed=0)
        big = tmp / "w10000.pt"
        save_checkpoint(Checkpoint(model=analytic_solution(p=97, width=10_000), dataset=ds), big)
        proc = subprocess.run([sys.executable, "-c", _LARGE, str(big)], capture_output=True,
                              text=True, check=True)
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        print(f"  analyze: {r['seconds']:.1f} s, peak RSS {r['peak_rss_gb']:.2f} GB (budget 24 GB) "
              f"[{'ok' if r['peak_rss_gb'] < 24 else 'OVER'}]; {r['points']} points per curve "
              f"({r['method']}), {r['generalizing']} generalizing, IPR {r['ipr_mean']:.4f}")
        own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        print(f"  (this process's own peak RSS: {own:.2f} GB)")


if __name__ == "__main__":
    main()

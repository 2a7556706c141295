"""mechmem's per-example signals as label-noise detectors, beside cleanlab's confident learning.

For each preset it trains the run once on its whole training set (with `track_examples`) and K
models on random halves (`mechmem.memorization`), then scores each signal as a detector of the
corrupted labels (the examples whose label differs from the true one): AUROC, and precision
among the m highest-scoring examples, m the true number of corrupted labels.

mechmem's signals (higher = more likely corrupted):
  margin            minus the trained label's final margin (full-data run)
  memorized step    the step the trained label was first predicted (never: after the end)
  counterfactual    P(correct | in) - P(correct | held out) over the K models
  low-IPR share     (low - high) / (|low| + |high|), low and high the low- and high-IPR neurons'
                    summed contributions to the trained label's final margin

cleanlab (`pip install "mechmem[cleanlab]"`) gets out-of-sample predicted probabilities from the
held-out halves of the same K models (each class's share of the held-out models' votes,
smoothed by one uniform vote): its label-quality score (self-confidence) is ranked like the
signals, and `find_label_issues` (prune by noise rate) is scored by the precision and recall
of the set it flags.

    OMP_NUM_THREADS=1 python benchmarks/bench_label_noise.py [--models 16] \
        [--presets coexistence partial-inversion full-inversion] [--steps N] [--small]
        [--subset 0.5]

--small runs p 31, width 128 versions of the presets (a quick check, minutes); the default is
the paper's size (p 97, width 500), about 15 minutes per MLP preset at one thread with K 16.
"""

import argparse
import sys
import time

import numpy as np
import torch

from mechmem import memorization, train
from mechmem.analysis import example_dynamics, examples
from mechmem.train import preset

try:
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores
except ImportError:  # pragma: no cover - the benchmark's own dependency
    sys.exit('bench_label_noise needs cleanlab: pip install "mechmem[cleanlab]"')


def auroc(score: torch.Tensor, positive: torch.Tensor) -> float:
    """P(a positive scores above a negative), ties counting one half."""
    pos, neg = score[positive].double(), score[~positive].double()
    if pos.numel() == 0 or neg.numel() == 0:
        return float("nan")
    gt = (pos[:, None] > neg[None, :]).double().mean()
    eq = (pos[:, None] == neg[None, :]).double().mean()
    return float(gt + eq / 2)


def precision_at(score: torch.Tensor, positive: torch.Tensor) -> float:
    """Precision among the m highest scores, m the number of positives."""
    m = int(positive.sum())
    if m == 0:
        return float("nan")
    # Ties at the cut are broken at random, in expectation (no order of the examples leaks in).
    score = score.double()
    cut = score.sort(descending=True).values[m - 1]
    above, tied = score > cut, score == cut
    need = m - int(above.sum())
    hits = float(positive[above].sum()) + need * float(positive[tied].double().mean())
    return hits / m


def signals(name: str, models: int, steps: int | None, small: bool, subset: float) -> dict:
    overrides = {"snapshot_every": None, "device": "cpu"}
    if small:
        overrides |= {"p": 31, "width": 128}
    if steps is not None:
        overrides["steps"] = steps
    config = preset(name, **overrides)
    t = time.perf_counter()
    run = train(config.replace(track_examples=True))
    ds = run.dataset
    ex = examples(run.model, ds)
    dyn = example_dynamics(run.history, ds)
    t_run = time.perf_counter() - t
    t = time.perf_counter()
    mem = memorization(config, models=models, subset=subset)
    t_mem = time.perf_counter() - t
    last = float(dyn.steps[-1]) + config.eval_every
    low = ex.contributions[:, ex.low_ipr].sum(1)
    high = ex.contributions[:, ~ex.low_ipr].sum(1)
    out = {
        "margin": -ex.margin,
        "memorized step": torch.nan_to_num(dyn.fitted_step, nan=last),
        "counterfactual": torch.nan_to_num(mem.score, nan=0.0),
        "low-IPR share": (low - high) / (low.abs() + high.abs()).clamp_min(1e-12),
    }
    votes = mem.out_of_sample_votes()
    votes[mem.n_out == 0] = 1.0 / ds.p
    n_out = mem.n_out.double()[:, None]
    probs = ((votes * n_out + 1.0 / ds.p) / (n_out + 1)).numpy()
    labels = ds.train_labels.numpy()
    quality = get_label_quality_scores(labels, probs)
    out["cleanlab quality"] = -torch.from_numpy(np.asarray(quality))
    flagged = torch.from_numpy(find_label_issues(labels, probs, n_jobs=1))
    return {"config": config, "truth": ds.train_labels != ds.train_true_labels, "signals": out,
            "flagged": flagged, "seconds": (t_run, t_mem), "counts": ex.counts()}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", type=int, default=16)
    ap.add_argument("--presets", nargs="+",
                    default=["coexistence", "partial-inversion", "full-inversion"])
    ap.add_argument("--steps", type=int)
    ap.add_argument("--small", action="store_true")
    ap.add_argument("--subset", type=float, default=0.5,
                    help="each model's fraction of the training set (default: halves)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    print(f"K = {args.models} models on {args.subset:g} of the training set per preset; "
          "1 thread (CPU)"
          + ("; p 31, width 128" if args.small else "; the presets' own size"))
    print(f"{'preset':<28} {'signal':<18} {'AUROC':>6} {'prec@m':>7}")
    for name in args.presets:
        r = signals(name, args.models, args.steps, args.small, args.subset)
        truth = r["truth"]
        c = r["config"]
        label = f"{name} ({c.steps} steps)"
        for sig, score in r["signals"].items():
            print(f"{label:<28} {sig:<18} {auroc(score, truth):6.3f} "
                  f"{precision_at(score, truth):7.3f}")
        f = r["flagged"]
        prec = float(truth[f].double().mean()) if f.any() else float("nan")
        rec = float(f[truth].double().mean()) if truth.any() else float("nan")
        print(f"{label:<28} {'cleanlab issues':<18} flagged {int(f.sum())} of {truth.numel()}"
              f" ({int(truth.sum())} corrupted): precision {prec:.3f}, recall {rec:.3f}")
        s = r["counts"]
        print(f"{label:<28} statuses {s}; full run {r['seconds'][0]:.0f} s, "
              f"{args.models} subset models {r['seconds'][1]:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

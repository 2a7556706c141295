"""Per-example attribution on the paper's presets: which neurons hold the memorized labels.

Trains each preset (p 97, width 500; coexistence 1000 steps, about a minute at one thread), runs
`mechmem.analysis.examples`, and prints per preset the statuses, how many neurons hold 90% of a
memorized example's margin, the share of the memorized margin held by low-IPR neurons, and how
often switching off an example's holding neurons flips it (a sample of 50). "low-IPR share" is
the low-IPR neurons' sum over the memorized margin (above 1 where the periodic neurons vote
against the label), "of votes" their part of the positive contributions. Exits 1 when either
is not the majority on the coexistence run. "flip set med": the median number of neurons that,
removed largest contribution first, flip a memorized example.

    OMP_NUM_THREADS=1 python benchmarks/bench_examples.py [--presets coexistence ...]
"""

import argparse
import sys
import time

import torch

from mechmem import train
from mechmem.analysis import ablate, examples
from mechmem.metrics import predict
from mechmem.train import preset


def flip_rate(model: torch.nn.Module, ds: object, ex: object, n: int = 50) -> float:
    gen = torch.Generator().manual_seed(0)
    sample = ex.memorized[torch.randperm(ex.memorized.numel(), generator=gen)[:n]]
    flips = 0
    for i in sample.tolist():
        with ablate(model, list(ex.holding(i))), torch.no_grad():
            out = model(ds.model_inputs(ds.train_pairs[i : i + 1]).to(model.device))
        flips += int(predict(out)[0]) != int(ds.train_labels[i])
    return flips / max(1, len(sample))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--presets", nargs="+",
                    default=["coexistence", "partial-inversion", "full-inversion"])
    args = ap.parse_args()
    torch.set_num_threads(1)
    ok = True
    print(f"{'preset':<20} {'train s':>7} {'memorized':>9} {'inverted':>8} {'neither':>7} "
          f"{'holders med':>11} {'reach':>6} {'low-IPR n':>9} {'low-IPR share':>13} "
          f"{'of votes':>8} {'flip':>5} {'flip set med':>12}")
    for name in args.presets:
        t = time.perf_counter()
        ckpt = train(preset(name))
        secs = time.perf_counter() - t
        ex = examples(ckpt.model, ckpt.dataset)
        c = ex.counts()
        m = ex.memorized.numel()
        sizes = ex.holders.sum(1).double()
        med = float(sizes.median()) if m else float("nan")
        reach = float(ex.holders_reach.double().mean()) if m else float("nan")
        share = ex.margin_share_low_ipr()
        votes = ex.support_share_low_ipr()
        fmed = float(ex.flip_count.double().median()) if m else float("nan")
        flip = flip_rate(ckpt.model, ckpt.dataset, ex) if m else float("nan")
        print(f"{name:<20} {secs:7.1f} {c['memorized']:9d} {c['inverted']:8d} {c['neither']:7d} "
              f"{med:11g} {reach:6.2f} {int(ex.low_ipr.sum()):9d} {share:13.3f} "
              f"{votes:8.3f} {flip:5.2f} {fmed:12g}")
        if name == "coexistence":
            ok = share > 0.5 and votes > 0.5
    if "coexistence" in args.presets:
        print(f"check: coexistence low-IPR share of the memorized margin and of its votes > 0.5: "
              f"{'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

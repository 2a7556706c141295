"""Speed of `analyze` on a paper-size checkpoint (p 97, width 500, 11 weight snapshots): today's
kernels beside the ones before the speed-up (kept in benchmarks/_analyze_before.py), in one run,
in-process (target 2 s) and as a whole `mechmem analyze` process (target 4 s), on one thread;
then that the results are the same; then a width-10,000 model (the paper's App. Q scale) for
time and memory.

    python benchmarks/bench_analyze.py [--ckpt CKPT] [--repeats 5] [--threads 1] [--skip-large]

Without --ckpt it trains the partial-inversion preset (500 steps, a snapshot every 50) first.
Timings on a shared machine are noisy: the load average is printed beside them, before and
after runs alternate so that both see the same load, and CPU time is printed beside wall time.
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _analyze_before as before
import torch

from mechmem import Checkpoint, analytic_solution, analyze, make_dataset, save_checkpoint
from mechmem.analysis import ipr_scores, neuron_frequencies, pruning_curves
from mechmem.analysis.accuracy import METRICS
from mechmem.analysis.pruning import _forward, removal_counts, removal_orders
from mechmem.models.sites import find_site

HERE = Path(__file__).resolve().parent
SUMMARY_FRACTIONS = (0.1, 0.3, 0.6, 0.9)  # the summary's pruning table; the report reads 0.3, 0.6

_LARGE = """
import json, resource, sys, time, torch
torch.set_num_threads(int(sys.argv[2]))
from mechmem import analyze
t = time.perf_counter()
a = analyze(sys.argv[1])
dt = time.perf_counter() - t
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
print(json.dumps({"seconds": dt, "peak_rss_gb": rss, "method": a.pruning.method,
                  "points": len(a.pruning.curves["random"].fraction),
                  "generalizing": a.neurons.generalizing, "ipr_mean": a.ipr.mean}))
"""

_BEFORE_CLI = """
import sys
sys.path.insert(0, sys.argv[1])
import _analyze_before
_analyze_before.install()
from mechmem.cli import main
raise SystemExit(main(["analyze", sys.argv[2], "--json"]))
"""


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.1f} (1 min), {five:.1f} (5 min) on {os.cpu_count()} CPUs"


def paper_checkpoint(path: Path | None, tmp: Path) -> Path:
    if path is not None:
        return path
    from mechmem.train import preset, train

    print("  (no --ckpt: training the partial-inversion preset, p 97, width 500, 500 steps, "
          "a snapshot every 50)")
    out = tmp / "partial-inversion.pt"
    train(preset("partial-inversion"), out=out)
    return out


def timed(fn) -> tuple[object, float, float]:
    t, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - t, time.process_time() - c


def in_process(path: Path, repeats: int) -> tuple[dict, dict]:
    """Alternating runs of analyze with the old kernels and with today's."""
    walls = {"before": [], "after": []}
    cpus = {"before": [], "after": []}
    results = {}
    for side in ("before", "after"):  # warm-up (first-call costs, caches)
        (before.install if side == "before" else before.uninstall)()
        analyze(path)
    for _ in range(repeats):
        for side in ("before", "after"):
            (before.install if side == "before" else before.uninstall)()
            results[side], wall, cpu = timed(lambda: analyze(path))
            walls[side].append(wall)
            cpus[side].append(cpu)
    before.uninstall()
    return results, {"wall": walls, "cpu": cpus}


def whole_process(path: Path, repeats: int, threads: int) -> tuple[dict, dict]:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads),
               PYTHONPATH=os.pathsep.join(filter(None, [str(HERE.parent),
                                                         os.environ.get("PYTHONPATH")])))
    commands = {
        "before": [sys.executable, "-c", _BEFORE_CLI, str(HERE), str(path)],
        "after": [sys.executable, "-m", "mechmem", "analyze", str(path), "--json"],
        "import only": [sys.executable, "-c", "import mechmem.cli"],
    }
    walls = {k: [] for k in commands}
    cpus = {k: [] for k in commands}
    outputs = {}
    for _ in range(repeats):
        for side, cmd in commands.items():
            used = resource.getrusage(resource.RUSAGE_CHILDREN)
            proc, wall, _ = timed(lambda cmd=cmd: subprocess.run(
                cmd, capture_output=True, text=True, env=env, check=True))
            now = resource.getrusage(resource.RUSAGE_CHILDREN)
            walls[side].append(wall)
            cpus[side].append(now.ru_utime + now.ru_stime - used.ru_utime - used.ru_stime)
            outputs[side] = proc.stdout
    return {k: json.loads(v) for k, v in outputs.items() if v.strip()}, {"wall": walls,
                                                                         "cpu": cpus}


def row(name: str, times: list[float]) -> str:
    return (f"{name:<34} median {statistics.median(times):6.2f} s   min {min(times):6.2f} s   "
            f"max {max(times):6.2f} s")


def compare(old, new) -> list[str]:
    """Where today's analysis differs from the old kernels'."""
    lines = []
    for m in METRICS:
        if getattr(old.accuracy, m) != getattr(new.accuracy, m):
            lines.append(f"accuracy {m} differs")
    same_ipr = torch.equal(old.ipr.combined.nan_to_num(-1), new.ipr.combined.nan_to_num(-1))
    refs = (old.ipr.reference_random, old.ipr.reference_periodic) == (
        new.ipr.reference_random, new.ipr.reference_periodic)
    lines.append(f"IPR per neuron identical: {same_ipr}; reference levels identical: {refs}")
    fo, fn = old.frequencies, new.frequencies
    lines.append(
        f"neuron frequencies: key frequencies identical {torch.equal(fo.key_freq, fn.key_freq)}, "
        f"counts identical {torch.equal(fo.freq_counts, fn.freq_counts)}, largest difference in "
        f"variance explained {float((fo.explained - fn.explained).abs().max()):.1e}")
    worst, changed, total = 0.0, 0, 0
    same_at = True
    for name, curve in new.pruning.curves.items():
        ref = old.pruning.curves[name]
        for m in METRICS:
            d = (getattr(ref, m)[curve.removed] - getattr(curve, m)).nan_to_num(0).abs()
            worst, changed, total = max(worst, float(d.max())), changed + int((d > 0).sum()), \
                total + d.numel()
        same_at &= all(curve.at(f) == ref.at(f) for f in SUMMARY_FRACTIONS)
    n_old, n_new = len(next(iter(old.pruning.curves.values())).removed), len(curve.removed)
    lines.append(f"pruning: {n_new} points per curve (was {n_old}); at those points "
                 f"{changed} of {total} values differ (largest {worst:.2e}; the new running sum "
                 f"is the more exact one, see the test against ablated forward passes); "
                 f"summary/report fractions {SUMMARY_FRACTIONS} identical: {same_at}")
    jo, jn = old.to_json_dict(), new.to_json_dict()
    other = sorted(k for k in jo if k != "pruning" and jo[k] != jn[k])
    lines.append(f"JSON: keys other than 'pruning' that differ: {other or 'none'}")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ckpt", type=Path, default=None)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--skip-large", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s); {load()}")
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        path = paper_checkpoint(args.ckpt, tmp)
        results, t = in_process(path, args.repeats)
        a = results["after"]
        snaps = len(a.snapshots.get("step", ()))
        print(f"\nanalyze({path.name}): width {a.model.cfg.width}, p {a.dataset.p}, "
              f"{snaps} snapshots; in-process, {args.repeats} alternating runs each; {load()}")
        for side in ("before", "after"):
            print("  " + row(f"{side} (wall)", t["wall"][side])
                  + f"   CPU median {statistics.median(t['cpu'][side]):.2f} s")
        med = {k: statistics.median(v["after"]) / statistics.median(v["before"])
               for k, v in t.items()}
        after = statistics.median(t["wall"]["after"])
        print(f"  speed-up (median wall) {1 / med['wall']:.1f}x, (median CPU) "
              f"{1 / med['cpu']:.1f}x; target 2 s: [{'ok' if after <= 2 else 'OVER'}]")

        model, ds, op = a.model, a.dataset, a.dataset.spec.op
        print("\n  parts (one run each, wall / CPU seconds)      before          after")
        parts = [
            ("pruning_curves (3 orders)", lambda: before.pruning_curves(model, ds, a.ipr),
             lambda: pruning_curves(model, ds, a.ipr)),
            ("neuron_frequencies", lambda: before.neuron_frequencies(model, ds),
             lambda: neuron_frequencies(model, ds)),
            (f"ipr_scores x {snaps + 1} (final + snapshots)", None,
             lambda: [ipr_scores(model, op) for _ in range(snaps + 1)]),
        ]
        for name, old_fn, new_fn in parts:
            if old_fn is None:
                before.install()
                _, wo, co = timed(new_fn)
                before.uninstall()
            else:
                _, wo, co = timed(old_fn)
            _, wn, cn = timed(new_fn)
            print(f"    {name:<42} {wo:6.3f} / {co:5.3f}   {wn:6.3f} / {cn:5.3f}")

        print("\n  same results? (today's analysis against the old kernels')")
        for line in compare(results["before"], a):
            print("    " + line)

        # One ablated forward pass per point, the path for models the fast one cannot take.
        s = find_site(model, a.ipr.site)
        order = removal_orders(a.ipr)["random"].tolist()
        counts = removal_counts(model.cfg.width)
        _, wall, _ = timed(lambda: _forward(model, ds.model_inputs(), order, counts[:20], s))
        print(f"  forward-pass pruning: {wall / 20 * 1e3:.1f} ms per point -> "
              f"{wall / 20 * 3 * len(counts):.1f} s for the three {len(counts)}-point curves")

        procs = max(2, args.repeats // 2)
        outs, w = whole_process(path, procs, args.threads)
        print(f"\nwhole process `mechmem analyze {path.name} --json`, OMP_NUM_THREADS="
              f"{args.threads}, {procs} alternating runs each; {load()}")
        for side in ("before", "after", "import only"):
            print("  " + row(side, w["wall"][side])
                  + f"   CPU median {statistics.median(w['cpu'][side]):.2f} s")
        med = statistics.median(w["wall"]["after"])
        differ = sorted(k for k, v in outs["before"].items()
                        if k != "pruning" and v != outs["after"][k])
        print(f"  target 4 s: [{'ok' if med <= 4 else 'OVER'}]; JSON keys other than 'pruning' "
              f"that differ between the two processes: {differ or 'none'}")

        if args.skip_large:
            return
        print("\nwidth 10,000 (analytic solution, p 97, alpha 0.5, xi 0.35), in a fresh process")
        big_ds = make_dataset(p=97, train_frac=0.5, corrupt_frac=0.35, seed=0)
        big = tmp / "w10000.pt"
        save_checkpoint(Checkpoint(model=analytic_solution(p=97, width=10_000), dataset=big_ds),
                        big)
        proc = subprocess.run([sys.executable, "-c", _LARGE, str(big), str(args.threads)],
                              capture_output=True, text=True, check=True)
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        print(f"  analyze: {r['seconds']:.1f} s, peak RSS {r['peak_rss_gb']:.2f} GB (budget 24 GB) "
              f"[{'ok' if r['peak_rss_gb'] < 24 else 'OVER'}]; {r['points']} points per curve "
              f"({r['method']}), {r['generalizing']} generalizing, IPR {r['ipr_mean']:.4f}")
        own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        print(f"  (this process's own peak RSS: {own:.2f} GB)")


if __name__ == "__main__":
    main()

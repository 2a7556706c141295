"""The paper's claims about its other networks (Sec. 2.2, Fig. 7, App. Figs. 12-15) against
mechmem's 1-layer transformer and 3-layer MLP, trained from the presets, on the CPU.

Runs: the transformer on clean addition, and with corrupted labels at low and high weight decay
(`transformer-coexistence`, `transformer-full-inversion`); the 3-layer MLP at low and high weight
decay (`mlp3-memorization`, `mlp3-inversion`). Prints each run's phase, accuracies and IPR
(the transformer's per embedding dimension, as the paper's histograms), then the paper's
statements beside what mechmem measured. Checkpoints are kept in --out: a finished one is reused
(delete it to retrain), an interrupted one is resumed.

    python benchmarks/bench_families.py [--out runs/families] [--only transformer|mlp3]
        [--run NAME ...]   (train only these runs; several processes can share one --out)
"""

import argparse
import time
from pathlib import Path

import torch

from mechmem import analyze, load_checkpoint
from mechmem.train import preset, resume, train

RUNS = {
    "transformer": [
        ("transformer-clean", {"corrupt_frac": 0.0, "steps": 3000}),
        ("transformer-coexistence", {}),
        ("transformer-full-inversion", {}),
    ],
    "mlp3": [
        ("mlp3-memorization", {}),
        ("mlp3-inversion", {}),
    ],
}


def _preset_name(name: str) -> str:
    return "transformer-coexistence" if name == "transformer-clean" else name


def run(name: str, overrides: dict, out: Path):
    path = out / f"{name}.pt"
    config = preset(_preset_name(name), name=name, device="cpu", **overrides)
    start = time.perf_counter()
    if path.exists():
        ckpt = load_checkpoint(path)
        if ckpt.step >= config.steps:
            return analyze(ckpt), None
        ckpt = resume(path)  # an interrupted run (Ctrl-C, kill) continues where it stopped
    else:
        ckpt = train(config, out=path)
    return analyze(ckpt), time.perf_counter() - start


def quantiles(x: torch.Tensor) -> str:
    x = x[torch.isfinite(x)].to(torch.float64)
    q = torch.quantile(x, torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64)).tolist()
    return f"median {q[1]:.3f} (10-90%: {q[0]:.3f}-{q[2]:.3f})"


def describe(name: str, a, seconds: float | None) -> str:
    acc = a.accuracy
    ipr = a.site_ipr.get("embed", a.site_ipr.get("layers.0"))
    took = f"{seconds:.0f} s" if seconds is not None else "from --out"
    return (f"{name:<28} {a.phase.phase:<18} train {acc.train:6.1%} test {acc.test:6.1%} "
            f"memorized {acc.corrupted_memorized:6.1%} inverted {acc.corrupted_true:6.1%}\n"
            f"{'':<28} IPR {ipr.site}: {quantiles(ipr.combined)}; {a.ipr.site}: "
            f"{quantiles(a.ipr.combined)}  [{took}]")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/families")
    parser.add_argument("--only", choices=list(RUNS))
    parser.add_argument("--run", action="append", choices=[n for r in RUNS.values()
                                                           for n, _ in r])
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = {}
    for family, runs in RUNS.items():
        if args.only and family != args.only:
            continue
        for name, overrides in runs:
            if args.run and name not in args.run:
                continue
            a, seconds = run(name, overrides, out)
            results[name] = a
            print(describe(name, a, seconds), flush=True)
    print()
    print(f"{'the paper says':<62} | mechmem measures")
    for statement, measured in claims(results):
        print(f"{statement:<62} | {measured}")


def _median(a, site: str) -> float:
    x = a.site_ipr[site].combined
    return float(torch.quantile(x[torch.isfinite(x)].to(torch.float64), 0.5))


def claims(r: dict) -> list[tuple[str, str]]:
    rows = []
    if "transformer-clean" in r:
        rows.append(("transformer: 100% test accuracy on clean addition",
                     f"test {r['transformer-clean'].accuracy.test:.1%}"))
    if "transformer-coexistence" in r and "transformer-full-inversion" in r:
        lo, hi = r["transformer-coexistence"], r["transformer-full-inversion"]
        wd_lo, wd_hi = (x.config["weight_decay"] for x in (lo, hi))
        rows += [
            ("transformer, corrupted labels, low wd: Coexistence",
             f"wd {wd_lo:g}: {lo.phase.phase} (corrupted labels memorized "
             f"{lo.accuracy.corrupted_memorized:.1%})"),
            ("transformer, corrupted labels, high wd: Full Inversion",
             f"wd {wd_hi:g}: {hi.phase.phase} (memorized {hi.accuracy.corrupted_memorized:.1%})"),
            ("transformer embedding IPR rises with weight decay",
             f"median {_median(lo, 'embed'):.3f} -> {_median(hi, 'embed'):.3f}"),
            ("  Coexistence: about 0.03 to 0.05 (near initialization)",
             quantiles(lo.site_ipr["embed"].combined)),
            ("  Full Inversion: a broad mode of about 0.1 to 0.28",
             quantiles(hi.site_ipr["embed"].combined)),
        ]
    if "mlp3-memorization" in r and "mlp3-inversion" in r:
        lo, hi = r["mlp3-memorization"], r["mlp3-inversion"]
        wd_lo, wd_hi = (x.config["weight_decay"] for x in (lo, hi))
        rows += [
            ("3-layer MLP: the same ordering with weight decay",
             f"wd {wd_lo:g}: {lo.phase.phase}; wd {wd_hi:g}: {hi.phase.phase}"),
            ("  its input and output layers' IPR rise with weight decay",
             f"layers.0 {_median(lo, 'layers.0'):.3f} -> {_median(hi, 'layers.0'):.3f}; "
             f"layers.1 {_median(lo, 'layers.1'):.3f} -> {_median(hi, 'layers.1'):.3f}"),
        ]
    return rows


if __name__ == "__main__":
    main()

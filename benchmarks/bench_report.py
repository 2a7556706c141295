"""How long a width-500 checkpoint takes to report, and how large the report is.

Trains the paper's default model (p 97, width 500, alpha 0.5, xi 0.35; --steps, default 500) once
into a temporary folder, then times, in this process, `analyze(path)` and `write_report`
separately, and the whole `mechmem report CKPT` command as a fresh process (Python start-up and
imports included). Targets: at most 10 s and at most 8 MB.

    .venv/bin/python benchmarks/bench_report.py [--steps 500] [--repeat 3] [--checkpoint X.pt]

--checkpoint skips the training and reports that (width-500) checkpoint instead.
"""

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from mechmem import TrainConfig, analyze, train
from mechmem.report import render_report, write_report

TARGET_S = 10.0
TARGET_MB = 8.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--checkpoint", type=Path, help="report this checkpoint, no training")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    with tempfile.TemporaryDirectory() as tmp:
        if args.checkpoint is None:
            ckpt = Path(tmp) / "width500.pt"
            config = TrainConfig(corrupt_frac=0.35, steps=args.steps, device="cpu")
            t0 = time.perf_counter()
            train(config, out=ckpt)
            print(f"trained p={config.p} width={config.width} xi={config.corrupt_frac} for "
                  f"{config.steps} steps in {time.perf_counter() - t0:.1f} s")
        else:
            ckpt = args.checkpoint
        model = analyze(ckpt).model.cfg
        print(f"checkpoint {ckpt.name}: p={model.p} width={model.width}, "
              f"{ckpt.stat().st_size / 1e6:.1f} MB")
        render_report(analyze(ckpt))  # warm-up: first-call costs are not what we measure

        rows = []
        for i in range(args.repeat):
            out = Path(tmp) / f"in_process_{i}.html"
            t0 = time.perf_counter()
            analysis = analyze(ckpt)
            t1 = time.perf_counter()
            write_report(analysis, out)
            t2 = time.perf_counter()
            rows.append((t1 - t0, t2 - t1, t2 - t0))
        for i, (a, w, total) in enumerate(rows):
            print(f"in process, run {i}: analyze {a:.2f} s + write_report {w:.2f} s"
                  f" = {total:.2f} s")

        cli = []
        for i in range(args.repeat):
            out = Path(tmp) / f"cli_{i}.html"
            t0 = time.perf_counter()
            done = subprocess.run(
                [sys.executable, "-m", "mechmem", "report", str(ckpt), "-o", str(out)],
                capture_output=True, text=True)
            cli.append(time.perf_counter() - t0)
            if done.returncode != 0:
                raise SystemExit(f"mechmem report failed: {done.stderr.strip()}")
        size_mb = out.stat().st_size / 1e6
        print("mechmem report (fresh process): " + ", ".join(f"{t:.2f} s" for t in cli))
        best_in, best_cli = min(r[2] for r in rows), min(cli)
        print(f"RESULT report time: {best_cli:.2f} s whole command, {best_in:.2f} s in process"
              f" (target <= {TARGET_S:g} s): {'ok' if best_cli <= TARGET_S else 'TOO SLOW'}")
        print(f"RESULT report size: {size_mb:.2f} MB (target <= {TARGET_MB:g} MB): "
              f"{'ok' if size_mb <= TARGET_MB else 'TOO LARGE'}")


if __name__ == "__main__":
    main()

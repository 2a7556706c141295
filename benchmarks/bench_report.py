"""How long a width-500 checkpoint takes to report, and how large the report is.

Trains the paper's default model (p 97, width 500, alpha 0.5, xi 0.35; --steps, default 500) once
into a temporary folder, then times, in this process, `analyze(path)` and `write_report`
separately, and the whole `mechmem report CKPT` command as a fresh process (Python start-up and
imports included). Targets: at most 10 s and at most 8 MB. Wall time depends on what else runs on
the machine, so the CPU time of each measurement and the load average are printed beside it.

    .venv/bin/python benchmarks/bench_report.py [--steps 500] [--repeat 3] [--checkpoint X.pt]

--checkpoint skips the training and reports that (width-500) checkpoint instead.
"""

import argparse
import os
import resource
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

        print(f"load average before: {os.getloadavg()[0]:.2f} (2 cores)")
        rows = []
        for i in range(args.repeat):
            out = Path(tmp) / f"in_process_{i}.html"
            t0, c0 = time.perf_counter(), time.process_time()
            analysis = analyze(ckpt)
            t1, c1 = time.perf_counter(), time.process_time()
            write_report(analysis, out)
            t2, c2 = time.perf_counter(), time.process_time()
            rows.append((t2 - t0, c2 - c0))
            print(f"in process, run {i}: analyze {t1 - t0:.2f} s + write_report {t2 - t1:.2f} s"
                  f" = {t2 - t0:.2f} s wall (CPU analyze {c1 - c0:.2f} s, write_report "
                  f"{c2 - c1:.2f} s)")

        cli = []
        for i in range(args.repeat):
            out = Path(tmp) / f"cli_{i}.html"
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            t0 = time.perf_counter()
            done = subprocess.run(
                [sys.executable, "-m", "mechmem", "report", str(ckpt), "-o", str(out)],
                capture_output=True, text=True)
            wall = time.perf_counter() - t0
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
            cli.append((wall, cpu))
            if done.returncode != 0:
                raise SystemExit(f"mechmem report failed: {done.stderr.strip()}")
        size_mb = out.stat().st_size / 1e6
        print("mechmem report (fresh process): " + ", ".join(
            f"{w:.2f} s wall ({c:.2f} s CPU)" for w, c in cli))
        print(f"load average after: {os.getloadavg()[0]:.2f}")
        best_in, best_cli = min(r[0] for r in rows), min(w for w, _ in cli)
        print(f"RESULT report time: {best_cli:.2f} s whole command, {best_in:.2f} s in process"
              f" (target <= {TARGET_S:g} s): {'ok' if best_cli <= TARGET_S else 'TOO SLOW'}")
        print(f"RESULT report size: {size_mb:.2f} MB (target <= {TARGET_MB:g} MB): "
              f"{'ok' if size_mb <= TARGET_MB else 'TOO LARGE'}")


if __name__ == "__main__":
    main()

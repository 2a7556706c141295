"""Sweep speed: a batched sweep against training the same cells one at a time with
`mechmem.train`, both measured in this process.

    python benchmarks/bench_sweep.py                 # CPU: small models, then the paper's size
    python benchmarks/bench_sweep.py --gpu           # GPU: the fig3a preset at the paper's size
    python benchmarks/bench_sweep.py --gpu --cells 200 --steps 500   # a shorter GPU check
    python benchmarks/bench_sweep.py --gpu --device cpu --cells 16 --steps 20   # check on a CPU

CPU, small: p 31, width 128, 64 full-batch cells (weight decay 0/5/15/20 x xi 0..0.7 x alpha
0.3..0.6), 500 steps each. CPU, paper size: p 97, width 500, 8 cells (weight decay x xi at
alpha 0.5), 100 steps each. One at a time runs every cell through `train` with the same
settings (recording at the same interval), so both sides do the same work.

GPU: the fig3a preset (1,292 runs x 2,000 steps at p 97, width 500) as `mechmem sweep` runs
it; the one-at-a-time rate is measured on a few of its cells. Prints wall time, model-steps/s
and the chunks the planner chose.
"""

import argparse
import platform
import tempfile
import time
from pathlib import Path

import torch

from mechmem import TrainConfig, train
from mechmem.sweep import SweepConfig, plan_chunks, sweep, sweep_preset


def one_at_a_time(cells: list[TrainConfig]) -> float:
    start = time.perf_counter()
    for c in cells:
        train(c)
    return time.perf_counter() - start


def batched(config: SweepConfig, folder: Path) -> float:
    start = time.perf_counter()
    sweep(config, out=folder, overwrite=True)
    return time.perf_counter() - start


def compare(name: str, config: SweepConfig, sequential_cells: int | None = None) -> None:
    cells = config.cells()
    device = torch.device(config.base.device)
    chunks = plan_chunks(cells, device, config.chunk_size)
    model_steps = sum(c.steps for c in cells)
    with tempfile.TemporaryDirectory() as tmp:
        t_sweep = batched(config, Path(tmp) / "s")
    sample = cells if sequential_cells is None else cells[:: max(1, len(cells) //
                                                                  sequential_cells)]
    t_one = one_at_a_time(sample)
    rate_sweep = model_steps / t_sweep
    rate_one = sum(c.steps for c in sample) / t_one
    print(f"\n{name}: {len(cells)} cells x {cells[0].steps} steps, p {cells[0].p}, "
          f"width {cells[0].width}, on {device}")
    print(f"  chunks: {len(chunks)} (sizes {sorted(len(c.cells) for c in chunks)})")
    print(f"  sweep:          {t_sweep:8.2f} s  {rate_sweep:9.1f} model-steps/s")
    print(f"  one at a time:  {t_one:8.2f} s  {rate_one:9.1f} model-steps/s  "
          f"({len(sample)} cells)")
    print(f"  speed-up: {rate_sweep / rate_one:.2f}x")


def cpu() -> None:
    small = SweepConfig(
        TrainConfig(p=31, width=128, steps=500, snapshot_every=None, device="cpu"),
        axes=(("weight_decay", (0.0, 5.0, 15.0, 20.0)), ("corrupt_frac", (0.0, 0.2, 0.4, 0.7)),
              ("train_frac", (0.3, 0.4, 0.5, 0.6))))
    compare("CPU, small models", small)
    paper = SweepConfig(
        TrainConfig(steps=100, snapshot_every=None, device="cpu"),
        axes=(("weight_decay", (0.0, 5.0, 15.0, 20.0)), ("corrupt_frac", (0.2, 0.35))))
    compare("CPU, the paper's size", paper)


def gpu(cells: int | None, steps: int | None, device: str) -> None:
    cuda = device == "cuda"
    if cuda and not torch.cuda.is_available():
        raise SystemExit("--gpu needs a CUDA GPU; none is available here.")
    print(f"GPU: {torch.cuda.get_device_name()}" if cuda else f"dry run of --gpu on {device}")
    overrides = {"device": device}
    if steps is not None:
        overrides["steps"] = steps
    config = sweep_preset("fig3a", **overrides)
    if cells is not None:  # a sub-grid: every k-th alpha value keeps the panels
        alphas = dict(config.axes)["train_frac"]
        xis = dict(config.axes)["corrupt_frac"]
        keep = max(1, round((4 * len(alphas) * len(xis) / cells) ** 0.5))
        config = SweepConfig(config.base, axes=(
            ("weight_decay", dict(config.axes)["weight_decay"]),
            ("corrupt_frac", xis[::keep]), ("train_frac", alphas[::keep])), name=config.name)
    compare("GPU, fig3a", config, sequential_cells=4)
    if cuda:
        print(f"  peak GPU memory: {torch.cuda.max_memory_allocated() / 1e9:.1f} GB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpu", action="store_true", help="the fig3a preset on CUDA")
    parser.add_argument("--cells", type=int, help="with --gpu: about this many cells")
    parser.add_argument("--steps", type=int, help="with --gpu: steps per cell (default 2000)")
    parser.add_argument("--device", default="cuda",
                        help="with --gpu: cuda (default), or cpu to check the script")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, "
          f"{torch.get_num_threads()} threads")
    if args.gpu:
        gpu(args.cells, args.steps, args.device)
    else:
        cpu()


if __name__ == "__main__":
    main()

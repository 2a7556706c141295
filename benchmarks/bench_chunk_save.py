"""An interrupted chunk: what stopping it costs with and without its saved state, measured in this
process on the first chunk of `--preset fig3a` (76 runs at the paper's size, p 97, width 500).

    python benchmarks/bench_chunk_save.py                 # 21 steps of the chunk on the CPU
    python benchmarks/bench_chunk_save.py --steps 40 --threads 1

A full chunk is 2,000 steps; the benchmark trains a few and extrapolates (the steps of one chunk
all cost the same, evaluations every 20 steps included). It measures the time per step, the time
from the stop flag (what SIGINT sets) to the chunk's exit without a save (before) and with one
(after), and the save itself (size, seconds). Work lost: before, everything the chunk had done;
after, nothing on SIGINT, and at most the save interval on SIGKILL.
"""

import argparse
import tempfile
import time
from pathlib import Path

import torch

from mechmem.sweep import plan_chunks, sweep_preset, train_chunk
from mechmem.sweep.cell import ChunkInterrupted
from mechmem.sweep.partial import SAVE_EVERY, save_partial


def interrupted(configs, steps: int, save) -> tuple[float, float, float]:
    """(seconds to set the chunk up, seconds per step after the first, seconds from the stop
    flag to the chunk's exit)."""
    marks: list[float] = []

    def should_stop():
        if len(marks) == steps:
            marks.append(time.perf_counter())  # the flag is set here
        return len(marks) > steps

    start = time.perf_counter()
    try:
        train_chunk(configs, on_step=lambda n: marks.append(time.perf_counter()),
                    should_stop=should_stop, save=save)
    except ChunkInterrupted:
        end = time.perf_counter()
    flag = marks[steps]
    return marks[0] - start, (marks[steps - 1] - marks[0]) / (steps - 1), end - flag


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=21)  # an evaluation every 20 steps
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    config = sweep_preset("fig3a")
    cells = [c.replace(device="cpu") for c in config.cells()]
    chunk = plan_chunks(cells, torch.device("cpu"), config.chunk_size)[0]
    configs = [cells[i] for i in chunk.cells]
    c0 = configs[0]
    print(f"fig3a chunk 0: {len(configs)} runs, p {c0.p}, width {c0.width}, {c0.steps} steps; "
          f"{args.threads} threads, torch {torch.__version__}")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "partial" / "chunk-00000.pt"
        ids = [str(i) for i in chunk.cells]
        saves = []

        def save(state):
            t = time.perf_counter()
            save_partial(path, ids, state)
            saves.append(time.perf_counter() - t)

        setup_a, step_a, stop_a = interrupted(configs, args.steps, None)
        setup_b, step_b, stop_b = interrupted(configs, args.steps, save)
        size = path.stat().st_size
    step = (step_a + step_b) / 2
    whole = (setup_a + setup_b) / 2 + step * c0.steps
    print(f"set-up and first step: {setup_a:.1f} s before, {setup_b:.1f} s after; seconds per "
          f"step (the chunk's {len(configs)} runs): {step_a:.3f} before, {step_b:.3f} after; a "
          f"whole chunk: about {whole / 60:.1f} min")
    print(f"stop flag -> chunk exit: before {stop_a:.3f} s (no save), after {stop_b:.3f} s "
          f"(save {saves[0]:.3f} s, {size / 2**20:.0f} MiB)")
    print(f"work lost to SIGINT: before up to {whole / 60:.1f} min (all of the chunk), after 0")
    print(f"work lost to SIGKILL: before up to {whole / 60:.1f} min, after at most "
          f"{SAVE_EVERY:.0f} s + one save (saves every {SAVE_EVERY:.0f} s cost "
          f"{100 * saves[0] / SAVE_EVERY:.2f}% of the training time)")


if __name__ == "__main__":
    main()

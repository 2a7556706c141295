"""An interrupted chunk: what stopping it costs with and without its saved state, measured in this
process on the first chunk of `--preset fig3a` (76 runs at the paper's size, p 97, width 500).

    python benchmarks/bench_chunk_save.py                 # 20 steps of the chunk on the CPU
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


def interrupted(configs, steps: int, save) -> tuple[float, float]:
    """(seconds per step, seconds from the stop flag to the chunk's exit)."""
    flag = {"at": None}
    done = [0]

    def on_step(n):
        done[0] += 1

    def should_stop():
        if done[0] >= steps and flag["at"] is None:
            flag["at"] = time.perf_counter()
        return flag["at"] is not None

    start = time.perf_counter()
    try:
        train_chunk(configs, on_step=on_step, should_stop=should_stop, save=save)
    except ChunkInterrupted:
        end = time.perf_counter()
    return (flag["at"] - start) / steps, end - flag["at"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=20)
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

        step_a, stop_a = interrupted(configs, args.steps, None)
        step_b, stop_b = interrupted(configs, args.steps, save)
        size = path.stat().st_size
    step = (step_a + step_b) / 2
    whole = step * c0.steps
    print(f"seconds per step (the chunk's {len(configs)} runs): {step_a:.3f} before, "
          f"{step_b:.3f} after; a whole chunk: about {whole / 60:.1f} min")
    print(f"stop flag -> chunk exit: before {stop_a:.3f} s (no save), after {stop_b:.3f} s "
          f"(save {saves[0]:.3f} s, {size / 2**20:.0f} MiB)")
    print(f"work lost to SIGINT: before up to {whole / 60:.1f} min (all of the chunk), after 0")
    print(f"work lost to SIGKILL: before up to {whole / 60:.1f} min, after at most "
          f"{SAVE_EVERY:.0f} s + one save (saves every {SAVE_EVERY:.0f} s cost "
          f"{100 * saves[0] / SAVE_EVERY:.2f}% of the training time)")


if __name__ == "__main__":
    main()

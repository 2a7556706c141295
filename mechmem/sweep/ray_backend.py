"""The Ray backend of `sweep`: each chunk one Ray task, results written by the driver alone.

The only module of mechmem that imports Ray, and only when a sweep asks for it. A task runs
`train_chunk` (the same function the local backend calls) on its configs and returns the cell
records and stacked weights; the driver writes each chunk as its task finishes, so the folder
has one writer and the same format as a local sweep. Ray retries a task whose worker process
died (`max_retries`). A task saves its chunk's state into the sweep folder (partial/) as a local
sweep does, where the folder is at hand on the task's node, so that a retried chunk continues from
there; elsewhere it starts again from its configs. Either way its cells are the same.
"""

import functools
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from ..train.config import TrainConfig
from .cell import ChunkInterrupted, train_chunk
from .folder import SWEEP_FILE
from .partial import load_partial, partial_path, save_partial
from .plan import Chunk

EXTRA = 'pip install "mechmem[ray]"'
# A task whose worker process dies (killed, out of memory, node lost) is run again this often.
MAX_RETRIES = 3


def require_ray() -> Any:
    """The `ray` module, or an ImportError with a sentence naming the extra."""
    try:
        import ray
    except ImportError:
        raise ImportError(f"--backend ray needs Ray, which is not installed: {EXTRA}") from None
    return ray


def _chunk_task(configs: list[dict[str, Any]], threads: int, keep_weights: bool,
                folder: str, chunk: int, ids: list[str], save_every: float | None,
                ) -> tuple[list[dict[str, Any]], dict | None]:
    """What one Ray task runs: a chunk, with as many torch threads as the driver uses (so that
    its arithmetic, and its cells, are those of a local sweep), continued from its saved state
    and saving it again when the sweep folder is reachable from this node."""
    torch.set_num_threads(threads)
    start, save = None, None
    if (Path(folder) / SWEEP_FILE).is_file():
        path = partial_path(folder, chunk)
        start, save = load_partial(path, ids), functools.partial(save_partial, path, ids)
    return train_chunk([TrainConfig.from_dict(c) for c in configs], keep_weights=keep_weights,
                       start=start, save=save, save_every=save_every)


def run_on_ray(jobs: Sequence[tuple[Chunk, list[TrainConfig], list[str]]],
               finish: Callable[..., Any], *, progress: Callable[..., Any],
               stop: Callable[..., Any], keep_weights: bool, address: str | None = None,
               folder: str | os.PathLike = "", save_every: float | None = None) -> None:
    """Run every chunk of `jobs` as a Ray task and `finish` each in this process as it ends.

    Args:
        jobs: (chunk, its configs, its cell ids).
        finish: called with (chunk, records, weights) for each finished chunk, in the order
            they finish.
        progress: called with the model-steps of each finished chunk.
        stop: polled while waiting; True cancels the outstanding tasks (`ChunkInterrupted`).
        keep_weights: return each chunk's weights.
        address: the cluster to join ("auto", "host:port"), left running; None starts a
            local instance (on this machine's CPUs and GPUs) and shuts it down at the end;
            an instance this process already started (`ray.init()`) is used as it is.
        folder: the sweep folder (absolute), where tasks keep their chunk's state.
        save_every: seconds between a task's saves of its chunk's state.
    """
    ray = require_ray()
    started = False
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=False,
                 configure_logging=False)
        started = address is None
    try:
        _run(ray, jobs, finish, progress, stop, keep_weights,
             str(Path(folder).resolve()), save_every)
    finally:
        if started:
            ray.shutdown()


def _run(ray: Any, jobs: Sequence[tuple[Chunk, list[TrainConfig], list[str]]],
         finish: Callable[..., Any], progress: Callable[..., Any], stop: Callable[..., Any],
         keep_weights: bool, folder: str, save_every: float | None) -> None:
    threads = torch.get_num_threads()
    running: dict[Any, tuple[Chunk, list[TrainConfig]]] = {}
    for ch, configs, ids in jobs:
        cuda = configs[0].device == "cuda"
        # A GPU task takes one whole GPU; a CPU task as many CPUs as it will use threads.
        options = {"num_gpus": 1, "num_cpus": 1} if cuda else {"num_cpus": threads}
        task = ray.remote(max_retries=MAX_RETRIES, **options)(_chunk_task)
        ref = task.remote([c.to_dict() for c in configs], threads, keep_weights, folder,
                          ch.index, ids, save_every)
        running[ref] = (ch, configs)
    try:
        while running:
            ready, _ = ray.wait(list(running), num_returns=1, timeout=0.5)
            if stop():
                raise ChunkInterrupted("stopped while chunks were running on Ray")
            for ref in ready:
                ch, configs = running.pop(ref)
                records, weights = ray.get(ref)
                finish(ch, records, weights)
                progress(sum(c.steps for c in configs))
    finally:
        for ref in running:
            ray.cancel(ref, force=True)

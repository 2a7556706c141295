"""`sweep`: train every cell of a grid, chunk by chunk, into a resumable sweep folder."""

import functools
import math
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from .._progress import progress_bar
from .._signals import signals_as_flag
from ..train.config import TrainConfig
from ..train.group import resolve_device
from .cell import ChunkInterrupted, train_chunk
from .config import SweepConfig, cell_id
from .estimate import Eta, estimate_plan, format_seconds
from .folder import (
    append_cells,
    new_folder,
    read_cells_to_resume,
    read_grid,
    read_header,
    weights_path,
    write_header,
    write_weights,
    writing,
)
from .partial import (
    SAVE_EVERY,
    check_save_every,
    clear_partials,
    load_partial,
    partial_path,
    remove_partial,
    save_partial,
)
from .plan import Chunk, plan_chunks
from .result import SweepResult, load_sweep

BACKENDS = ("local", "ray")


class SweepInterrupted(KeyboardInterrupt):
    """SIGINT stopped a sweep; every chunk finished before it is kept in the folder.

    Attributes:
        path: the sweep folder (continue with `sweep(out=path, resume=True)`).
        done, total: finished and planned cells.
    """

    def __init__(self, path: Path, done: int, total: int) -> None:
        super().__init__(f"sweep interrupted with {done} of {total} cells done")
        self.path, self.done, self.total = path, done, total


def _grid(config: SweepConfig) -> dict:
    """What must match to resume a sweep: everything but the device it runs on."""
    d = config.to_dict()
    d["base"] = {k: v for k, v in d["base"].items() if k != "device"}
    return d


def sweep(
    config: SweepConfig | None = None,
    *,
    out: str | os.PathLike,
    resume: bool = False,
    overwrite: bool = False,
    save_weights: bool = False,
    progress: bool = False,
    backend: str = "local",
    address: str | None = None,
    save_every: float | None = SAVE_EVERY,
) -> SweepResult:
    """Train every cell of `config` and write the sweep folder `out`.

    Cells that can share a training step (same width, p, batch size, norm, step count, ...)
    train together in chunks that fill the device's memory; each cell is exactly the run
    `mechmem.train` would do with its settings.

    Args:
        config: the grid; with `resume`, None continues the folder's own grid.
        out: the sweep folder (created; an existing sweep needs `resume` or `overwrite`).
        resume: continue an interrupted sweep in `out`, training only the missing chunks.
        overwrite: replace an existing sweep in `out`.
        save_weights: keep every cell's final weights (one file per chunk).
        progress: print the plan with its time estimated from a short warm-up (stderr), then
            a progress bar over model-steps with cells done / total and a settling ETA.
        backend: "local" (the chunks one after another in this process) or "ray" (each chunk
            a Ray task; needs `pip install "mechmem[ray]"`, see docs/scaling.md).
        address: with "ray", the cluster to join ("auto" or "host:port"; it is left running);
            None starts a local Ray instance and shuts it down at the end.
        save_every: a chunk in training saves its state into the folder (partial/) every this
            many seconds, and when interrupted; `resume` continues it from there (None: a
            chunk is saved only when interrupted by SIGINT).

    Returns:
        The finished sweep as a `SweepResult`.

    Raises:
        SweepInterrupted: on SIGINT (finished chunks and the state of the chunks in training
            are kept; continue with `resume=True`).

    Example:
        >>> from mechmem.sweep import SweepConfig, sweep
        >>> sc = SweepConfig(TrainConfig(p=31, width=64, steps=300, device="cpu"),
        ...                  axes=(("weight_decay", (0.0, 5.0)), ("corrupt_frac", (0.1, 0.5))))
        >>> sweep(sc, out="sweeps/small").phase_grid().values
    """
    if config is not None and not isinstance(config, SweepConfig):
        got = ("a TrainConfig: wrap it as SweepConfig(base=config, axes=...)"
               if isinstance(config, TrainConfig) else f"{type(config).__name__} {config!r:.60}")
        raise TypeError(f"`config` must be a SweepConfig (or None with resume=True), got {got}.")
    if not isinstance(out, str | os.PathLike):
        raise TypeError(f"`out` must be a folder path (a string or a path), got "
                        f"{type(out).__name__} {out!r:.60}.")
    folder = Path(out)
    if backend not in BACKENDS:
        raise ValueError(f"`backend` must be one of {', '.join(BACKENDS)}, got {backend!r}.")
    if address is not None and backend != "ray":
        raise ValueError("`address` is the Ray cluster to join: it needs backend='ray'.")
    if backend == "ray":
        from .ray_backend import require_ray

        require_ray()  # before anything is planned or written
    if resume and overwrite:
        raise ValueError("Pass either resume or overwrite, not both.")
    save_every = check_save_every(save_every)
    if resume:
        read_header(folder)  # a folder that holds no sweep is named before it is locked
    elif config is None:
        raise ValueError("sweep() needs a SweepConfig (or resume=True for an existing one).")
    with writing(folder):
        return _sweep(config, folder, resume=resume, overwrite=overwrite,
                      save_weights=save_weights, progress=progress, backend=backend,
                      address=address, save_every=save_every)


def _sweep(config: SweepConfig | None, folder: Path, *, resume: bool, overwrite: bool,
           save_weights: bool, progress: bool, backend: str, address: str | None,
           save_every: float | None) -> SweepResult:
    """`sweep`, with the folder's lock held."""
    if resume:
        plan = read_grid(folder)
        if config is not None and _grid(config) != _grid(plan.config):
            raise ValueError(f"{folder} holds another sweep's grid; resume it without a "
                             "config, or start a new one with overwrite (--force).")
        if config is not None:  # the same grid, maybe on another device: the same cell ids
            plan = read_grid(folder, config)
        config = plan.config if config is None else config
        save = bool(plan.header.get("save_weights", False)) or save_weights
        cells, ids = plan.cells, plan.ids
        chunks = [Chunk(k, c) for k, c in enumerate(plan.chunks)]
    else:
        assert config is not None
        cells = config.cells()
        ids = [cell_id(c) for c in cells]
        if len(set(ids)) != len(ids):
            raise ValueError("Two cells of the grid are the same run; remove the repeated "
                             "axis values.")
        if backend == "ray" and config.base.device == "cuda" and not torch.cuda.is_available():
            # The GPUs are on the cluster's workers, not here: the chunk size must be given.
            if config.chunk_size is None:
                raise ValueError("A Ray sweep on cluster GPUs from a driver without a GPU needs "
                                 "a chunk size (--chunk-size M, SweepConfig.chunk_size).")
            chunks = plan_chunks(cells, None, config.chunk_size)
        else:
            device = resolve_device(config.base.device)
            chunks = plan_chunks(cells, device, config.chunk_size)  # refuses what cannot fit
        new_folder(folder, overwrite=overwrite)
        clear_partials(folder)  # another sweep's chunks in training, if it was replaced
        save = save_weights
        write_header(folder, {"config": config.to_dict(), "cells": ids,
                              "chunks": [list(c.cells) for c in chunks],
                              "save_weights": save})
    done = {c["id"] for c in read_cells_to_resume(folder)}
    if save:
        # A chunk whose weights were asked for but are missing is trained again.
        done -= {ids[i] for ch in chunks for i in ch.cells
                 if not weights_path(folder, ch.index).is_file()}
    pending = [ch for ch in chunks if not all(ids[i] in done for i in ch.cells)]
    for ch in chunks:
        if ch not in pending:  # a chunk whose cells were written just before a kill
            remove_partial(partial_path(folder, ch.index))
    finished = [i for i, cid in enumerate(ids) if cid in done]
    initial = sum(cells[i].steps for i in finished)
    eta = _announce(cells, chunks, pending, config, backend) if progress else None
    # tqdm's own ETA (a moving average over steps of chunks of different speeds) is replaced
    # by the settling one of `estimate.Eta`, shown from the start.
    n_done = [len(finished)]
    shown = [0.0]

    def fields() -> dict[str, str]:
        left = eta.remaining() if eta else math.inf
        return {"cells": f"{n_done[0]}/{len(cells)}", "eta": format_seconds(left)}

    bar = progress_bar(total=sum(c.steps for c in cells), initial=initial,
                       disable=not progress, unit="model-step", unit_scale=True,
                       dynamic_ncols=True, postfix=fields(),
                       bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]")

    def postfix(refresh: bool) -> None:
        bar.set_postfix(fields(), refresh=refresh)

    def advance(n: int) -> None:
        bar.update(n)
        if eta is not None:
            eta.update(n)
            now = time.perf_counter()
            if now - shown[0] >= 0.5:  # cheap: a string at most twice a second
                shown[0] = now
                postfix(refresh=False)

    def finish(ch: Chunk, records: list[dict], weights: dict | None) -> None:
        """Write one finished chunk (the only place that writes cells: one writer)."""
        for rec, i in zip(records, ch.cells, strict=True):
            rec.update({"id": ids[i], "index": i, "chunk": ch.index})
        if save and weights is not None:
            write_weights(folder, ch.index, [ids[i] for i in ch.cells],
                          cells[ch.cells[0]].model_config().to_dict(), weights)
        append_cells(folder, records)
        remove_partial(partial_path(folder, ch.index))
        n_done[0] += len(ch.cells)
        postfix(refresh=True)

    jobs = [(ch, [cells[i] for i in ch.cells], [ids[i] for i in ch.cells]) for ch in pending]
    try:
        # SIGINT only: SIGTERM is left to cluster schedulers and Ray, which stop workers with it.
        with signals_as_flag([signal.SIGINT]) as interrupted:
            if backend == "ray":
                from .ray_backend import run_on_ray  # Ray is imported only here

                run_on_ray(jobs, finish, progress=advance, stop=lambda: interrupted[0],
                           keep_weights=save, address=address, folder=folder,
                           save_every=save_every)
            else:
                _run_local(jobs, finish, progress=advance, stop=lambda: interrupted[0],
                           keep_weights=save, folder=folder, save_every=save_every)
    except ChunkInterrupted:
        raise SweepInterrupted(folder, n_done[0], len(cells)) from None
    finally:
        bar.close()
    return load_sweep(folder)


def _announce(cells: Sequence[TrainConfig], chunks: Sequence[Chunk],
              pending: Sequence[Chunk], config: SweepConfig, backend: str) -> Eta:
    """Print the plan (with a measured estimate of its time, for the local backend) on
    stderr before training; return the ETA that the bar shows."""
    left = sum(cells[i].steps for ch in pending for i in ch.cells)
    if backend == "local":
        est = estimate_plan(cells, chunks, pending, resolve_device(config.base.device))
        sys.stderr.write(est.describe() + "\n")
        return Eta(left, est.seconds)
    sys.stderr.write(f"plan: {len(cells):,} cells in {len(chunks):,} chunks, "
                     f"{sum(c.steps for c in cells):,} model-steps, as Ray tasks\n")
    return Eta(left, None)


def _run_local(jobs: Sequence[tuple[Chunk, list[TrainConfig], list[str]]],
               finish: Callable[..., Any], *, progress: Callable[..., Any],
               stop: Callable[..., Any], keep_weights: bool, folder: Path,
               save_every: float | None) -> None:
    """The local backend: each chunk in turn, in this process, continued from its saved state
    where it has one."""
    for ch, configs, ids in jobs:
        path = partial_path(folder, ch.index)
        records, weights = train_chunk(
            configs, on_step=progress, should_stop=stop, keep_weights=keep_weights,
            start=load_partial(path, ids), save=functools.partial(save_partial, path, ids),
            save_every=save_every)
        finish(ch, records, weights)
        if stop():
            raise ChunkInterrupted("stopped between chunks")

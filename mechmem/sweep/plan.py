"""How a grid is trained: cells grouped by what can share a step, groups cut into chunks.

A chunk is one batched job: up to `chunk_size` runs trained together by one `ModelGroup`. The
plan is fixed when a sweep starts and stored with it, so that a resumed sweep trains exactly the
chunks the first attempt would have (and so gets bit-identical cells on a CPU).
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..data import train_size
from ..train.config import TrainConfig
from ..train.group import group_key
from ..train.memory import check_fits, models_per_chunk

# Full-batch runs of different training-set sizes share a step padded to the largest; a group is
# cut where the smallest set would fall below this fraction of the largest (bounds the padding).
_MIN_FILL = 0.8


@dataclass(frozen=True)
class Chunk:
    """One batched job: the grid positions of its cells."""

    index: int
    cells: tuple[int, ...]


def _similar_sizes(cells: list[int], sizes: Sequence[int]) -> list[list[int]]:
    """Split cells (sorted by size, largest first) where padding would waste too much."""
    order = sorted(cells, key=lambda i: (-sizes[i], i))
    parts: list[list[int]] = []
    for i in order:
        if parts and sizes[i] >= _MIN_FILL * sizes[parts[-1][0]]:
            parts[-1].append(i)
        else:
            parts.append([i])
    return [sorted(p) for p in parts]


def plan_chunks(cells: Sequence[TrainConfig], device: torch.device | None,
                chunk_size: int | None = None) -> list[Chunk]:
    """Group `cells` (grid order) into chunks of runs that share a training step.

    Args:
        cells: every cell's run.
        device: where they will train (the default chunk size is what fits in its memory);
            None: not on this machine (then `chunk_size` is required and memory is not checked).
        chunk_size: at most this many runs per chunk (default: as many as fit).

    Returns:
        The chunks, in order of their first cell.

    Raises:
        MemoryError: a single run (or a chunk of the given size) cannot fit on `device`.
    """
    sizes = [train_size(c.dataset_spec()) for c in cells]
    groups: dict[tuple, list[int]] = {}
    for i, (c, n) in enumerate(zip(cells, sizes, strict=True)):
        groups.setdefault(group_key(c, n), []).append(i)
    parts = []
    for members in groups.values():
        parts.extend(_similar_sizes(members, sizes))
    chunks = []
    for part in parts:
        # The largest run of the part decides how many fit.
        big = cells[max(part, key=lambda i: sizes[i])]
        if device is None and chunk_size is None:
            raise ValueError("Planning for another machine needs a chunk size.")
        size = chunk_size or models_per_chunk(big, device)
        k = math.ceil(len(part) / size)
        per = math.ceil(len(part) / k)  # equal chunks rather than a full ones and a remainder
        for lo in range(0, len(part), per):
            chunks.append(tuple(part[lo:lo + per]))
        if device is not None:
            check_fits([big] * min(per, len(part)), device)
    chunks.sort(key=lambda c: c[0])
    return [Chunk(k, c) for k, c in enumerate(chunks)]

"""A chunk's state in the middle of its training, kept in the sweep folder so that an interrupted
sweep continues a long chunk where it stopped instead of training it again.

    partial/chunk-00012.pt  {"format": "mechmem.sweep.partial", "version": 1, "ids": [cell ids],
                             "step": s, "state": stacked state_dict (leading model axis),
                             "optimizer": [each run's optimizer state],
                             "history": [each run's history up to and including state s]}

Plain tensors and containers only, written atomically and opened `weights_only`. The state is
that of step s before its update; nothing else is needed to continue: every random draw of a
run (its minibatch order, its dropout masks) is derived from its seed and the step number. The
file goes when its chunk's cells are written.
"""

import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from .._files import write_atomically

FORMAT, VERSION = "mechmem.sweep.partial", 1
PARTIAL_DIR = "partial"
# How often a chunk saves its state by default: at most this much training is lost to a kill.
SAVE_EVERY = 120.0


def partial_path(folder: str | os.PathLike, chunk: int) -> Path:
    return Path(folder) / PARTIAL_DIR / f"chunk-{chunk:05d}.pt"


def check_save_every(seconds: float | None) -> float | None:
    """`seconds` as a float, or a ValueError unless it is None or a positive finite number."""
    if seconds is None:
        return None
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not (
            0 < seconds < float("inf")):
        raise ValueError(f"The chunk save interval (--chunk-save-every, save_every) must be a "
                         f"positive number of seconds, got {seconds!r}.")
    return float(seconds)


def save_partial(path: Path, ids: Sequence[str], state: dict[str, Any]) -> None:
    """Write a chunk's state (as `train_chunk` hands it to its `save`) for the cells `ids`."""
    path.parent.mkdir(exist_ok=True)
    payload = {"format": FORMAT, "version": VERSION, "ids": list(ids), **state}
    write_atomically(path, lambda f: torch.save(payload, f))


def load_partial(path: Path, ids: Sequence[str]) -> dict[str, Any] | None:
    """The saved state of the chunk of cells `ids`, or None when there is none.

    Raises:
        ValueError: the file is damaged, or holds another chunk's cells.
    """
    if not path.is_file():
        return None
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many kinds for a damaged or hostile file
        raise ValueError(f"{path} cannot be read safely ({type(e).__name__}); remove it to "
                         "train its chunk from the start.") from None
    keys = ("ids", "step", "state", "optimizer", "history")
    if (not isinstance(payload, dict) or payload.get("format") != FORMAT
            or payload.get("version") != VERSION or any(k not in payload for k in keys)):
        raise ValueError(f"{path} is not a mechmem partial chunk (version {VERSION}); remove it "
                         "to train its chunk from the start.")
    if payload["ids"] != list(ids):
        raise ValueError(f"{path} holds the state of other cells than its chunk's; remove it to "
                         "train the chunk from the start.")
    return {k: payload[k] for k in keys[1:]}


def remove_partial(path: Path) -> None:
    """Remove a chunk's state, and the temporary file of a save that a kill cut short."""
    path.unlink(missing_ok=True)
    if path.parent.is_dir():
        for tmp in path.parent.glob(f".{path.name}.*.tmp"):
            tmp.unlink(missing_ok=True)


def clear_partials(folder: str | os.PathLike) -> None:
    """Remove every partial chunk of `folder` (a new sweep there starts from nothing)."""
    shutil.rmtree(Path(folder) / PARTIAL_DIR, ignore_errors=True)

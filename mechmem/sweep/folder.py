"""The sweep folder on disk: sweep.json, cells.jsonl and weights/, each written atomically.

    sweep.json   {"format": "mechmem.sweep", "version": 1, "mechmem_version", "config":
                  SweepConfig.to_dict(), "cells": [cell id per grid position],
                  "chunks": [[grid positions] per chunk], "save_weights": bool}
    cells.jsonl  one JSON object per finished cell (see docs/sweeps.md), grid order within a
                 chunk, chunks in the order they finished
    weights/chunk-00012.pt  (with --save-weights) the final state of every run of chunk 12,
                 stacked on a leading model axis, plain tensors only (opened weights_only)
    .mechmem.lock  held (flock) by the one process writing the folder; see mechmem._files

Every reader checks a folder alike (`read_grid`): sweep.json's cell ids must be its own grid's
and its chunk plan must name each cell once; a cells.jsonl line that is not a complete cell
record is named by its line number and key (`--resume` trains that cell again).
"""

import contextlib
import json
import shutil
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .._files import exclusive, write_atomically
from ..train.config import TrainConfig
from .config import SweepConfig, cell_id

FORMAT, VERSION = "mechmem.sweep", 1
WEIGHTS_FORMAT = "mechmem.sweep.weights"
SWEEP_FILE, CELLS_FILE, WEIGHTS_DIR = "sweep.json", "cells.jsonl", "weights"
LOCK_FILE = ".mechmem.lock"
# What every reader of a cell record looks up: key -> the keys it must hold (None: a leaf).
_ACCURACIES = ("train", "test", "clean_train", "corrupted_memorized", "corrupted_true")
_CELL_SCHEMA: dict[str, tuple[str, ...] | None] = {
    "id": None, "index": None, "chunk": None, "config": None, "phase": None,
    "accuracy": _ACCURACIES, "loss": ("train", "test"), "test_acc_peak": None,
    "test_acc_peak_step": None, "ipr": ("mean",), "weight_norms": (), "history": ()}


def _version() -> str:
    from .. import __version__

    return __version__


def weights_path(folder: Path, chunk: int) -> Path:
    return folder / WEIGHTS_DIR / f"chunk-{chunk:05d}.pt"


def write_json(path: Path, obj: Any) -> None:
    text = json.dumps(obj, indent=1, allow_nan=False) + "\n"
    write_atomically(path, lambda f: f.write(text.encode()))


@contextlib.contextmanager
def writing(folder: Path) -> Iterator[None]:
    """Hold `folder`'s lock while writing it (the folder is created if missing).

    Raises:
        BlockingIOError: another process is writing it (named by pid and host).
        NotADirectoryError: `folder` is a file.
    """
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(f"{folder} is a file, not a sweep folder.")
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    try:
        with exclusive(folder / LOCK_FILE, f"Sweep folder {folder}"):
            yield
    except BaseException:
        if created:  # a sweep refused before writing anything leaves no empty folder behind
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise


def new_folder(folder: Path, *, overwrite: bool) -> None:
    """Make `folder` ready for a new sweep; an existing sweep there is replaced only when
    `overwrite` (and then only mechmem's own files in it are removed)."""
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(f"{folder} is a file, not a sweep folder.")
    if (folder / SWEEP_FILE).exists() or (folder / CELLS_FILE).exists():
        if not overwrite:
            raise FileExistsError(
                f"{folder} already holds a sweep; pass --resume to continue it or --force to "
                "start over (resume=True / overwrite=True from Python).")
        for name in (SWEEP_FILE, CELLS_FILE):
            (folder / name).unlink(missing_ok=True)
        shutil.rmtree(folder / WEIGHTS_DIR, ignore_errors=True)
    folder.mkdir(parents=True, exist_ok=True)


def write_header(folder: Path, header: Mapping[str, Any]) -> None:
    write_json(folder / SWEEP_FILE, {"format": FORMAT, "version": VERSION,
                                     "mechmem_version": _version(), **header})
    if not (folder / CELLS_FILE).exists():
        write_atomically(folder / CELLS_FILE, lambda f: None)


def read_header(folder: Path) -> dict[str, Any]:
    """sweep.json of `folder`, checked."""
    path = folder / SWEEP_FILE
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder; no sweep to open there.")
    if not path.is_file():
        raise FileNotFoundError(f"{folder} is not a sweep folder: it has no {SWEEP_FILE}.")
    try:
        header = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise ValueError(f"{path} is not valid JSON ({e.__class__.__name__}); truncated or "
                         "not written by mechmem.") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise ValueError(f"{path} is not a mechmem sweep file.")
    if header.get("version") != VERSION:
        raise ValueError(f"{path} has sweep format version {header.get('version')!r}; this "
                         f"mechmem reads version {VERSION}.")
    for key in ("config", "cells", "chunks"):
        if key not in header:
            raise ValueError(f"{path} lacks the field {key!r}.")
    if not isinstance(header["cells"], list) or not all(
            isinstance(c, str) for c in header["cells"]):
        raise ValueError(f"{path}: its field 'cells' is not a list of cell ids.")
    return header


def _problem(cell: Any) -> str | None:
    """What is wrong with a cell record, or None."""
    if not isinstance(cell, dict):
        return f"holds a JSON {type(cell).__name__}, not a cell record"
    for key, inner in _CELL_SCHEMA.items():
        if key not in cell:
            return f"the cell record lacks the key {key!r}"
        if inner is not None and not isinstance(cell[key], dict):
            return f"the cell record's {key!r} is not an object"
        for k in inner or ():
            if k not in cell[key]:
                return f"the cell record lacks the key '{key}.{k}'"
            v = cell[key][k]
            if v is not None and (isinstance(v, bool) or not isinstance(v, int | float)):
                return f"the cell record's '{key}.{k}' is not a number"
    if not isinstance(cell["id"], str) or not isinstance(cell["config"], dict):
        return "the cell record's 'id' or 'config' is damaged"
    if not isinstance(cell["phase"], str):
        return "the cell record's 'phase' is not a string"
    if any(isinstance(cell[k], bool) or not isinstance(cell[k], int)
           for k in ("index", "chunk", "test_acc_peak_step")):
        return "the cell record's 'index', 'chunk' or 'test_acc_peak_step' is not an integer"
    return None


def _lines(folder: Path) -> Iterator[tuple[int, str, dict[str, Any] | None, str | None]]:
    """(line number, text, cell or None, problem or None) for every non-blank line."""
    path = folder / CELLS_FILE
    if not path.exists():
        return
    try:
        text = path.read_bytes().decode("utf-8", errors="replace")
    except OSError as e:
        raise OSError(f"{path}: cannot be read ({e.strerror or type(e).__name__}).") from None
    for k, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            cell = json.loads(line)
        except (json.JSONDecodeError, RecursionError):
            yield k, line, None, "not valid JSON (cut short or damaged)"
            continue
        problem = _problem(cell)
        yield k, line, None if problem else cell, problem


def damaged_line(folder: Path, line: int, problem: str) -> str:
    return f"{folder}: {CELLS_FILE} line {line}: {problem}"


def read_cells(folder: Path) -> list[dict[str, Any]]:
    """Every finished cell of `folder`'s cells.jsonl.

    Raises:
        ValueError: a damaged line, named by folder, line number and key.
    """
    out = []
    for k, _, cell, problem in _lines(folder):
        if problem:
            raise ValueError(damaged_line(folder, k, problem) + f"; mechmem sweep --resume "
                             f"{folder} trains that cell again.")
        out.append(cell)
    return out


def read_cells_to_resume(folder: Path) -> list[dict[str, Any]]:
    """The sound cells of `folder`'s cells.jsonl; each damaged line is named in a warning and
    its cell left to train again."""
    out = []
    for k, _, cell, problem in _lines(folder):
        if problem:
            # stacklevel: past _sweep and sweep, at sweep's caller
            warnings.warn(damaged_line(folder, k, problem) + "; that cell is trained again.",
                          stacklevel=4)
        else:
            out.append(cell)
    return out


def append_cells(folder: Path, cells: Sequence[Mapping[str, Any]]) -> None:
    """Add finished cells (replacing earlier records of the same cells, and dropping damaged
    lines): the file is rewritten whole (atomically), never left half-written."""
    path = folder / CELLS_FILE
    ids = {c["id"] for c in cells}
    kept = [line for _, line, cell, _ in _lines(folder) if cell is not None
            and cell["id"] not in ids]
    old = "".join(line + "\n" for line in kept).encode()
    new = "".join(json.dumps(c, allow_nan=False, separators=(",", ":")) + "\n" for c in cells)

    def write(f):
        f.write(old)
        f.write(new.encode())

    write_atomically(path, write)


@dataclass(frozen=True)
class Plan:
    """A sweep folder's grid as its sweep.json states it, checked against itself."""

    header: dict[str, Any]
    config: SweepConfig
    cells: list[TrainConfig]
    ids: list[str]
    chunks: list[tuple[int, ...]]


def read_grid(folder: Path, config: SweepConfig | None = None) -> Plan:
    """sweep.json of `folder`, with its grid rebuilt and checked: the config is valid, its
    cells have the stored ids and the chunk plan names every cell exactly once.

    Args:
        folder: the sweep folder.
        config: the config to check the cell ids against (default: the stored one).

    Raises:
        ValueError: naming sweep.json and what does not match.
    """
    header = read_header(folder)
    path = folder / SWEEP_FILE
    try:
        stored = SweepConfig.from_dict(header["config"])
    except (TypeError, ValueError, AttributeError) as e:
        raise ValueError(f"{path}: its config is not valid: {e}") from None
    config = stored if config is None else config
    cells = config.cells()
    ids = [cell_id(c) for c in cells]
    if ids != header["cells"]:
        raise ValueError(f"{path}: its cell ids do not match its own grid (edited or damaged); "
                         "start the sweep again with --force.")
    chunks = header["chunks"]
    if not isinstance(chunks, list) or not all(
            isinstance(c, list) and c and all(type(i) is int for i in c) for c in chunks):
        raise ValueError(f"{path}: its chunk plan is not a list of lists of cell positions.")
    seen = sorted(i for c in chunks for i in c)
    if seen != list(range(len(ids))):
        bad = next((i for i in seen if not 0 <= i < len(ids)), None)
        what = (f"names cell {bad}, outside the grid of {len(ids)} cells" if bad is not None
                else f"does not name each of the {len(ids)} cells exactly once")
        raise ValueError(f"{path}: its chunk plan {what} (edited or damaged); start the sweep "
                         "again with --force.")
    return Plan(header, stored, cells, ids, [tuple(c) for c in chunks])


def write_weights(folder: Path, chunk: int, ids: Sequence[str], model_config: Mapping[str, Any],
                 state: Mapping[str, Tensor]) -> None:
    (folder / WEIGHTS_DIR).mkdir(exist_ok=True)
    payload = {"format": WEIGHTS_FORMAT, "version": VERSION, "ids": list(ids),
               "model_config": dict(model_config), "state": dict(state)}
    write_atomically(weights_path(folder, chunk), lambda f: torch.save(payload, f))


def load_weights(folder: Path, chunk: int) -> dict[str, Any]:
    path = weights_path(folder, chunk)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} does not exist: the sweep was run without --save-weights, or the file "
            "was removed.")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many kinds for a damaged or hostile file
        raise ValueError(f"{path} cannot be read safely ({type(e).__name__}); it is damaged "
                         "or not a mechmem weights file.") from None
    if not isinstance(payload, dict) or payload.get("format") != WEIGHTS_FORMAT:
        raise ValueError(f"{path} is not a mechmem sweep weights file.")
    return payload


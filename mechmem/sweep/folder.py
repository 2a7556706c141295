"""The sweep folder on disk: sweep.json, cells.jsonl and weights/, each written atomically.

    sweep.json   {"format": "mechmem.sweep", "version": 1, "mechmem_version", "config":
                  SweepConfig.to_dict(), "cells": [cell id per grid position],
                  "chunks": [[grid positions] per chunk], "save_weights": bool}
    cells.jsonl  one JSON object per finished cell (see docs/sweeps.md), grid order within a
                 chunk, chunks in the order they finished
    weights/chunk-00012.pt  (with --save-weights) the final state of every run of chunk 12,
                 stacked on a leading model axis, plain tensors only (opened weights_only)
"""

import json
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .._files import write_atomically

FORMAT, VERSION = "mechmem.sweep", 1
WEIGHTS_FORMAT = "mechmem.sweep.weights"
SWEEP_FILE, CELLS_FILE, WEIGHTS_DIR = "sweep.json", "cells.jsonl", "weights"


def _version() -> str:
    from .. import __version__

    return __version__


def weights_path(folder: Path, chunk: int) -> Path:
    return folder / WEIGHTS_DIR / f"chunk-{chunk:05d}.pt"


def write_json(path: Path, obj: Any) -> None:
    text = json.dumps(obj, indent=1, allow_nan=False) + "\n"
    write_atomically(path, lambda f: f.write(text.encode()))


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
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
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
    return header


def read_cells(folder: Path) -> list[dict[str, Any]]:
    """Every finished cell of `folder`'s cells.jsonl."""
    path = folder / CELLS_FILE
    if not path.exists():
        return []
    out = []
    for k, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            cell = json.loads(line)
        except json.JSONDecodeError:
            raise ValueError(f"{path}, line {k}: not valid JSON; the file is damaged.") from None
        if not isinstance(cell, dict) or "id" not in cell or "config" not in cell:
            raise ValueError(f"{path}, line {k}: not a sweep cell.")
        out.append(cell)
    return out


def append_cells(folder: Path, cells: Sequence[Mapping[str, Any]]) -> None:
    """Add finished cells (replacing earlier records of the same cells): the file is rewritten
    whole (atomically), never left half-written."""
    path = folder / CELLS_FILE
    ids = {c["id"] for c in cells}
    kept = [line for line in (path.read_text().splitlines() if path.exists() else [])
            if line.strip() and json.loads(line).get("id") not in ids]
    old = "".join(line + "\n" for line in kept).encode()
    new = "".join(json.dumps(c, allow_nan=False, separators=(",", ":")) + "\n" for c in cells)

    def write(f):
        f.write(old)
        f.write(new.encode())

    write_atomically(path, write)


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


"""Atomic file writes: a destination is replaced whole or not at all, and only when asked."""

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO


def check_destination(path: str | os.PathLike, *, overwrite: bool, what: str) -> Path:
    """The path as a `Path`, after checking that it may be written.

    Raises:
        FileExistsError: it exists and `overwrite` is False.
        IsADirectoryError: it is a folder.
        FileNotFoundError: its folder does not exist.
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder, not a {what} file path.")
    if path.exists() and not overwrite:
        raise FileExistsError(
            f"{path} exists; pass --force (overwrite=True from Python) to replace it."
        )
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise FileNotFoundError(f"Cannot write {path}: folder {folder} does not exist.")
    return path


def write_atomically(path: Path, write: Callable[[IO[bytes]], None]) -> Path:
    """Call `write` on a temporary file beside `path`, flush it to disk, then rename it over
    `path`; on any failure the temporary file is removed and `path` is left as it was."""
    folder = path.parent if str(path.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        # mkstemp makes the file owner-only; give it the mode any new file would get.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path

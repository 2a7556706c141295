"""Safe file writes: a destination is checked before any work, replaced whole or not at all,
only when asked, and by one process at a time.

A write goes to a hidden temporary file beside its target, `.NAME.<pid>.<random>.tmp`, renamed
over the target once complete. A process killed mid-write leaves that temporary behind; the next
write of the same target removes the ones whose process no longer runs on this machine.

A writer that must be alone (a training run writing its checkpoint, a sweep writing its folder)
holds a lock: an `flock` on a hidden lock file that records the holder's pid and host. The kernel
releases it when the holder exits, however it exits, so a killed process never leaves it stuck.
"""

import contextlib
import datetime
import errno
import fcntl
import glob
import os
import socket
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO


def _folder(path: Path) -> Path:
    return path.parent if str(path.parent) else Path(".")


def check_writable(path: Path) -> None:
    """Raise a PermissionError naming `path` unless a file can be created in its folder (tried
    for real: permissions, read-only mounts and full quotas all show up only then)."""
    folder = _folder(path)
    try:
        fd, probe = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp",
                                     dir=folder)
    except OSError as e:
        reason = e.strerror or type(e).__name__
        raise PermissionError(
            f"Cannot write {path}: its folder {folder} is not writable ({reason}); choose "
            "another destination.") from None
    os.close(fd)
    os.unlink(probe)


def check_destination(path: str | os.PathLike, *, overwrite: bool, what: str) -> Path:
    """The path as a `Path`, after checking that it may be written.

    Raises:
        FileExistsError: it exists and `overwrite` is False.
        IsADirectoryError: it is a folder.
        FileNotFoundError: its folder does not exist.
        PermissionError: its folder cannot be written (no permission, read-only mount).
    """
    if not isinstance(path, str | os.PathLike):
        raise TypeError(f"The {what} path must be a string or a path, got "
                        f"{type(path).__name__} {path!r}.")
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder, not a {what} file path.")
    if path.exists() and not overwrite:
        raise FileExistsError(
            f"{path} exists; pass --force (overwrite=True from Python) to replace it."
        )
    folder = _folder(path)
    if not folder.is_dir():
        raise FileNotFoundError(f"Cannot write {path}: folder {folder} does not exist.")
    check_writable(path)
    return path


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


def remove_stale_temporaries(path: Path) -> list[Path]:
    """Remove the temporaries of `path` left by writers that no longer run on this machine.

    Returns:
        The files removed.
    """
    removed = []
    prefix = f".{path.name}."
    for tmp in _folder(path).glob(f"{glob.escape(prefix)}*.tmp"):
        pid, _, rest = tmp.name[len(prefix):-len(".tmp")].partition(".")
        if not (pid.isdigit() and rest) or int(pid) == os.getpid() or _running(int(pid)):
            continue
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
            removed.append(tmp)
    return removed


def write_atomically(path: Path, write: Callable[[IO[bytes]], None]) -> Path:
    """Call `write` on a temporary file beside `path`, flush it to disk, then rename it over
    `path`; on any failure the temporary file is removed and `path` is left as it was. Stale
    temporaries of `path` (from killed writers) are removed first."""
    folder = _folder(path)
    remove_stale_temporaries(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=folder)
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


def lock_path(target: Path) -> Path:
    """The lock file of a checkpoint path: `.NAME.lock` beside it."""
    return _folder(target) / f".{target.name}.lock"


@contextlib.contextmanager
def exclusive(lock: Path, what: str) -> Iterator[None]:
    """Hold the lock file `lock` for the duration; `what` names the guarded thing in the error.

    Raises:
        BlockingIOError: another process holds it (the message names its pid and host).
    """
    while True:
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as e:
            raise PermissionError(f"Cannot write {what}: its lock file {lock} cannot be created "
                                  f"({e.strerror or type(e).__name__}).") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = os.pread(fd, 300, 0).decode(errors="replace").strip()
            os.close(fd)
            if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            raise BlockingIOError(
                f"{what} is in use by {holder or 'another process'}; wait for it to finish "
                "or stop it (a stopped process releases it at once).") from None
        # A holder that finishes unlinks the lock file: the file locked must still be `lock`.
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(lock))
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        since = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"mechmem pid {os.getpid()} on {socket.gethostname()} (since "
                      f"{since})\n".encode(), 0)
        yield
    finally:
        with contextlib.suppress(OSError):
            lock.unlink()
        os.close(fd)

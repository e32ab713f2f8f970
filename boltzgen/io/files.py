"""Atomic file writes: a temporary file beside the target, moved into place on success.

A killed process never leaves a half-written file under the final name: the data goes to
``.NAME.XXXX.tmp`` in the same folder, is flushed and fsynced, and :func:`os.replace` moves it
onto ``NAME`` (atomic on POSIX file systems).

A process killed inside :func:`atomic_write` (SIGKILL, power loss) leaves its ``.NAME.XXXX.tmp``
behind; :func:`remove_stale_temporaries` removes such files when a run starts. The writer holds
an exclusive :func:`fcntl.flock` on its temporary file, which the kernel releases when the
process dies, so a temporary file that can be locked belongs to no live writer.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import re
import stat
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import BoltzgenError

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None  # type: ignore[assignment]

__all__ = ["atomic_write", "atomic_write_text", "write_json", "remove_stale_temporaries"]

#: The names :func:`atomic_write` gives its temporary files: ``.NAME.`` + the 8 characters
#: :func:`tempfile.mkstemp` draws from ``[a-z0-9_]`` + ``.tmp``.
TEMPORARY_NAME = re.compile(r"\.(?P<name>.+)\.[a-z0-9_]{8}\.tmp")

#: Where locks are not supported, a temporary file this old (s) is taken as stale.
UNLOCKED_STALE_AGE_S = 600.0


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator[io.IOBase]:
    """Open a temporary file beside ``path``; on success move it onto ``path``, else delete it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    _lock(fd)  # held until the file is in place; the kernel drops it if the process dies
    try:
        held = os.dup(fd)  # keeps the lock after the handle is closed, until os.replace is done
    except OSError:
        os.close(fd)
        os.unlink(tmp)
        raise
    try:
        with os.fdopen(fd, mode) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as error:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        full = _disk_full(error)
        if full is not None:
            kept = "the previous version is kept" if path.exists() else "nothing was written"
            raise BoltzgenError(
                f"cannot write {path}: {full.strerror}; {kept}; free some space and run the "
                "same command again"
            ) from None
        raise
    finally:
        os.close(held)


#: errno values that mean the file system cannot take more data.
_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def _disk_full(error: BaseException | None) -> OSError | None:
    """The "no space left" (or quota, or file size limit) error in ``error``'s chain, if any:
    torch's zip writer reports a failed write as a RuntimeError whose context is the OSError."""
    seen = 0
    while error is not None and seen < 8:
        if isinstance(error, OSError) and error.errno in _FULL:
            return error
        error = error.__cause__ or error.__context__
        seen += 1
    return None


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write a text file atomically."""
    with atomic_write(path, "w") as handle:
        handle.write(text)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write JSON atomically (indented, keys in insertion order)."""
    atomic_write_text(path, json.dumps(obj, indent=2) + "\n")


def _lock(fd: int) -> None:
    """Take an exclusive lock on ``fd`` without waiting, where locks are supported."""
    if fcntl is not None:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


def _is_stale(fd: int, mtime: float) -> bool:
    """Whether the temporary file open as ``fd`` belongs to no live writer: it can be locked
    (the writer's lock went with its process), or, where locks are not supported, it is old."""
    if fcntl is not None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False  # a live writer holds it
        except OSError:
            pass  # locks not supported on this file system
    return time.time() - mtime >= UNLOCKED_STALE_AGE_S


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporary files that killed :func:`atomic_write` calls left in ``folder``.

    Only regular files (not links) directly in ``folder`` whose names match
    :data:`TEMPORARY_NAME` (``.NAME.XXXXXXXX.tmp``) are candidates, and of those only the ones
    that no live process is writing: the writer holds a lock on its temporary file, so a file
    that can be locked is stale. Where locks are not supported, a candidate counts as stale when
    it was last modified :data:`UNLOCKED_STALE_AGE_S` or more ago.

    Returns:
        The files removed (none when ``folder`` does not exist).
    """
    folder = Path(folder)
    try:
        names = sorted(os.listdir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return []
    removed = []
    for name in names:
        if not TEMPORARY_NAME.fullmatch(name):
            continue
        path = folder / name
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | os.O_NONBLOCK)
        except OSError:  # gone meanwhile, a link, or unreadable: leave it
            continue
        try:
            info = os.fstat(fd)
            if stat.S_ISREG(info.st_mode) and _is_stale(fd, info.st_mtime):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
                    removed.append(path)
        finally:
            os.close(fd)
    return removed

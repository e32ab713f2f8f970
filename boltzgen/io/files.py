"""Atomic file writes: a temporary file beside the target, moved into place on success.

A killed process never leaves a half-written file under the final name: the data goes to
``.NAME.XXXX.tmp`` in the same folder, is flushed and fsynced, and :func:`os.replace` moves it
onto ``NAME`` (atomic on POSIX file systems).
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import BoltzgenError

__all__ = ["atomic_write", "atomic_write_text", "write_json"]


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator[io.IOBase]:
    """Open a temporary file beside ``path``; on success move it onto ``path``, else delete it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
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

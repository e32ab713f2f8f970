"""Files: atomic writes, checkpoints that load safely, sample files and run directories.

Checkpoints are plain dicts of tensors, numbers and strings saved with :func:`torch.save` to a
temporary file in the same folder and moved into place with :func:`os.replace`, so a killed run
never leaves a half-written checkpoint. They are read with ``torch.load(weights_only=True)``,
which never unpickles arbitrary objects, and must carry ``format == CHECKPOINT_FORMAT``.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .errors import BoltzgenError

__all__ = [
    "CHECKPOINT_FORMAT",
    "atomic_write",
    "atomic_write_text",
    "save_checkpoint",
    "load_checkpoint",
    "load_samples",
    "save_samples",
    "MetricsLog",
    "write_json",
    "read_metrics_columns",
]

CHECKPOINT_FORMAT = "boltzgen-checkpoint-v1"


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
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write a text file atomically."""
    with atomic_write(path, "w") as handle:
        handle.write(text)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write JSON atomically (indented, keys in insertion order)."""
    atomic_write_text(path, json.dumps(obj, indent=2) + "\n")


def save_checkpoint(path: str | os.PathLike, state: Mapping[str, Any]) -> None:
    """Save a checkpoint dict atomically, stamped with :data:`CHECKPOINT_FORMAT`."""
    with atomic_write(path) as handle:
        torch.save({"format": CHECKPOINT_FORMAT, **state}, handle)


def load_checkpoint(
    path: str | os.PathLike, map_location: str | torch.device = "cpu"
) -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint`, refusing anything else.

    Raises:
        BoltzgenError: The file is missing, corrupted, not a torch file, holds pickled objects
            that ``weights_only`` refuses, or is not a boltzgen checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise BoltzgenError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # torch raises many types for corrupted / foreign files
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise BoltzgenError(
            f"{path} is not a readable boltzgen checkpoint (corrupted or foreign file: {reason[:160]}); "
            "delete it to start over or point to another checkpoint"
        ) from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise BoltzgenError(
            f"{path} is not a boltzgen checkpoint (no '{CHECKPOINT_FORMAT}' stamp)"
        )
    return state


def save_samples(path: str | os.PathLike, samples: Tensor, **extra: Tensor) -> None:
    """Write samples (and named per-sample arrays such as ``log_q``) to ``.pt``, ``.npy`` or ``.npz``."""
    path = Path(path)
    arrays = {"samples": samples.detach().cpu(), **{k: v.detach().cpu() for k, v in extra.items()}}
    if path.suffix == ".pt":
        with atomic_write(path) as handle:
            torch.save(arrays, handle)
    elif path.suffix == ".npz":
        with atomic_write(path) as handle:
            np.savez(handle, **{k: v.numpy() for k, v in arrays.items()})
    elif path.suffix == ".npy":
        with atomic_write(path) as handle:
            np.save(handle, arrays["samples"].numpy())
    else:
        raise BoltzgenError(
            f"unknown sample file type '{path.suffix}' for {path}: use .pt, .npz or .npy"
        )


def load_samples(path: str | os.PathLike, key: str = "samples") -> Tensor:
    """Read a tensor of samples from ``.pt`` (tensor or dict), ``.npy`` or ``.npz`` (array ``key``).

    Raises:
        BoltzgenError: Missing file, unknown type, missing key or unreadable content.
    """
    path = Path(path)
    if not path.is_file():
        raise BoltzgenError(f"data file {path} does not exist")
    try:
        if path.suffix == ".pt":
            obj = torch.load(path, map_location="cpu", weights_only=True)
            if isinstance(obj, dict):
                if key not in obj:
                    raise BoltzgenError(
                        f"{path} has no '{key}' entry (has: {', '.join(map(str, obj))})"
                    )
                obj = obj[key]
            return torch.as_tensor(obj)
        if path.suffix == ".npy":
            return torch.from_numpy(np.load(path, allow_pickle=False))
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as archive:
                if key not in archive.files:
                    raise BoltzgenError(
                        f"{path} has no array '{key}' (has: {', '.join(archive.files)})"
                    )
                return torch.from_numpy(archive[key])
    except BoltzgenError:
        raise
    except Exception as error:
        raise BoltzgenError(
            f"cannot read samples from {path}: {str(error).splitlines()[0][:160]}"
        ) from None
    raise BoltzgenError(
        f"unknown data file type '{path.suffix}' for {path}: use .pt, .npy or .npz"
    )


class MetricsLog:
    """Append-only CSV log of training diagnostics (``metrics.csv`` of a run directory).

    The header is fixed by the first row written; later rows may add no new columns. On resume,
    :meth:`truncate_after` drops rows newer than the checkpoint so that the log matches the state.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.columns: list[str] | None = None
        if self.path.is_file():
            with open(self.path, newline="") as handle:
                header = next(csv.reader(handle), None)
            self.columns = header or None

    def append(self, row: Mapping[str, Any]) -> None:
        """Append one row; the first row fixes the columns."""
        if self.columns is None:
            self.columns = list(row)
            atomic_write_text(self.path, ",".join(self.columns) + "\n")
        with open(self.path, "a", newline="") as handle:
            csv.writer(handle).writerow([_format(row.get(c, "")) for c in self.columns])

    def truncate_after(self, step: int, stage: str = "") -> None:
        """Drop the rows of ``stage`` whose ``step`` is larger than ``step`` (other stages are kept)."""
        if self.columns is None:
            return
        rows = self.read()
        kept = [r for r in rows if r.get("stage", "") != stage or int(float(r["step"])) <= step]
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(self.columns)
        for r in kept:
            writer.writerow([r.get(c, "") for c in self.columns])
        atomic_write_text(self.path, buffer.getvalue())

    def read(self) -> list[dict[str, str]]:
        """All rows as dicts of strings."""
        if not self.path.is_file():
            return []
        with open(self.path, newline="") as handle:
            return list(csv.DictReader(handle))


def _format(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.8g}"
    return str(value)


def read_metrics_columns(rows: list[Mapping[str, str]], column: str) -> np.ndarray:
    """One numeric column of :meth:`MetricsLog.read` rows (empty strings become NaN)."""
    return np.array([float(r[column]) if r.get(column, "") != "" else np.nan for r in rows])

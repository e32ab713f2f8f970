"""``metrics.csv``: the append-only log of training diagnostics of a run directory."""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .files import atomic_write_text

__all__ = ["MetricsLog", "read_metrics_columns"]


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
        """Drop the rows of ``stage`` whose ``step`` is larger than ``step`` (other stages are
        kept)."""
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

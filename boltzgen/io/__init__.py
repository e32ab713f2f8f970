"""Files: atomic writes, checkpoints that load safely, sample files, metrics logs, run folders.

Everything that boltzgen writes goes through :func:`atomic_write` (temporary file, fsync,
rename), so a killed process leaves either the old file or the new one, never half of one.
"""

from __future__ import annotations

from .checkpoints import (
    CHECKPOINT_FORMAT,
    CorruptedCheckpoint,
    checkpoint_exists,
    load_checkpoint,
    save_checkpoint,
)
from .files import atomic_write, atomic_write_text, remove_stale_temporaries, write_json
from .metrics import MetricsLog, read_metrics_columns
from .rundir import RunDir, dump_toml
from .samples import load_samples, read_arrays, save_samples

__all__ = [
    "CHECKPOINT_FORMAT",
    "CorruptedCheckpoint",
    "atomic_write",
    "atomic_write_text",
    "remove_stale_temporaries",
    "write_json",
    "save_checkpoint",
    "load_checkpoint",
    "checkpoint_exists",
    "save_samples",
    "load_samples",
    "read_arrays",
    "MetricsLog",
    "read_metrics_columns",
    "RunDir",
    "dump_toml",
]

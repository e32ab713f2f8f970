"""Checkpoints: plain dicts of tensors, numbers and strings, written atomically, loaded safely.

Checkpoints are saved with :func:`torch.save` through :func:`~boltzgen.io.files.atomic_write`, so
a killed run never leaves a half-written checkpoint. They are read with
``torch.load(weights_only=True)``, which never unpickles arbitrary objects, and must carry
``format == CHECKPOINT_FORMAT``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ..errors import BoltzgenError
from .files import atomic_write

__all__ = ["CHECKPOINT_FORMAT", "save_checkpoint", "load_checkpoint"]

CHECKPOINT_FORMAT = "boltzgen-checkpoint-v1"


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
            f"{path} is not a readable boltzgen checkpoint (corrupted or foreign file: "
            f"{reason[:160]}); "
            "delete it to start over or point to another checkpoint"
        ) from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise BoltzgenError(
            f"{path} is not a boltzgen checkpoint (no '{CHECKPOINT_FORMAT}' stamp)"
        )
    return state

"""The one JSON style of every ``--json`` output: one object on one line of stdout.

Keys are snake_case and name their unit as a suffix where a value has one (``wall_time_s``,
``temperature_K``, ``mean_potential_energy_kJ_mol``; reduced energies and nats are unitless);
numbers are JSON numbers (NumPy and torch scalars and arrays converted), a value that is not
known or not finite is ``null`` (JSON has no NaN), paths are strings.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["json_text", "print_json"]


def _plain(value: Any) -> Any:
    """``value`` as JSON types: NaN and inf -> None, arrays -> lists, paths -> strings."""
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):  # numpy, torch
        return _plain(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, np.generic):
        return _plain(value.item())
    return str(value)


def json_text(value: Any) -> str:
    """``value`` as strict JSON text in the style above (one line).

    >>> json_text({"ess": float("nan"), "steps": np.int64(3), "dir": Path("runs/a")})
    '{"ess": null, "steps": 3, "dir": "runs/a"}'
    """
    return json.dumps(_plain(value), allow_nan=False)


def print_json(value: Any) -> None:
    """Print ``value`` as one line of strict JSON on stdout."""
    print(json_text(value))

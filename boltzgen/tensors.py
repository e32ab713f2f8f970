"""Devices and dtypes: the one table of dtype names and the one device selection.

Every command and config names a device as ``"auto"`` (CUDA when present, else the CPU),
``"cpu"``, ``"cuda"`` or ``"cuda:K"``, and a floating dtype as ``"float32"`` or ``"float64"``.
"""

from __future__ import annotations

import platform

import torch

from .errors import BoltzgenError

__all__ = ["DTYPES", "dtype_from_name", "select_device", "device_description"]

#: Floating dtypes by the names configs and commands use.
DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "float64": torch.float64}


def dtype_from_name(name: str) -> torch.dtype:
    """The torch dtype called ``name`` (a key of :data:`DTYPES`).

    Raises:
        BoltzgenError: For any other name.
    """
    if name not in DTYPES:
        raise BoltzgenError(f"dtype must be one of {', '.join(DTYPES)}, got {name!r}")
    return DTYPES[name]


def select_device(name: str) -> torch.device:
    """``"auto"``: CUDA when available, else the CPU; ``"cpu"``, ``"cuda"`` or ``"cuda:K"``.

    Raises:
        BoltzgenError: CUDA asked for but not available, or a name that is not a device.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not (name == "cpu" or name == "cuda" or name.startswith("cuda:")):
        raise BoltzgenError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:K', got {name!r}")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise BoltzgenError(f"device {name!r} asked for, but CUDA is not available here: use cpu")
    try:
        return torch.device(name)
    except RuntimeError:
        raise BoltzgenError(f"{name!r} is not a device: use auto, cpu, cuda or cuda:K") from None


def device_description(device: torch.device) -> str:
    """The device in words: the GPU's name, or the CPU and its thread count."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"

"""Sample files: tensors of states (and per-sample arrays) in ``.pt``, ``.npy`` or ``.npz``."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..errors import BoltzgenError, first_line
from .files import atomic_write

__all__ = ["save_samples", "load_samples", "read_arrays"]


def save_samples(path: str | os.PathLike, samples: Tensor, **extra: Tensor) -> None:
    """Write samples (and named per-sample arrays such as ``log_q``) to ``.pt``, ``.npy`` or
    ``.npz``."""
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
    """Read a tensor of samples from ``.pt`` (tensor or dict), ``.npy`` or ``.npz`` (array
    ``key``).

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
            return torch.from_numpy(read_arrays(path, (key,), "samples")[key])
    except BoltzgenError:
        raise
    except Exception as error:
        raise BoltzgenError(f"cannot read samples from {path}: {first_line(error)}") from None
    raise BoltzgenError(
        f"unknown data file type '{path.suffix}' for {path}: use .pt, .npy or .npz"
    )


def read_arrays(
    path: str | os.PathLike, required: Sequence[str], what: str
) -> dict[str, np.ndarray]:
    """Every array of the ``.npz`` at ``path`` (never unpickling objects), checked to hold the
    ``required`` keys.

    Arguments:
        path: The archive.
        required: Keys it must have.
        what: What the file is, for the messages (``"reference split"``).

    Raises:
        BoltzgenError: One line: a missing or unreadable file (not an archive, truncated,
            object arrays) or a missing key.
    """
    path = Path(path)
    if not path.is_file():
        raise BoltzgenError(f"{what} {path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except Exception as error:  # numpy and zipfile raise many types for damaged archives
        raise BoltzgenError(
            f"cannot read {what} {path} ({first_line(error)[:120]}): write it again"
        ) from None
    missing = [key for key in required if key not in arrays]
    if missing:
        raise BoltzgenError(
            f"{what} {path} has no array {', '.join(repr(k) for k in missing)} "
            f"(has: {', '.join(arrays) or 'none'})"
        )
    return arrays

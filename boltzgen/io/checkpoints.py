"""Checkpoints: plain dicts of tensors, numbers and strings, written atomically, loaded safely.

Checkpoints are saved with :func:`torch.save` through :func:`~boltzgen.io.files.atomic_write`, so
a killed run never leaves a half-written checkpoint. They are read with
``torch.load(weights_only=True)``, which never unpickles arbitrary objects, and must carry
``format == CHECKPOINT_FORMAT`` (or a format of :data:`LEGACY_FORMATS`).

Integrity: :func:`save_checkpoint` stores a SHA-256 digest of the whole content (every tensor's
dtype, shape and bytes, and every number, string and key, in a canonical order) under
``"digest"``; :func:`load_checkpoint` checks the CRC-32 of every record of the zip container and
then recomputes the digest, so a flipped byte anywhere in the file is refused with one line.
Checkpoints of :data:`LEGACY_FORMATS` (written before the digest existed) are accepted on their
CRC-32s alone.

Structure: ``load_checkpoint(path, kind=...)`` checks the keys and types that a checkpoint of
that kind (:data:`CHECKPOINT_KINDS`) must hold, so that a stamped but incomplete checkpoint is
refused with one line naming the key instead of a ``KeyError`` later.
"""

from __future__ import annotations

import hashlib
import os
import stat
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..errors import BoltzgenError, first_line
from .files import atomic_write

__all__ = [
    "CHECKPOINT_FORMAT",
    "LEGACY_FORMATS",
    "CHECKPOINT_KINDS",
    "CorruptedCheckpoint",
    "save_checkpoint",
    "load_checkpoint",
    "state_digest",
    "check_structure",
    "checkpoint_exists",
]

CHECKPOINT_FORMAT = "boltzgen-checkpoint-v2"
#: Older formats that are still read: v1 has no digest (only the container's CRC-32s).
LEGACY_FORMATS = ("boltzgen-checkpoint-v1",)
#: The key of the SHA-256 digest in a checkpoint of :data:`CHECKPOINT_FORMAT`.
DIGEST_KEY = "digest"

#: What to do about a checkpoint that cannot be used (the end of every refusal).
_ADVICE = (
    "restore it from a copy, or start a new run (another output folder, or move this one away)"
)


class CorruptedCheckpoint(BoltzgenError):
    """A checkpoint file is damaged, incomplete, or not a boltzgen checkpoint."""


# -- the digest ------------------------------------------------------------------------------
def state_digest(state: Any) -> str:
    """SHA-256 (hex) of a checkpoint's content, independent of the file it is stored in.

    Covers every tensor's dtype, shape and bytes (moved to the CPU) and every key, number,
    string, list and tuple; dict keys are taken in sorted order, so the digest does not depend
    on insertion order. Unknown leaf objects contribute their type name and ``repr``.
    """
    digest = hashlib.sha256()
    _feed(digest, state)
    return digest.hexdigest()


def _put(digest: Any, tag: bytes, payload: bytes | memoryview = b"") -> None:
    digest.update(tag + len(payload).to_bytes(8, "little"))
    digest.update(payload)


def _feed(digest: Any, value: Any) -> None:
    if isinstance(value, torch.Tensor):
        tensor = value.detach()
        if tensor.device.type != "cpu":
            tensor = tensor.cpu()
        tensor = tensor.resolve_conj().resolve_neg().contiguous()
        _put(digest, b"T", f"{tensor.dtype}{tuple(tensor.shape)}".encode())
        data = tensor.reshape(-1).view(torch.uint8).numpy() if tensor.numel() else b""
        _put(digest, b"t", memoryview(data) if len(data) else b"")
    elif value is None:
        _put(digest, b"N")
    elif isinstance(value, bool):
        _put(digest, b"B", b"1" if value else b"0")
    elif isinstance(value, int):
        _put(digest, b"I", str(value).encode())
    elif isinstance(value, float):
        _put(digest, b"F", value.hex().encode())
    elif isinstance(value, str):
        _put(digest, b"S", value.encode("utf-8", "surrogatepass"))
    elif isinstance(value, (bytes, bytearray)):
        _put(digest, b"Y", bytes(value))
    elif isinstance(value, Mapping):
        _put(digest, b"D", str(len(value)).encode())
        for key in sorted(value, key=lambda k: (type(k).__name__, repr(k))):
            _feed(digest, key)
            _feed(digest, value[key])
    elif isinstance(value, (list, tuple)):
        _put(digest, b"L" if isinstance(value, list) else b"U", str(len(value)).encode())
        for item in value:
            _feed(digest, item)
    else:  # torch.dtype, torch.device, ...: whatever weights_only lets through
        _put(digest, b"R", f"{type(value).__qualname__}:{value!r}".encode())


# -- structure -------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Tensor:
    """A tensor, optionally of one dtype and number of dimensions."""

    dtype: torch.dtype | None = None
    ndim: int | None = None

    def describe(self) -> str:
        dims = f"{self.ndim}-D " if self.ndim is not None else ""
        dtype = f"{str(self.dtype).removeprefix('torch.')} " if self.dtype is not None else ""
        return f"a {dims}{dtype}tensor"


@dataclass(frozen=True)
class _MapOf:
    """A dict whose values all match ``item``."""

    item: Any

    def describe(self) -> str:
        return "a dict of tensors" if isinstance(self.item, _Tensor) else "a dict"


@dataclass(frozen=True)
class _ListOf:
    """A list or tuple whose items all match ``item``."""

    item: Any

    def describe(self) -> str:
        return "a list of tensors" if isinstance(self.item, _Tensor) else "a list"


TENSOR = _Tensor()
_NUMBER = (int, float)
_RNG = {"torch": _Tensor(torch.uint8, 1)}
_MODEL = _MapOf(TENSOR)

#: Required keys and types of each kind of checkpoint (extra keys are allowed).
CHECKPOINT_KINDS: dict[str, dict[str, Any]] = {
    # Trainer.state_dict: checkpoints/last.pt of a plain run, checkpoints/<stage>.pt of TA-BG
    "training": {
        "step": int,
        "stage": str,
        "model": _MODEL,
        "optimizer": {
            "exp_avg": _ListOf(TENSOR),
            "exp_avg_sq": _ListOf(TENSOR),
            "accepted": TENSOR,
        },
        "objective": dict,
        "rng": _RNG,
        "energy_evaluations": int,
        "wall_time_s": _NUMBER,
        "skipped_steps": TENSOR,
    },
    # the end of a finished TA-BG stage, restored on resume
    "stage-end": {"model": _MODEL, "rng": _RNG},
    # a TA-BG rung's buffer, checkpoints/buffer-<stage>.pt
    "buffer": {
        "stage": str,
        "samples": TENSOR,
        "statistics": dict,
        "rng": _RNG,
        "energy_evaluations": int,
        "wall_time_s": _NUMBER,
    },
    # what `boltzgen sample` / `evaluate` read from checkpoints/last.pt
    "model": {"model": _MODEL},
    # a federated run's checkpoints/last.pt: the global model after `round` rounds
    "federation": {"round": int, "model": _MODEL, "experts": TENSOR, "wall_time_s": _NUMBER},
    # an MD recording's checkpoint.pt
    "md": {
        "simulation": {
            "positions": TENSOR,
            "velocities": TENSOR,
            "forces": TENSOR,
            "reduced_energies": TENSOR,
            "step": int,
            "rng": _Tensor(torch.uint8, 1),
            "accepted": TENSOR,
            "attempted": TENSOR,
        },
    },
}


def _a(noun: str) -> str:
    return f"{'an' if noun[:1] in 'aeiou' else 'a'} {noun}"


def _type_name(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"a {value.dim()}-D {str(value.dtype).removeprefix('torch.')} tensor"
    if value is None:
        return "None"
    return _a(type(value).__name__)


def _describe(spec: Any) -> str:
    if isinstance(spec, (_Tensor, _MapOf, _ListOf)):
        return spec.describe()
    if isinstance(spec, Mapping):
        return "a dict"
    if spec is _NUMBER:
        return "a number"
    if isinstance(spec, tuple):
        return " or ".join(_a(t.__name__) for t in spec)
    return _a(spec.__name__)


def _mismatch(value: Any, spec: Any, name: str) -> str | None:
    """Why ``value`` (at key path ``name``) does not match ``spec``; ``None`` when it does."""
    wrong = f"key '{name}' is {_type_name(value)}, not {_describe(spec)}"
    if isinstance(spec, _Tensor):
        if not isinstance(value, torch.Tensor):
            return wrong
        if (spec.dtype is not None and value.dtype != spec.dtype) or (
            spec.ndim is not None and value.dim() != spec.ndim
        ):
            return wrong
        return None
    if isinstance(spec, _MapOf):
        if not isinstance(value, Mapping):
            return wrong
        for key, item in value.items():
            found = _mismatch(item, spec.item, f"{name}.{key}")
            if found:
                return found
        return None
    if isinstance(spec, _ListOf):
        if not isinstance(value, (list, tuple)):
            return wrong
        for index, item in enumerate(value):
            found = _mismatch(item, spec.item, f"{name}.{index}")
            if found:
                return found
        return None
    if isinstance(spec, Mapping):
        if not isinstance(value, Mapping):
            return wrong
        for key, item_spec in spec.items():
            where = f"{name}.{key}" if name else key
            if key not in value:
                return f"key '{where}' is missing"
            found = _mismatch(value[key], item_spec, where)
            if found:
                return found
        return None
    types = spec if isinstance(spec, tuple) else (spec,)
    if isinstance(value, bool) and bool not in types:  # True is an int to isinstance
        return wrong
    return None if isinstance(value, types) else wrong


def check_structure(state: Mapping[str, Any], kind: str, path: str | os.PathLike) -> None:
    """Refuse (:class:`CorruptedCheckpoint`) a checkpoint that lacks a key of its ``kind`` or
    holds a value of the wrong type there."""
    spec = CHECKPOINT_KINDS[kind]
    problem = _mismatch(state, spec, "")
    if problem:
        raise CorruptedCheckpoint(
            f"checkpoint {path} is incomplete: {problem} (a {kind} checkpoint holds "
            f"{', '.join(spec)}); {_ADVICE}"
        )


# -- save and load ---------------------------------------------------------------------------
def save_checkpoint(path: str | os.PathLike, state: Mapping[str, Any]) -> None:
    """Save a checkpoint dict atomically, stamped with :data:`CHECKPOINT_FORMAT` and its
    :func:`state_digest` (a ``format`` or ``digest`` key of ``state`` is replaced)."""
    content = {
        "format": CHECKPOINT_FORMAT,
        **{k: v for k, v in state.items() if k not in ("format", DIGEST_KEY)},
    }
    content[DIGEST_KEY] = state_digest(content)
    with atomic_write(path) as handle:
        torch.save(content, handle)


def _file_problem(path: Path) -> str | None:
    """Why ``path`` cannot be a checkpoint file (``None``: it is a regular file)."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return "is a broken symbolic link" if path.is_symlink() else None
    except OSError as error:
        return f"cannot be read ({error.strerror or error})"
    if stat.S_ISREG(mode):
        return None
    kinds = {
        stat.S_ISDIR: "a directory",
        stat.S_ISCHR: "a character device",
        stat.S_ISBLK: "a block device",
        stat.S_ISFIFO: "a named pipe",
        stat.S_ISSOCK: "a socket",
    }
    what = next((name for test, name in kinds.items() if test(mode)), "not a regular file")
    link = f" (a symbolic link to {os.readlink(path)})" if path.is_symlink() else ""
    return f"is {what}{link}, not a checkpoint file"


def checkpoint_exists(path: str | os.PathLike) -> bool:
    """Whether anything (a file, a directory, a link, even a broken one) is at ``path``."""
    return os.path.lexists(path)


def _check_container(path: Path) -> None:
    """Read every record of the zip container, checking its CRC-32."""
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except OSError as error:
        raise BoltzgenError(
            f"checkpoint {path} cannot be read ({error.strerror or error})"
        ) from None
    except Exception as error:  # zipfile raises many types for damaged headers (a flipped
        # compression-method or encryption bit gives NotImplementedError / RuntimeError)
        raise CorruptedCheckpoint(
            f"{path} is not a readable boltzgen checkpoint (corrupted, truncated or foreign "
            f"file: {first_line(error)}); {_ADVICE}"
        ) from None
    if bad is not None:
        raise CorruptedCheckpoint(
            f"checkpoint {path} is corrupted: its record {bad} fails the CRC-32 check (changed "
            f"bytes on disk); {_ADVICE}"
        )


def load_checkpoint(
    path: str | os.PathLike,
    map_location: str | torch.device = "cpu",
    kind: str | None = None,
) -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint`, refusing anything else.

    Arguments:
        path: The checkpoint file.
        map_location: Where its tensors go (as for :func:`torch.load`).
        kind: A key of :data:`CHECKPOINT_KINDS`: refuse a checkpoint that lacks what that kind
            holds. ``None`` checks no structure.

    Returns:
        The checkpoint dict (with ``format``; the digest is checked and left out).

    Raises:
        BoltzgenError: The file is missing or not a regular file; :class:`CorruptedCheckpoint`
            when it is corrupted (a CRC-32 or the digest does not match), truncated, not a torch
            file, holds pickled objects that ``weights_only`` refuses, is not a boltzgen
            checkpoint, or lacks a key of its ``kind``.
    """
    path = Path(path)
    problem = _file_problem(path)
    if problem:
        raise CorruptedCheckpoint(f"checkpoint {path} {problem}; {_ADVICE}")
    if not path.exists():
        raise BoltzgenError(f"checkpoint {path} does not exist")
    _check_container(path)
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # torch raises many types for corrupted / foreign files
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CorruptedCheckpoint(
            f"{path} is not a readable boltzgen checkpoint (corrupted or foreign file: "
            f"{reason[:160]}); {_ADVICE}"
        ) from None
    stamp = state.get("format") if isinstance(state, dict) else None
    if stamp != CHECKPOINT_FORMAT and stamp not in LEGACY_FORMATS:
        raise CorruptedCheckpoint(
            f"{path} is not a boltzgen checkpoint (no '{CHECKPOINT_FORMAT}' stamp)"
        )
    if stamp == CHECKPOINT_FORMAT:
        stored = state.pop(DIGEST_KEY, None)
        if not isinstance(stored, str):
            raise CorruptedCheckpoint(
                f"checkpoint {path} is incomplete: its SHA-256 digest is missing; {_ADVICE}"
            )
        if state_digest(state) != stored:
            raise CorruptedCheckpoint(
                f"checkpoint {path} is corrupted: its content does not match the SHA-256 digest "
                f"stored when it was written (changed bytes on disk or in transfer); {_ADVICE}"
            )
    if kind is not None:
        check_structure(state, kind, path)
    return state

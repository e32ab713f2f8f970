"""Write and read sample sets as molecular trajectories (mdtraj formats) with weight sidecars.

A sample set with prefix ``out/samples`` is the files ``out/samples.pdb`` (topology and first
frame), ``out/samples.dcd`` / ``.xtc`` / ``.h5`` (all frames, nm on the Python side) and
``out/samples.weights.npz`` (per-frame ``log_weights`` and ``reduced_energies`` and the
``temperature`` in K, whichever were given). Every file is written to a temporary file in the
same folder and moved into place with ``os.replace``, so readers never see half a file.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import mdtraj
import numpy as np
from openmm import app

from ..errors import BoltzgenError

__all__ = ["TRAJECTORY_FORMATS", "write_trajectory", "read_trajectory"]

#: Trajectory formats that :func:`write_trajectory` can write, in the order :func:`read_trajectory`
#: prefers them (h5 keeps full float32 precision and the topology).
TRAJECTORY_FORMATS = ("h5", "dcd", "xtc")
_SIDECAR_KEYS = ("log_weights", "reduced_energies", "temperature")


def write_trajectory(
    prefix: str | os.PathLike[str],
    positions: Any,
    topology: app.Topology | mdtraj.Topology,
    *,
    log_weights: Any = None,
    reduced_energies: Any = None,
    temperature: float | None = None,
    formats: Sequence[str] = ("dcd", "h5"),
) -> list[Path]:
    """Write samples as a trajectory plus a PDB of the first frame and a weights sidecar.

    Arguments:
        prefix: Path without extension; its folder is created if needed.
        positions: Shape ``(n_frames, n_atoms, 3)`` in nm (NumPy array or torch tensor).
        topology: OpenMM or mdtraj topology with ``n_atoms`` atoms.
        log_weights: Optional importance log-weights, shape ``(n_frames,)``.
        reduced_energies: Optional reduced energies u = U/kT, shape ``(n_frames,)``.
        temperature: Optional temperature in K that the reduced energies refer to.
        formats: Any of ``"dcd"``, ``"xtc"``, ``"h5"``.

    Returns:
        Paths written: the PDB, one per format, and the ``.weights.npz`` sidecar when any of
        ``log_weights``, ``reduced_energies``, ``temperature`` was given.

    Raises:
        BoltzgenError: For shape mismatches, non-finite positions or an unknown format.
    """
    unknown = [f for f in formats if f not in TRAJECTORY_FORMATS]
    if unknown or not formats:
        raise BoltzgenError(
            f"unknown trajectory formats {unknown or list(formats)}: choose from "
            f"{', '.join(TRAJECTORY_FORMATS)}"
        )
    md_topology = (
        topology
        if isinstance(topology, mdtraj.Topology)
        else mdtraj.Topology.from_openmm(topology)
    )
    xyz = _as_array(positions, "positions", np.float32)  # what DCD and HDF5 store
    if xyz.ndim != 3 or xyz.shape[1:] != (md_topology.n_atoms, 3) or len(xyz) == 0:
        raise BoltzgenError(
            f"positions must have shape (n_frames >= 1, {md_topology.n_atoms}, 3) in nm, got "
            f"{xyz.shape}"
        )
    if not np.isfinite(xyz).all():
        raise BoltzgenError("positions contain NaN or inf: drop those samples before writing them")
    sidecar = {"log_weights": log_weights, "reduced_energies": reduced_energies}
    sidecar = {key: _as_array(value, key) for key, value in sidecar.items() if value is not None}
    for key, value in sidecar.items():
        if value.shape != (len(xyz),):
            raise BoltzgenError(f"{key} must have shape ({len(xyz)},), got {value.shape}")
    if temperature is not None:
        sidecar["temperature"] = np.asarray(float(temperature))

    prefix = Path(prefix)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    trajectory = mdtraj.Trajectory(xyz, md_topology)
    writers: dict[str, Callable[[str], None]] = {
        "pdb": lambda path: trajectory[0].save_pdb(path, force_overwrite=True),
        "dcd": lambda path: trajectory.save_dcd(path, force_overwrite=True),
        "xtc": lambda path: trajectory.save_xtc(path, force_overwrite=True),
        "h5": lambda path: trajectory.save_hdf5(path, force_overwrite=True),
    }
    written = [
        _write_atomically(Path(f"{prefix}.{kind}"), writers[kind]) for kind in ("pdb", *formats)
    ]
    if sidecar:
        path = Path(f"{prefix}.weights.npz")
        written.append(_write_atomically(path, lambda tmp: np.savez(tmp, **sidecar)))
    return written


def read_trajectory(
    prefix: str | os.PathLike[str],
) -> tuple[mdtraj.Trajectory, dict[str, np.ndarray]]:
    """Read a sample set written by :func:`write_trajectory`.

    Arguments:
        prefix: The same prefix that was written.

    Returns:
        The trajectory (from ``.h5`` if present, else ``.dcd``, else ``.xtc``, with the
        topology of ``.pdb``) and the sidecar arrays present (``log_weights``,
        ``reduced_energies`` of shape ``(n_frames,)``, ``temperature`` as a 0-d array).

    Raises:
        BoltzgenError: When no trajectory of the prefix exists.
    """
    for kind in TRAJECTORY_FORMATS:
        path = Path(f"{prefix}.{kind}")
        if path.is_file():
            break
    else:
        raise BoltzgenError(
            f"no trajectory {prefix}.{{{','.join(TRAJECTORY_FORMATS)}}} found: check the prefix"
        )
    pdb = Path(f"{prefix}.pdb")
    if kind != "h5" and not pdb.is_file():
        raise BoltzgenError(f"{path} needs its topology {pdb}, which is missing")
    trajectory = mdtraj.load(str(path)) if kind == "h5" else mdtraj.load(str(path), top=str(pdb))
    weights = Path(f"{prefix}.weights.npz")
    sidecar: dict[str, np.ndarray] = {}
    if weights.is_file():
        with np.load(weights) as archive:
            sidecar = {key: archive[key] for key in _SIDECAR_KEYS if key in archive}
    return trajectory, sidecar


def _as_array(value: Any, name: str, dtype: type = np.float64) -> np.ndarray:
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    try:
        return np.asarray(value, dtype=dtype)
    except (TypeError, ValueError):
        raise BoltzgenError(f"{name} must be numeric, got {type(value).__name__}") from None


def _write_atomically(path: Path, write: Callable[[str], None]) -> Path:
    """Call ``write(temporary_path)`` (same folder and extension), then move it to ``path``."""
    handle, temporary = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix
    )
    os.close(handle)
    try:
        write(temporary)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path

"""Reference datasets from replica-exchange MD: format, basins, writing and loading.

A dataset is a folder::

    DIR/metadata.json   molecule description, temperature, MD settings, seed, frame counts,
                        decorrelation times (energy, basin indicators of the first residue),
                        effective frames, basin populations
    DIR/topology.pdb    topology and first frame
    DIR/train.npz       positions (n, N, 3) float32 nm; phi, psi (n, k) float64 radians in
    DIR/val.npz         [-pi, pi] (backbone dihedrals, column i = residue i with both);
    DIR/test.npz        reduced_energies (n,) u = U/(k_B T) at the dataset's temperature;
                        step (n,) MD step, chain (n,) chain index

Frames are those of the target-temperature rung of a replica-exchange run after equilibration,
every ``report_every`` steps. Each chain's production is cut in time into 80 % train, 10 % val
and 10 % test blocks; frames are stored time-major (all chains at one report, then the next).
The ``.npz`` files are what :func:`boltzgen.diagnostics.report.load_reference` reads.

Ramachandran basins of alanine dipeptide (degrees; phi, psi in (-180, 180]):

- ``alphaL``: 0 < phi < 120 (the whole phi > 0 region, alphaL and C7ax);
- ``alphaR``: otherwise, -150 <= psi < 50;
- ``C7eq/C5``: otherwise (psi >= 50 or psi < -150: C7eq, C5/beta and PII).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import mdtraj
import numpy as np

from ..errors import BoltzgenError
from ..io import atomic_write, read_arrays, write_json
from ..molecule.ramachandran import (
    BASIN_DEFINITION,
    backbone_dihedrals,
    basin_masks,
    basin_populations,
)
from .statistics import integrated_autocorrelation_time

__all__ = [
    "SPLITS",
    "SPLIT_FRACTIONS",
    "decorrelation",
    "write_reference",
    "load_reference",
    "check_split",
    "SPLIT_ARRAYS",
    "read_metadata",
]

#: Dataset splits, in time order within each chain.
#: The arrays of a split, as :func:`write_reference` writes them.
SPLIT_ARRAYS = ("positions", "reduced_energies", "phi", "psi", "step", "chain")
SPLITS = ("train", "val", "test")
#: Fraction of each chain's production per split.
SPLIT_FRACTIONS = (0.8, 0.1, 0.1)


def decorrelation(
    reduced_energies: np.ndarray, basins: Mapping[str, np.ndarray] | None, frame_time_ps: float
) -> dict[str, float]:
    """Integrated autocorrelation times of the energy and of basin indicators.

    Arguments:
        reduced_energies: ``(n_reports, n_chains)`` time series at the target temperature.
        basins: Indicator series ``(n_reports, n_chains)`` by basin name (see
            :func:`basin_populations`), or ``None`` for a molecule without a phi/psi pair.
        frame_time_ps: Time between frames.

    Returns:
        ``tau_energy_frames``, ``tau_<basin>_frames`` per basin, ``tau_frames`` (the largest),
        ``tau_ps`` and ``effective_frames`` = all frames / ``tau_frames``.
    """
    taus = {"tau_energy_frames": integrated_autocorrelation_time(reduced_energies)}
    for name, indicator in (basins or {}).items():
        taus[f"tau_{name}_frames"] = integrated_autocorrelation_time(indicator.astype(np.float64))
    tau = max(taus.values())
    return taus | {
        "tau_frames": tau,
        "tau_ps": tau * frame_time_ps,
        "effective_frames": reduced_energies.size / tau,
    }


def write_reference(
    directory: str | os.PathLike[str],
    topology: mdtraj.Topology,
    positions: np.ndarray,
    reduced_energies: np.ndarray,
    steps: np.ndarray,
    metadata: Mapping[str, Any],
    frame_time_ps: float,
) -> dict[str, Any]:
    """Split production frames, compute dihedrals and statistics, and write the dataset.

    Arguments:
        directory: The dataset folder.
        topology: mdtraj topology of the molecule.
        positions: ``(n_reports, n_chains, N, 3)`` nm at the target temperature.
        reduced_energies: ``(n_reports, n_chains)``.
        steps: ``(n_reports,)`` MD step of each report.
        metadata: Molecule, temperature, MD settings, seed (stored as given).
        frame_time_ps: Time between reports.

    Returns:
        The full metadata written to ``metadata.json`` (adds frame counts per split,
        decorrelation times, effective frames, basin populations when there is a phi/psi pair).
    """
    n_reports, n_chains = reduced_energies.shape
    if n_reports < 10:
        raise BoltzgenError(
            "need at least 10 production frames per chain to split and time-correlate, got "
            f"{n_reports}"
        )
    flat = positions.reshape(-1, topology.n_atoms, 3)
    try:
        phi, psi = backbone_dihedrals(flat, topology)
    except BoltzgenError:
        phi = psi = np.zeros((len(flat), 0))
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    mdtraj.Trajectory(flat[:1].astype(np.float32), topology).save_pdb(
        str(directory / ".topology.tmp.pdb")
    )
    os.replace(directory / ".topology.tmp.pdb", directory / "topology.pdb")

    bounds = np.round(np.cumsum((0.0,) + SPLIT_FRACTIONS) * n_reports).astype(int)
    chain = np.broadcast_to(np.arange(n_chains), (n_reports, n_chains))
    step = np.broadcast_to(np.asarray(steps)[:, None], (n_reports, n_chains))
    grids = {
        "positions": positions,
        "reduced_energies": reduced_energies,
        "chain": chain,
        "step": step,
        "phi": phi.reshape(n_reports, n_chains, -1),
        "psi": psi.reshape(n_reports, n_chains, -1),
    }
    counts = {}
    for name, start, stop in zip(SPLITS, bounds[:-1], bounds[1:]):
        arrays = {
            key: value[start:stop].reshape((stop - start) * n_chains, *value.shape[2:])
            for key, value in grids.items()
        }
        arrays["positions"] = arrays["positions"].astype(np.float32)
        with atomic_write(directory / f"{name}.npz") as handle:
            np.savez(handle, **arrays)
        counts[name] = int((stop - start) * n_chains)

    basins = None
    if phi.shape[1]:
        labels = basin_masks(phi[:, 0], psi[:, 0])
        basins = {
            name.replace("/", "_"): mask.reshape(n_reports, n_chains)
            for name, mask in labels.items()
        }
    result = dict(metadata) | {"frames": counts, "frame_time_ps": frame_time_ps}
    result |= decorrelation(reduced_energies, basins, frame_time_ps)
    if phi.shape[1]:
        result["basin_populations"] = basin_populations(phi[:, 0], psi[:, 0])
        result["basins"] = BASIN_DEFINITION
    write_json(directory / "metadata.json", result)
    return result


def read_metadata(directory: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The dataset's ``metadata.json``, or ``None`` when the folder holds no finished dataset."""
    path = Path(directory) / "metadata.json"
    if not path.is_file() or not all((Path(directory) / f"{s}.npz").is_file() for s in SPLITS):
        return None
    return json.loads(path.read_text())


def load_reference(
    directory: str | os.PathLike[str], split: str = "train"
) -> dict[str, np.ndarray]:
    """One split of a reference dataset.

    Arguments:
        directory: The dataset folder written by ``boltzgen reference``.
        split: ``"train"``, ``"val"`` or ``"test"``.

    Returns:
        ``positions`` ``(n, N, 3)`` float32 nm, ``phi``, ``psi`` ``(n, k)`` radians,
        ``reduced_energies`` ``(n,)`` at the dataset's temperature, ``step``, ``chain`` ``(n,)``.

    Raises:
        BoltzgenError: Unknown split, a folder without that split, or a split that is not one
            (unreadable, keys missing, shapes that disagree, frames that are not finite).
    """
    if split not in SPLITS:
        raise BoltzgenError(f"unknown split {split!r}: choose from {', '.join(SPLITS)}")
    path = Path(directory) / f"{split}.npz"
    if not path.is_file():
        raise BoltzgenError(
            f"{path} does not exist: generate the dataset with 'boltzgen reference MOLECULE -o "
            f"{directory}'"
        )
    arrays = read_arrays(path, SPLIT_ARRAYS, "reference split")
    check_split(arrays, path)
    return arrays


def check_split(arrays: Mapping[str, np.ndarray], path: Path) -> None:
    """Refuse (one-line :class:`BoltzgenError`) a split whose arrays disagree in their frame
    counts or shapes, or with non-finite positions, dihedrals or energies."""
    positions = arrays["positions"]
    n = positions.shape[0] if positions.ndim else 0
    regenerate = f"generate it again with 'boltzgen reference MOLECULE -o {path.parent}'"
    if (
        positions.ndim != 3
        or positions.shape[2] != 3
        or n == 0
        or positions.shape[1] == 0
        or positions.dtype.kind != "f"
    ):
        raise BoltzgenError(
            f"{path}: positions must be floats of shape (frames > 0, atoms > 0, 3), got "
            f"{positions.shape} ({positions.dtype}); {regenerate}"
        )
    phi = arrays["phi"]
    width = phi.shape[1] if phi.ndim == 2 else 0  # dihedral pairs per frame (0: no backbone)
    expected_shapes = {"reduced_energies": (n,), "step": (n,), "chain": (n,)}
    expected_shapes |= {"phi": (n, width), "psi": (n, width)}
    for key, expected in expected_shapes.items():
        got = arrays[key].shape
        if got != expected or arrays[key].dtype.kind not in "fiu":
            raise BoltzgenError(
                f"{path}: {key} has shape {got} ({arrays[key].dtype}), the {n} frames of "
                f"positions need {expected}; {regenerate}"
            )
    for key in ("positions", "reduced_energies", "phi", "psi"):
        bad = int((~np.isfinite(arrays[key].reshape(n, -1))).any(axis=1).sum())
        if bad:
            raise BoltzgenError(f"{path}: {bad} of {n} frames have non-finite {key}; {regenerate}")

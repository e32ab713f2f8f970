"""Ramachandran geometry of peptides: backbone dihedrals and the basins of alanine dipeptide.

Basins of alanine dipeptide (degrees; phi, psi in (-180, 180]), used for every basin population
that boltzgen reports (runs, reference datasets, studies):

- ``alphaL``: 0 < phi < 120 (the whole phi > 0 region, alphaL and C7ax);
- ``alphaR``: otherwise, -150 <= psi < 50;
- ``C7eq/C5``: otherwise (psi >= 50 or psi < -150: C7eq, C5/beta and PII).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike

from ..errors import BoltzgenError

if TYPE_CHECKING:
    import mdtraj

__all__ = [
    "BASIN_DEFINITION",
    "BASIN_LABEL_CENTRES",
    "backbone_dihedrals",
    "basin_masks",
    "basin_populations",
    "basin_standard_errors",
    "BasinReference",
]

#: The basin definition in words (stored with datasets and summaries).
BASIN_DEFINITION = (
    "alphaL: 0 < phi < 120 deg; alphaR: otherwise -150 <= psi < 50 deg; C7eq/C5: the rest"
)

#: Approximate centres (phi, psi) in degrees of the conformational basins of alanine peptides,
#: where Ramachandran plots put their labels.
BASIN_LABEL_CENTRES: dict[str, tuple[float, float]] = {
    r"C$_5$": (-155.0, 160.0),
    r"C$_{7\mathrm{eq}}$": (-80.0, 75.0),
    r"$\alpha_\mathrm{R}$": (-75.0, -40.0),
    r"$\alpha_\mathrm{L}$": (60.0, 40.0),
}


def basin_masks(phi: np.ndarray, psi: np.ndarray) -> dict[str, np.ndarray]:
    """Boolean masks ``(n,)`` of the three basins (module docstring) for angles in radians."""
    phi_deg, psi_deg = np.degrees(phi), np.degrees(psi)
    alpha_l = (phi_deg > 0) & (phi_deg < 120)
    alpha_r = ~alpha_l & (psi_deg >= -150) & (psi_deg < 50)
    return {"C7eq/C5": ~alpha_l & ~alpha_r, "alphaR": alpha_r, "alphaL": alpha_l}


def basin_populations(
    phi: np.ndarray, psi: np.ndarray, weights: np.ndarray | None = None
) -> dict[str, float]:
    """Fractions of frames in the C7eq/C5, alphaR and alphaL basins (module docstring).

    Arguments:
        phi, psi: Radians, shape ``(n,)`` (one residue: alanine dipeptide's only pair).
        weights: Non-negative frame weights ``(n,)`` (any normalization), e.g. importance
            weights of flow samples; ``None``: equal weights.
    """
    w = np.ones(len(np.asarray(phi))) if weights is None else np.asarray(weights, dtype=np.float64)
    w = w / w.sum()
    return {
        name: float(w[mask].sum())
        for name, mask in basin_masks(np.asarray(phi), np.asarray(psi)).items()
    }


def basin_standard_errors(
    phi: np.ndarray, psi: np.ndarray, weights: np.ndarray | None = None
) -> dict[str, float]:
    """Standard errors of :func:`basin_populations` for independent frames: the delta-method
    error of a self-normalised importance estimate, sqrt(sum w_i^2 (1[i in basin] - p)^2) /
    sum w_i (with equal weights, sqrt(p (1 - p) / n)); correlated frames (MD) need their
    effective count instead.
    """
    w = np.ones(len(np.asarray(phi))) if weights is None else np.asarray(weights, dtype=np.float64)
    w = w / w.sum()
    errors = {}
    for name, mask in basin_masks(np.asarray(phi), np.asarray(psi)).items():
        p = float(w[mask].sum())
        errors[name] = float(np.sqrt(np.sum(w * w * (mask - p) ** 2)))
    return errors


@dataclasses.dataclass(frozen=True)
class BasinReference:
    """Basin populations of a reference MD dataset of a catalog molecule at its own settings.

    Attributes:
        populations: Fraction of frames per basin (:func:`basin_populations`).
        effective_frames: Frames divided by the statistical inefficiency (correlated MD
            frames count as this many independent ones).
        source: How the dataset was made (a command and its documentation).
    """

    populations: dict[str, float]
    effective_frames: float
    source: str

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any], where: str) -> BasinReference:
        """From a catalog entry's ``[md_reference]`` table (``basins``, ``effective_frames``,
        ``source``)."""
        try:
            populations = {str(k): float(v) for k, v in spec["basins"].items()}
            return cls(populations, float(spec["effective_frames"]), str(spec["source"]))
        except (KeyError, TypeError, ValueError, AttributeError):
            raise BoltzgenError(
                f"{where}: [md_reference] needs basins (a table of fractions), "
                "effective_frames and source"
            ) from None

    def standard_errors(self) -> dict[str, float]:
        """sqrt(p (1 - p) / effective_frames) per basin."""
        n = self.effective_frames
        return {name: float(np.sqrt(p * (1 - p) / n)) for name, p in self.populations.items()}


def backbone_dihedrals(
    source: mdtraj.Trajectory | ArrayLike,
    topology: mdtraj.Topology | object | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Backbone dihedrals (phi_i, psi_i) of every residue that has both, in radians.

    Arguments:
        source: An mdtraj ``Trajectory``; or positions in nm, shape ``(n_frames, n_atoms, 3)``
            (NumPy or torch) together with ``topology``.
        topology: mdtraj or OpenMM ``Topology`` of the positions (only with positions).

    Returns:
        ``(phi, psi)``, each of shape ``(n_frames, k)``, radians in ``[-pi, pi]``; column i of
        both belongs to the same residue (pairs are matched by their C-alpha atom), in residue
        order. For alanine dipeptide (Ace-Ala-Nme) k = 1.
    """
    import mdtraj  # here, not at import: the basin definitions above need no mdtraj

    trajectory = source if isinstance(source, mdtraj.Trajectory) else _trajectory(source, topology)
    phi_atoms, phi = mdtraj.compute_phi(trajectory)
    psi_atoms, psi = mdtraj.compute_psi(trajectory)
    phi_column = {int(atoms[2]): i for i, atoms in enumerate(phi_atoms)}
    pairs = [
        (phi_column[int(atoms[1])], j)
        for j, atoms in enumerate(psi_atoms)
        if int(atoms[1]) in phi_column
    ]
    if not pairs:
        raise BoltzgenError(
            "the topology has no residue with both a phi and a psi backbone dihedral (need N, "
            "CA, C atoms of a peptide)"
        )
    phi_index, psi_index = (list(columns) for columns in zip(*pairs))
    return phi[:, phi_index].astype(np.float64), psi[:, psi_index].astype(np.float64)


def _trajectory(positions: ArrayLike, topology: object | None) -> mdtraj.Trajectory:
    """An mdtraj trajectory from positions in nm and an mdtraj or OpenMM topology."""
    import mdtraj

    if topology is None:
        raise BoltzgenError(
            "positions need a topology: pass topology= (mdtraj or OpenMM Topology)"
        )
    if not isinstance(topology, mdtraj.Topology):
        topology = mdtraj.Topology.from_openmm(topology)
    xyz = (
        positions.detach().cpu().numpy() if hasattr(positions, "detach") else np.asarray(positions)
    )
    xyz = xyz.reshape(-1, topology.n_atoms, 3) if xyz.ndim == 2 else xyz
    if xyz.ndim != 3 or xyz.shape[1:] != (topology.n_atoms, 3):
        raise BoltzgenError(
            f"positions must have shape (n_frames, {topology.n_atoms}, 3) in nm, got {xyz.shape}"
        )
    return mdtraj.Trajectory(xyz, topology)

"""Refuse coordinates no force field can evaluate: non-finite, astronomically large, atoms on
top of each other, or bonded atoms far apart (a chain break the topology bridges).

OpenMM turns such structures into NaN forces and an ``OpenMMException`` deep inside the
minimizer; :func:`check_geometry` names the offending atoms instead, when a molecule is made.
"""

from __future__ import annotations

import numpy as np
from openmm import app

from ..errors import BoltzgenError

__all__ = ["check_geometry", "MAX_BOND_NM", "MAX_COORDINATE_NM", "MIN_ATOM_DISTANCE_NM"]

#: Largest allowed |coordinate|, nm. The PDB format's coordinate fields end at 9999.999 A
#: (1000 nm); a molecule is a few nm across.
MAX_COORDINATE_NM = 1000.0
#: Smallest allowed distance between two atoms, nm (0.1 A; the shortest bond, X-H, is ~0.1 nm).
MIN_ATOM_DISTANCE_NM = 0.01
#: Longest allowed bond, nm. Covalent bonds of biomolecules are at most ~0.21 nm (S-S, C-I);
#: OpenMM bonds consecutive residues of a chain whatever their distance, so a residue missing
#: from the file becomes a bond across the gap.
MAX_BOND_NM = 0.3


def _label(atom: app.topology.Atom) -> str:
    return f"{atom.index} ({atom.residue.name}{atom.residue.id}:{atom.name})"


def _coincident_pairs(positions: np.ndarray) -> tuple[int, tuple[int, int, float] | None]:
    """Number of atom pairs closer than :data:`MIN_ATOM_DISTANCE_NM` and the first of them
    ``(i, j, distance)`` (smallest i, then j; i < j).

    Sweep over x: with the atoms sorted by x, the pairs k places apart are compared for
    k = 1, 2, ... until no pair k apart is closer than the threshold in x alone (then no pair
    further apart is either). A molecule needs a few sweeps, O(N log N) in all.
    """
    order = np.argsort(positions[:, 0], kind="stable")
    ordered = positions[order]
    count, first = 0, None
    for k in range(1, len(positions)):
        near = ordered[k:, 0] - ordered[:-k, 0] < MIN_ATOM_DISTANCE_NM
        if not near.any():
            break
        distances = np.linalg.norm(ordered[k:] - ordered[:-k], axis=1)
        close = np.flatnonzero(near & (distances < MIN_ATOM_DISTANCE_NM))
        count += len(close)
        for index in close:
            i, j = sorted((int(order[index]), int(order[index + k])))
            if first is None or (i, j) < first[:2]:
                first = (i, j, float(distances[index]))
    return count, first


def check_geometry(positions: np.ndarray, topology: app.Topology, source: str) -> None:
    """Raise a one-line :class:`BoltzgenError` naming the atoms if the coordinates are unusable.

    Arguments:
        positions: Shape ``(n_atoms, 3)``, nm; row i is atom i of ``topology``.
        topology: Names the atoms (index, residue name and number, atom name).
        source: Where the coordinates came from (a file path), first word of the message.

    Raises:
        BoltzgenError: For a NaN or infinite coordinate, one larger than
            :data:`MAX_COORDINATE_NM` in magnitude, two atoms closer than
            :data:`MIN_ATOM_DISTANCE_NM`, or two bonded atoms further apart than
            :data:`MAX_BOND_NM`.
    """
    atoms = list(topology.atoms())
    with np.errstate(invalid="ignore"):
        bad = ~(np.abs(positions) <= MAX_COORDINATE_NM).all(axis=1)  # NaN compares False
    if bad.any():
        rows = np.flatnonzero(bad)
        value = positions[rows[0]][~(np.abs(positions[rows[0]]) <= MAX_COORDINATE_NM)][0]
        more = f" (and {len(rows) - 1} more atoms)" if len(rows) > 1 else ""
        raise BoltzgenError(
            f"{source}: atom {_label(atoms[rows[0]])} has coordinate {value:g} nm{more}; "
            f"coordinates must be finite and within +-{MAX_COORDINATE_NM:g} nm: fix the structure"
        )
    count, first = _coincident_pairs(positions)
    if first is not None:
        i, j, distance = first
        more = f" (and {count - 1} more pairs)" if count > 1 else ""
        raise BoltzgenError(
            f"{source}: atoms {_label(atoms[i])} and {_label(atoms[j])} are {distance:.3g} nm "
            f"apart{more}, closer than {MIN_ATOM_DISTANCE_NM:g} nm: the structure has "
            "overlapping or duplicated atoms; fix the coordinates"
        )
    bonds = np.array([(a.index, b.index) for a, b in topology.bonds()], dtype=int).reshape(-1, 2)
    lengths = np.linalg.norm(positions[bonds[:, 0]] - positions[bonds[:, 1]], axis=1)
    long = np.flatnonzero(lengths > MAX_BOND_NM)
    if long.size:
        i, j = bonds[long[0]]
        more = f" (and {long.size - 1} more bonds)" if long.size > 1 else ""
        raise BoltzgenError(
            f"{source}: bonded atoms {_label(atoms[i])} and {_label(atoms[j])} are "
            f"{lengths[long[0]]:.3g} nm apart{more}, longer than any bond ({MAX_BOND_NM:g} nm): "
            "residues are missing between them (a chain break); model the missing residues, "
            "e.g. with PDBFixer"
        )

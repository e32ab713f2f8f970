"""Build capped peptides ACE-<residues>-NME from a one-letter sequence.

Heavy atoms are placed from standard internal geometry (bond lengths in Angstrom, angles and
dihedrals in degrees, Engh & Huber-like values): the backbone from the requested phi/psi with
trans peptide bonds, side chains from the templates in :data:`SIDE_CHAINS` (one common rotamer
per residue, L chirality). Hydrogens are added by OpenMM's ``Modeller.addHydrogens`` and the
structure is relaxed with ``LocalEnergyMinimizer``. Atom and residue names are those of OpenMM's
Amber force fields (caps ``ACE``: CH3, C, O; ``NME``: N, C), which mdtraj also understands.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from openmm import app, unit

from ..errors import BoltzgenError
from .openmm_setup import (
    MINIMIZER_MAX_ITERATIONS,
    create_system,
    load_forcefield,
    minimize_positions,
)

__all__ = ["ONE_LETTER_CODES", "SIDE_CHAINS", "AtomPlacement", "build_peptide", "place_atom"]

#: One-letter codes of the 20 standard amino acids and their residue names.
ONE_LETTER_CODES: dict[str, str] = {
    "A": "ALA",
    "R": "ARG",
    "N": "ASN",
    "D": "ASP",
    "C": "CYS",
    "Q": "GLN",
    "E": "GLU",
    "G": "GLY",
    "H": "HIS",
    "I": "ILE",
    "L": "LEU",
    "K": "LYS",
    "M": "MET",
    "F": "PHE",
    "P": "PRO",
    "S": "SER",
    "T": "THR",
    "W": "TRP",
    "Y": "TYR",
    "V": "VAL",
}


class AtomPlacement(NamedTuple):
    """One heavy atom as internal coordinates relative to three atoms of the same residue.

    The atom X is bonded to ``bonded``; ``angle`` is X-bonded-``angle_ref`` and ``dihedral``
    is X-bonded-angle_ref-``dihedral_ref``.
    """

    name: str
    element: str
    bonded: str
    angle_ref: str
    dihedral_ref: str
    bond: float  # Angstrom
    angle: float  # degrees
    dihedral: float  # degrees


_A = AtomPlacement
# CB of an L amino acid: dihedral CB-CA-N-C = -122.5 degrees.
_CB = _A("CB", "C", "CA", "N", "C", 1.530, 110.5, -122.5)
_PHENYL = (
    _A("CG", "C", "CB", "CA", "N", 1.502, 113.9, -60.0),
    _A("CD1", "C", "CG", "CB", "CA", 1.389, 120.7, 90.0),
    _A("CD2", "C", "CG", "CB", "CA", 1.389, 120.7, -90.0),
    _A("CE1", "C", "CD1", "CG", "CB", 1.389, 120.7, 180.0),
    _A("CE2", "C", "CD2", "CG", "CB", 1.389, 120.7, 180.0),
    _A("CZ", "C", "CE1", "CD1", "CG", 1.389, 120.0, 0.0),
)

#: Side-chain heavy atoms of each residue, in placement order (chi1 about -60 degrees, other
#: chi angles trans or ring-planar; proline's ring closed at phi = -65).
SIDE_CHAINS: dict[str, tuple[AtomPlacement, ...]] = {
    "GLY": (),
    "ALA": (_CB,),
    "SER": (_CB, _A("OG", "O", "CB", "CA", "N", 1.417, 110.8, -60.0)),
    "CYS": (_CB, _A("SG", "S", "CB", "CA", "N", 1.808, 113.8, -60.0)),
    "VAL": (
        _CB,
        _A("CG1", "C", "CB", "CA", "N", 1.524, 110.7, 180.0),
        _A("CG2", "C", "CB", "CA", "N", 1.524, 110.4, -60.0),
    ),
    "THR": (
        _CB,
        _A("OG1", "O", "CB", "CA", "N", 1.433, 109.2, 60.0),
        _A("CG2", "C", "CB", "CA", "N", 1.521, 111.1, -60.0),
    ),
    "LEU": (
        _CB,
        _A("CG", "C", "CB", "CA", "N", 1.530, 116.1, -60.0),
        _A("CD1", "C", "CG", "CB", "CA", 1.524, 110.3, 180.0),
        _A("CD2", "C", "CG", "CB", "CA", 1.525, 110.6, -60.0),
    ),
    "ILE": (
        _CB,
        _A("CG1", "C", "CB", "CA", "N", 1.527, 110.7, -60.0),
        _A("CG2", "C", "CB", "CA", "N", 1.527, 110.4, 180.0),
        _A("CD1", "C", "CG1", "CB", "CA", 1.520, 114.0, 180.0),
    ),
    "MET": (
        _CB,
        _A("CG", "C", "CB", "CA", "N", 1.520, 113.7, -60.0),
        _A("SD", "S", "CG", "CB", "CA", 1.810, 112.7, 180.0),
        _A("CE", "C", "SD", "CG", "CB", 1.790, 100.6, 180.0),
    ),
    "PRO": (
        _CB,
        _A("CG", "C", "CB", "CA", "N", 1.495, 104.5, -15.0),
        _A("CD", "C", "CG", "CB", "CA", 1.507, 105.5, 20.0),
    ),
    "PHE": (_CB, *_PHENYL),
    "TYR": (_CB, *_PHENYL, _A("OH", "O", "CZ", "CE1", "CD1", 1.376, 119.8, 180.0)),
    "TRP": (
        _CB,
        _A("CG", "C", "CB", "CA", "N", 1.498, 113.6, -60.0),
        _A("CD1", "C", "CG", "CB", "CA", 1.365, 126.9, 90.0),
        _A("CD2", "C", "CG", "CB", "CA", 1.433, 126.6, -90.0),
        _A("NE1", "N", "CD1", "CG", "CB", 1.374, 110.2, 180.0),
        _A("CE2", "C", "CD2", "CG", "CB", 1.409, 107.2, 180.0),
        _A("CE3", "C", "CD2", "CG", "CB", 1.398, 133.9, 0.0),
        _A("CZ2", "C", "CE2", "CD2", "CG", 1.394, 122.4, 180.0),
        _A("CZ3", "C", "CE3", "CD2", "CG", 1.382, 118.7, 180.0),
        _A("CH2", "C", "CZ2", "CE2", "CD2", 1.368, 117.5, 0.0),
    ),
    "HIS": (
        _CB,
        _A("CG", "C", "CB", "CA", "N", 1.497, 113.7, -60.0),
        _A("ND1", "N", "CG", "CB", "CA", 1.378, 122.7, -90.0),
        _A("CD2", "C", "CG", "CB", "CA", 1.360, 131.0, 90.0),
        _A("CE1", "C", "ND1", "CG", "CB", 1.321, 109.0, 180.0),
        _A("NE2", "N", "CD2", "CG", "CB", 1.374, 107.0, 180.0),
    ),
    "ASP": (
        _CB,
        _A("CG", "C", "CB", "CA", "N", 1.520, 113.0, -60.0),
        _A("OD1", "O", "CG", "CB", "CA", 1.250, 119.2, -90.0),
        _A("OD2", "O", "CG", "CB", "CA", 1.250, 118.2, 90.0),
    ),
    "ASN": (
        _CB,
        _A("CG", "C", "CB", "CA", "N", 1.516, 112.6, -60.0),
        _A("OD1", "O", "CG", "CB", "CA", 1.231, 120.8, -60.0),
        _A("ND2", "N", "CG", "CB", "CA", 1.328, 116.4, 120.0),
    ),
    "GLU": (
        _CB,
        _A("CG", "C", "CB", "CA", "N", 1.520, 114.0, -60.0),
        _A("CD", "C", "CG", "CB", "CA", 1.520, 113.0, 180.0),
        _A("OE1", "O", "CD", "CG", "CB", 1.250, 119.0, 0.0),
        _A("OE2", "O", "CD", "CG", "CB", 1.250, 118.0, 180.0),
    ),
    "GLN": (
        _CB,
        _A("CG", "C", "CB", "CA", "N", 1.520, 114.0, -60.0),
        _A("CD", "C", "CG", "CB", "CA", 1.516, 112.6, 180.0),
        _A("OE1", "O", "CD", "CG", "CB", 1.231, 120.8, 0.0),
        _A("NE2", "N", "CD", "CG", "CB", 1.328, 116.4, 180.0),
    ),
    "LYS": (
        _CB,
        _A("CG", "C", "CB", "CA", "N", 1.520, 113.8, -60.0),
        _A("CD", "C", "CG", "CB", "CA", 1.520, 111.3, 180.0),
        _A("CE", "C", "CD", "CG", "CB", 1.520, 111.3, 180.0),
        _A("NZ", "N", "CE", "CD", "CG", 1.490, 111.9, 180.0),
    ),
    "ARG": (
        _CB,
        _A("CG", "C", "CB", "CA", "N", 1.520, 113.8, -60.0),
        _A("CD", "C", "CG", "CB", "CA", 1.520, 111.8, 180.0),
        _A("NE", "N", "CD", "CG", "CB", 1.460, 111.7, 180.0),
        _A("CZ", "C", "NE", "CD", "CG", 1.330, 124.2, 180.0),
        _A("NH1", "N", "CZ", "NE", "CD", 1.326, 120.0, 0.0),
        _A("NH2", "N", "CZ", "NE", "CD", 1.326, 120.0, 180.0),
    ),
}

#: Side-chain bonds that close rings back onto the backbone or within the side chain (the
#: bond from each placed atom to its ``bonded`` atom is implied).
_RING_BONDS: dict[str, tuple[tuple[str, str], ...]] = {
    "PRO": (("CD", "N"),),
    "PHE": (("CE2", "CZ"),),
    "TYR": (("CE2", "CZ"),),
    "TRP": (("NE1", "CE2"), ("CZ3", "CH2")),
    "HIS": (("CE1", "NE2"),),
}

# Backbone geometry (Angstrom, degrees).
_N_CA, _CA_C, _C_N, _C_O, _CH3_C = 1.458, 1.525, 1.329, 1.231, 1.520
_N_CA_C, _CA_C_N, _C_N_CA, _CA_C_O, _O_C_N = 111.2, 116.2, 121.7, 120.5, 122.7
_BACKBONE_ELEMENTS = {"N": "N", "CA": "C", "C": "C", "O": "O"}
#: Backbone phi of proline, fixed by its ring (degrees).
_PROLINE_PHI = -65.0


def place_atom(
    bonded: np.ndarray,
    angle_ref: np.ndarray,
    dihedral_ref: np.ndarray,
    bond: float,
    angle: float,
    dihedral: float,
) -> np.ndarray:
    """Position of an atom X from internal coordinates (natural extension reference frame).

    Arguments:
        bonded, angle_ref, dihedral_ref: Positions of atoms a, b, c, shape ``(3,)``.
        bond: Distance X-a (same unit as the positions).
        angle: Angle X-a-b in degrees.
        dihedral: Dihedral X-a-b-c in degrees.

    Returns:
        Position of X, shape ``(3,)``.
    """
    theta, phi = np.radians(angle), np.radians(dihedral)
    bc = bonded - angle_ref
    bc /= np.linalg.norm(bc)
    normal = np.cross(angle_ref - dihedral_ref, bc)
    normal /= np.linalg.norm(normal)
    frame = np.stack([bc, np.cross(normal, bc), normal], axis=1)
    local = bond * np.array(
        [-np.cos(theta), np.sin(theta) * np.cos(phi), np.sin(theta) * np.sin(phi)]
    )
    return bonded + frame @ local


def build_peptide(
    sequence: str,
    forcefield: Sequence[str] = ("amber99sbildn.xml",),
    *,
    phi: float | Sequence[float] = -180.0,
    psi: float | Sequence[float] = 180.0,
    constraints: str = "none",
    minimize: bool = True,
    tolerance: float = 0.1,
    max_iterations: int = MINIMIZER_MAX_ITERATIONS,
) -> tuple[app.Topology, np.ndarray]:
    """A capped peptide ACE-<sequence>-NME with hydrogens, energy-minimized in its force field.

    Arguments:
        sequence: One-letter codes of standard amino acids, e.g. ``"AAA"`` (case-insensitive).
        forcefield: OpenMM XML files used to add hydrogens and to minimize, including any
            implicit-solvent file (e.g. ``("amber96.xml", "implicit/obc1.xml")``).
        phi, psi: Backbone dihedrals in degrees of the start structure, one value for all
            residues or one per residue (proline's phi is always -65 degrees, set by its ring).
            The default is the fully extended chain.
        constraints: ``"none"`` or ``"hbonds"``: the constraints honoured while minimizing.
        minimize: Relax with OpenMM's ``LocalEnergyMinimizer`` (vacuum or the solvent in
            ``forcefield``, no cutoff).
        tolerance: Minimizer tolerance, root-mean-square force in kJ/mol/nm.
        max_iterations: Minimizer iteration cap (0: until converged); the default
            (:data:`~boltzgen.molecule.openmm_setup.MINIMIZER_MAX_ITERATIONS`) stops long chains
            after ~30 s.

    Returns:
        The OpenMM ``Topology`` (one chain: ACE, residues, NME) and positions in nm, float64,
        shape ``(n_atoms, 3)``; atom i of the topology is row i.

    Raises:
        BoltzgenError: For an empty sequence, an unknown one-letter code, wrong-length phi/psi
            or an unusable force field.
    """
    residues = _residue_names(sequence)
    phis, psis = _per_residue(phi, len(residues), "phi"), _per_residue(psi, len(residues), "psi")
    topology, positions = _heavy_atoms(residues, phis, psis)
    ff = load_forcefield(forcefield)
    modeller = app.Modeller(topology, positions * 0.1 * unit.nanometer)
    try:
        modeller.addHydrogens(ff)
    except ValueError as error:
        raise BoltzgenError(f"cannot add hydrogens with {list(forcefield)}: {error}") from None
    topology = modeller.getTopology()
    positions = np.asarray(modeller.getPositions().value_in_unit(unit.nanometer), dtype=np.float64)
    if minimize:
        system = create_system(topology, ff, constraints)
        label = f"ACE-{sequence.strip().upper()}-NME ({topology.getNumAtoms()} atoms)"
        positions = minimize_positions(system, positions, tolerance, max_iterations, label=label)
    return topology, positions


def _residue_names(sequence: str) -> list[str]:
    codes = sequence.strip().upper()
    unknown = sorted({code for code in codes if code not in ONE_LETTER_CODES})
    if not codes or unknown:
        raise BoltzgenError(
            f"bad peptide sequence {sequence!r}: use one-letter codes of the 20 standard amino "
            f"acids ({''.join(ONE_LETTER_CODES)})"
            + (f", not {', '.join(map(repr, unknown))}" if unknown else "")
        )
    return [ONE_LETTER_CODES[code] for code in codes]


def _per_residue(value: float | Sequence[float], n: int, name: str) -> list[float]:
    values = [float(value)] * n if np.isscalar(value) else [float(v) for v in value]
    if len(values) != n or not all(np.isfinite(values)):
        raise BoltzgenError(
            f"{name} must be one finite angle or {n} angles (degrees), got {value!r}"
        )
    return values


def _heavy_atoms(
    residues: list[str], phis: list[float], psis: list[float]
) -> tuple[app.Topology, np.ndarray]:
    """Topology with heavy atoms and bonds, and their positions in Angstrom, shape (n, 3)."""
    topology = app.Topology()
    chain = topology.addChain("A")
    coordinates: list[np.ndarray] = []

    def add(residue: app.Residue, name: str, element: str, xyz: np.ndarray) -> app.Atom:
        coordinates.append(xyz)
        return topology.addAtom(name, app.Element.getBySymbol(element), residue)

    # ACE cap: CH3 at the origin, C on the x axis, the first N in the xy plane.
    ace = topology.addResidue("ACE", chain, "1")
    ch3_xyz, c_xyz = np.zeros(3), np.array([_CH3_C, 0.0, 0.0])
    n_xyz = place_atom(c_xyz, ch3_xyz, np.array([0.0, 1.0, 0.0]), _C_N, _CA_C_N, 0.0)
    ca_xyz = place_atom(n_xyz, c_xyz, ch3_xyz, _N_CA, _C_N_CA, 180.0)
    ch3 = add(ace, "CH3", "C", ch3_xyz)
    previous_c = add(ace, "C", "C", c_xyz)
    ace_o = add(ace, "O", "O", place_atom(c_xyz, n_xyz, ca_xyz, _C_O, _O_C_N, 0.0))
    topology.addBond(ch3, previous_c)
    topology.addBond(previous_c, ace_o)

    for number, (name, phi, psi) in enumerate(zip(residues, phis, psis), start=2):
        residue = topology.addResidue(name, chain, str(number))
        phi = _PROLINE_PHI if name == "PRO" else phi
        c_xyz = place_atom(ca_xyz, n_xyz, coordinates[previous_c.index], _CA_C, _N_CA_C, phi)
        next_n_xyz = place_atom(c_xyz, ca_xyz, n_xyz, _C_N, _CA_C_N, psi)
        xyz = {
            "N": n_xyz,
            "CA": ca_xyz,
            "C": c_xyz,
            "O": place_atom(c_xyz, ca_xyz, n_xyz, _C_O, _CA_C_O, psi + 180.0),
        }
        for atom in SIDE_CHAINS[name]:
            xyz[atom.name] = place_atom(
                xyz[atom.bonded],
                xyz[atom.angle_ref],
                xyz[atom.dihedral_ref],
                atom.bond,
                atom.angle,
                atom.dihedral,
            )
        elements = _BACKBONE_ELEMENTS | {a.name: a.element for a in SIDE_CHAINS[name]}
        atoms = {atom: add(residue, atom, elements[atom], xyz[atom]) for atom in xyz}
        bonds = [("N", "CA"), ("CA", "C"), ("C", "O")]
        bonds += [(a.name, a.bonded) for a in SIDE_CHAINS[name]] + list(_RING_BONDS.get(name, ()))
        topology.addBond(previous_c, atoms["N"])
        for first, second in bonds:
            topology.addBond(atoms[first], atoms[second])
        previous_c = atoms["C"]
        next_ca_xyz = place_atom(next_n_xyz, c_xyz, ca_xyz, _N_CA, _C_N_CA, 180.0)
        n_xyz, ca_xyz = next_n_xyz, next_ca_xyz

    # NME cap: N and its methyl carbon (named C in OpenMM's Amber files) where the next N, CA go.
    nme = topology.addResidue("NME", chain, str(len(residues) + 2))
    nme_n = add(nme, "N", "N", n_xyz)
    nme_c = add(nme, "C", "C", ca_xyz)
    topology.addBond(previous_c, nme_n)
    topology.addBond(nme_n, nme_c)
    return topology, np.array(coordinates)

"""The peptide builder: residues, atom counts, geometry, chirality and minimization of
ACE-X-NME."""

from __future__ import annotations

from pathlib import Path

import mdtraj
import numpy as np
import openmm
import pytest
from openmm import app, unit

from boltzgen.errors import BoltzgenError
from boltzgen.molecule.peptide import ONE_LETTER_CODES, build_peptide

ALL_20 = "".join(ONE_LETTER_CODES)
#: Atoms (with hydrogens) of each residue as Amber's templates have them at pH 7: charged
#: ARG/LYS/ASP/GLU, neutral HIS (HIE or HID), CYS with HG; caps ACE and NME have 6 each.
ATOMS_PER_RESIDUE = {
    "ALA": 10,
    "ARG": 24,
    "ASN": 14,
    "ASP": 12,
    "CYS": 11,
    "GLN": 17,
    "GLU": 15,
    "GLY": 7,
    "HIS": 17,
    "ILE": 19,
    "LEU": 19,
    "LYS": 22,
    "MET": 17,
    "PHE": 20,
    "PRO": 14,
    "SER": 11,
    "THR": 14,
    "TRP": 24,
    "TYR": 21,
    "VAL": 16,
    "ACE": 6,
    "NME": 6,
}
#: OpenMM's villin headpiece test structure: a real protein of L amino acids.
VILLIN = Path(app.__file__).parent / "data" / "test.pdb"


@pytest.fixture(scope="module")
def all_20() -> tuple[app.Topology, np.ndarray]:
    """ACE + the 20 standard residues + NME in vacuum, minimized to 5 kJ/mol/nm RMS force."""
    return build_peptide(ALL_20, ("amber99sbildn.xml",), phi=-120.0, psi=130.0, tolerance=5.0)


def _reference_state(topology: app.Topology, positions: np.ndarray) -> openmm.State:
    system = app.ForceField("amber99sbildn.xml").createSystem(
        topology, nonbondedMethod=app.NoCutoff
    )
    context = openmm.Context(
        system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference")
    )
    context.setPositions(positions * unit.nanometer)
    return context.getState(getEnergy=True, getForces=True)


def _ca_improper(trajectory: mdtraj.Trajectory) -> np.ndarray:
    """Dihedral CB-CA-N-C in degrees of every residue with a CB (negative for L)."""
    quartets = []
    for residue in trajectory.topology.residues:
        atoms = {atom.name: atom.index for atom in residue.atoms}
        if {"CB", "CA", "N", "C"} <= set(atoms):
            quartets.append([atoms["CB"], atoms["CA"], atoms["N"], atoms["C"]])
    return np.degrees(mdtraj.compute_dihedrals(trajectory, np.array(quartets))[0])


def test_all_20_residues_have_the_template_atom_counts(all_20):
    topology, positions = all_20
    names = [residue.name for residue in topology.residues()]
    assert names == ["ACE", *(ONE_LETTER_CODES[c] for c in ALL_20), "NME"]
    assert [len(list(r.atoms())) for r in topology.residues()] == [
        ATOMS_PER_RESIDUE[n] for n in names
    ]
    assert positions.shape == (sum(ATOMS_PER_RESIDUE[n] for n in names), 3)


def test_all_20_minimized_energy_is_finite_and_forces_small(all_20):
    topology, positions = all_20
    state = _reference_state(topology, positions)
    energy = state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
    forces = state.getForces(asNumpy=True).value_in_unit(unit.kilojoule_per_mole / unit.nanometer)
    assert np.isfinite(energy) and energy < 0.0
    # The CPU-platform minimizer stopped at 5 kJ/mol/nm RMS; Reference agrees within 10x.
    assert np.sqrt(np.mean(forces**2)) < 50.0


def test_all_20_bonds_and_contacts_are_chemical(all_20):
    topology, positions = all_20
    bonds = np.array([[a.index, b.index] for a, b in topology.bonds()])
    lengths = np.linalg.norm(positions[bonds[:, 0]] - positions[bonds[:, 1]], axis=1)
    assert lengths.min() > 0.09 and lengths.max() < 0.19  # nm: C-H 0.109 ... S-C 0.18
    distances = np.linalg.norm(positions[:, None] - positions[None], axis=-1)
    np.fill_diagonal(distances, np.inf)
    distances[bonds[:, 0], bonds[:, 1]] = distances[bonds[:, 1], bonds[:, 0]] = np.inf
    assert distances.min() > 0.13  # no clashes between non-bonded atoms (1-3 H-H >= ~0.15)


def test_mdtraj_finds_backbone_dihedrals_and_l_chirality(all_20):
    topology, positions = all_20
    trajectory = mdtraj.Trajectory(positions[None], mdtraj.Topology.from_openmm(topology))
    assert mdtraj.compute_phi(trajectory)[0].shape == (20, 4)
    assert mdtraj.compute_psi(trajectory)[0].shape == (20, 4)
    built = _ca_improper(trajectory)
    villin = _ca_improper(mdtraj.load(str(VILLIN)))
    assert len(built) == 19  # every residue but glycine
    # Same sign and magnitude as the real L-protein (villin: -122 +- 5 degrees).
    assert np.all(np.abs(built - np.mean(villin)) < 25.0), (built, np.mean(villin))


def test_requested_backbone_dihedrals_are_built_exactly():
    phi, psi = [-60.0, -75.0, -150.0], [-45.0, 145.0, 150.0]
    topology, positions = build_peptide("AGA", phi=phi, psi=psi, minimize=False)
    trajectory = mdtraj.Trajectory(positions[None], mdtraj.Topology.from_openmm(topology))
    np.testing.assert_allclose(np.degrees(mdtraj.compute_phi(trajectory)[1][0]), phi, atol=1e-3)
    np.testing.assert_allclose(np.degrees(mdtraj.compute_psi(trajectory)[1][0]), psi, atol=1e-3)
    omega = np.degrees(mdtraj.compute_omega(trajectory)[1][0])
    np.testing.assert_allclose(np.abs(omega), 180.0, atol=1e-3)


def test_proline_ring_closes():
    topology, positions = build_peptide("P", minimize=False)
    atoms = {a.name: a.index for a in topology.atoms() if a.residue.name == "PRO"}
    assert abs(np.linalg.norm(positions[atoms["CD"]] - positions[atoms["N"]]) - 0.147) < 0.005


@pytest.mark.parametrize("sequence", ["", "AXA", "A1"])
def test_bad_sequences_are_user_errors(sequence):
    with pytest.raises(BoltzgenError, match="one-letter codes") as error:
        build_peptide(sequence, minimize=False)
    assert "\n" not in str(error.value)

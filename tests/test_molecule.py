"""Molecules from the catalog, PDB files and sequences; their Systems and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import mdtraj
import numpy as np
import openmm
import pytest
from openmm import app, unit

from boltzgen.errors import BoltzgenError
from boltzgen.molecule.molecule import Molecule

CATALOG = Path(__file__).resolve().parent.parent / "systems"
#: name -> (atoms, hydrogens constrained?, solvent files, implicit-solvent force class)
EXPECTED = {
    "alanine-dipeptide": (22, False, ["implicit/obc1.xml"], "CustomGBForce"),
    "alanine-dipeptide-vacuum": (22, False, [], None),
    "ala3": (42, True, ["amber99_obc.xml"], "GBSAOBCForce"),
    "ala3-vacuum": (42, True, [], None),
    "ala5": (62, True, ["amber99_obc.xml"], "GBSAOBCForce"),
    "ala5-vacuum": (62, True, [], None),
}
#: openmmtools' AlanineDipeptideImplicit (amber96 + OBC1) at its minimum.
OPENMMTOOLS_MINIMUM_KJ = -138.97


def _reference_energy(system: openmm.System, positions: np.ndarray) -> float:
    context = openmm.Context(
        system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference")
    )
    context.setPositions(positions * unit.nanometer)
    return (
        context.getState(getEnergy=True)
        .getPotentialEnergy()
        .value_in_unit(unit.kilojoule_per_mole)
    )


def test_catalog_names_are_the_folders():
    folders = sorted(p.name for p in CATALOG.iterdir() if (p / "system.toml").is_file())
    assert Molecule.catalog_names() == folders == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_catalog_system_builds_with_its_model(name):
    n_atoms, hbonds, solvent, gb_force = EXPECTED[name]
    molecule = Molecule.from_catalog(name)
    hydrogens = sum(atom.element.symbol == "H" for atom in molecule.topology.atoms())
    assert molecule.n_atoms == molecule.system.getNumParticles() == n_atoms
    assert molecule.n_constraints == (hydrogens if hbonds else 0)
    assert molecule.n_dof == 3 * n_atoms - 6 - molecule.n_constraints
    assert molecule.solvent_files == solvent
    forces = {type(force).__name__ for force in molecule.system.getForces()}
    assert "CMMotionRemover" not in forces and (gb_force is None or gb_force in forces)
    assert all(
        f.getNonbondedMethod() == openmm.NonbondedForce.NoCutoff
        for f in molecule.system.getForces()
        if isinstance(f, openmm.NonbondedForce)
    )
    assert molecule.temperature == 300.0
    trajectory = mdtraj.Trajectory(molecule.positions[None], molecule.mdtraj_topology())
    assert mdtraj.compute_phi(trajectory)[0].shape[0] == n_atoms // 10 - 1  # 1, 3, 5 residues


def test_alanine_dipeptide_energy_matches_independent_openmm_and_is_a_minimum():
    molecule = Molecule.from_catalog("alanine-dipeptide")
    pdb = app.PDBFile(str(CATALOG / "alanine-dipeptide" / "structure.pdb"))
    independent = app.ForceField("amber96.xml", "implicit/obc1.xml").createSystem(
        pdb.topology, nonbondedMethod=app.NoCutoff, constraints=None
    )
    positions = pdb.getPositions(asNumpy=True).value_in_unit(unit.nanometer)
    energy = _reference_energy(molecule.system, molecule.positions)
    assert energy == pytest.approx(_reference_energy(independent, positions), rel=1e-10)
    # Stored to 0.001 A: re-minimizing gains less than 0.5 kJ/mol.
    context = openmm.Context(
        independent, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference")
    )
    context.setPositions(positions * unit.nanometer)
    openmm.LocalEnergyMinimizer.minimize(context, 0.01)
    minimum = (
        context.getState(getEnergy=True)
        .getPotentialEnergy()
        .value_in_unit(unit.kilojoule_per_mole)
    )
    assert 0.0 <= energy - minimum < 0.5
    # A local minimum at least as deep as the openmmtools reference structure's (-138.97).
    assert energy < OPENMMTOOLS_MINIMUM_KJ


def test_from_sequence_constrains_exactly_the_bonds_to_hydrogen():
    molecule = Molecule.from_sequence("AAA", solvent="amber99_obc.xml", constraints="hbonds")
    assert molecule.n_atoms == 42 and molecule.name == "ACE-AAA-NME"
    h_bonds = {
        tuple(sorted((a.index, b.index)))
        for a, b in molecule.topology.bonds()
        if "H" in (a.element.symbol, b.element.symbol)
    }
    constrained = molecule.constrained_bonds()
    assert {tuple(sorted((i, j))) for i, j, _ in constrained} == h_bonds
    lengths = np.array([length for _, _, length in constrained])
    measured = np.array(
        [np.linalg.norm(molecule.positions[i] - molecule.positions[j]) for i, j, _ in constrained]
    )
    np.testing.assert_allclose(measured, lengths, atol=1e-6)  # minimized with the constraints
    assert set(np.round(lengths, 4)) <= {0.109, 0.101, 0.108}  # Amber C-H / N-H r0 (nm)


def test_describe_is_json_and_write_pdb_round_trips(tmp_path):
    molecule = Molecule.from_catalog("ala3", solvent="obc2", temperature=350.0)
    description = json.loads(json.dumps(molecule.describe()))
    assert description["solvent"] == ["implicit/obc2.xml"] and description["temperature"] == 350.0
    assert description["forcefield"] == ["amber99sbildn.xml"] and description["n_dof"] == 98
    molecule.write_pdb(tmp_path / "ala3.pdb")
    reloaded = mdtraj.load(str(tmp_path / "ala3.pdb"))
    assert [a.name for a in reloaded.topology.atoms] == [a.name for a in molecule.topology.atoms()]
    np.testing.assert_allclose(reloaded.xyz[0], molecule.positions, atol=6e-5)  # 0.001 A precision
    assert list(tmp_path.iterdir()) == [tmp_path / "ala3.pdb"]  # no temporary file left


def _pdb_variant(tmp_path: Path, name: str, edit) -> Path:
    lines = (CATALOG / "alanine-dipeptide" / "structure.pdb").read_text().splitlines(True)
    path = tmp_path / f"{name}.pdb"
    path.write_text("".join(edit(lines)))
    return path


def _no_hydrogens(lines):
    return [l for l in lines if not (l.startswith(("ATOM", "HETATM")) and l[76:78].strip() == "H")]


@pytest.mark.parametrize(
    "name, edit, message",
    [
        (
            "malformed",
            lambda ls: [
                l.replace(l[30:38], " xx.xxx ") if l.startswith("ATOM") else l for l in ls
            ],
            "cannot read PDB file",
        ),
        ("no-atoms", lambda ls: ["REMARK nothing here\n"], "cannot read PDB file|no ATOM"),
        (
            "unknown-residue",
            lambda ls: [l.replace(" ALA A", " XYZ A") for l in ls],
            "no template for residue XYZ 2",
        ),
        (
            "missing-hydrogens",
            _no_hydrogens,
            r"no template for residue ACE 1 .*missing 3 H atoms.*add missing hydrogens",
        ),
    ],
)
def test_bad_pdb_files_give_one_line_errors(tmp_path, name, edit, message):
    path = _pdb_variant(tmp_path, name, edit)
    with pytest.raises(BoltzgenError, match=message) as error:
        Molecule.from_pdb(path, forcefield=["amber96.xml"])
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(
    "keywords, message",
    [
        ({"solvent": "gbn3"}, "unknown solvent 'gbn3'"),
        ({"forcefield": ["amber00.xml"]}, "cannot load force-field file 'amber00.xml'"),
        ({"constraints": "allbonds"}, "constraints must be one of none, hbonds"),
        ({"temperature": 0.0}, "temperature must be a positive"),
        ({"temperature": float("nan")}, "temperature must be a positive"),
    ],
)
def test_bad_model_values_give_one_line_errors(keywords, message):
    with pytest.raises(BoltzgenError, match=message) as error:
        Molecule.from_pdb(CATALOG / "alanine-dipeptide" / "structure.pdb", **keywords)
    assert "\n" not in str(error.value)


def test_md_reference_belongs_to_the_catalog_settings_only():
    """alanine-dipeptide carries the basin populations of its MD reference (fractions that sum
    to 1, errors from the effective frames); a changed temperature or solvent drops them, the
    catalog's own values given explicitly keep them; the vacuum entry has none."""
    reference = Molecule.from_catalog("alanine-dipeptide").md_reference
    assert reference is not None and sum(reference.populations.values()) == pytest.approx(
        1, abs=1e-3
    )
    p = reference.populations["alphaR"]
    assert reference.standard_errors()["alphaR"] == pytest.approx(
        (p * (1 - p) / reference.effective_frames) ** 0.5
    )
    assert Molecule.from_catalog("alanine-dipeptide", temperature=300.0).md_reference == reference
    assert Molecule.from_catalog("alanine-dipeptide", temperature=400.0).md_reference is None
    assert Molecule.from_catalog("alanine-dipeptide", solvent="vacuum").md_reference is None
    assert Molecule.from_catalog("alanine-dipeptide-vacuum").md_reference is None


def test_unknown_catalog_name_and_missing_file():
    with pytest.raises(BoltzgenError, match="unknown catalog system 'ala4'.*alanine-dipeptide"):
        Molecule.from_catalog("ala4")
    with pytest.raises(BoltzgenError, match="does not exist"):
        Molecule.from_pdb("/nonexistent/structure.pdb")

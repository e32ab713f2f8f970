"""Degenerate coordinates are refused when a molecule is made, naming the atoms; the minimizer's
failures are one-line errors, and its iterations are capped."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import openmm
import pytest
from openmm import app, unit

from boltzgen.cli.main import main
from boltzgen.errors import BoltzgenError
from boltzgen.molecule.geometry import MIN_ATOM_DISTANCE_NM, _coincident_pairs
from boltzgen.molecule.molecule import Molecule
from boltzgen.molecule.openmm_setup import minimize_positions
from boltzgen.molecule.peptide import build_peptide


@pytest.fixture(scope="module")
def dipeptide() -> Molecule:
    return Molecule.from_catalog("alanine-dipeptide-vacuum")


def _pdb(
    molecule: Molecule, path: Path, positions: np.ndarray, x_field: str | None = None
) -> Path:
    """Write ``positions`` as a PDB file; ``x_field`` (8 characters, Angstrom) replaces the x
    coordinate of the first atom as text (for values the PDB writer cannot format)."""
    with path.open("w") as handle:  # OpenMM's writer: a Molecule would refuse these positions
        app.PDBFile.writeFile(molecule.topology, positions * unit.nanometer, handle, keepIds=True)
    if x_field is not None:
        lines = path.read_text().splitlines(keepends=True)
        first = next(i for i, line in enumerate(lines) if line.startswith(("ATOM", "HETATM")))
        lines[first] = lines[first][:30] + x_field + lines[first][38:]
        path.write_text("".join(lines))
    return path


CASES = {
    "one point": (lambda p: np.zeros_like(p), None, r"atoms 0 \(ACE1:\w+\) and 1 \(ACE1:\w+\) "
                  r"are 0 nm apart \(and 230 more pairs\), closer than 0\.01 nm"),
    "two overlapping": (lambda p: np.vstack([p[:5], p[4:5], p[6:]]), None,
                        r"atoms 4 \(ACE1:\w+\) and 5 \(ACE1:\w+\) are 0 nm apart, closer"),
    "1e30 coordinate": (lambda p: p, "   1e+30", r"atom 0 \(ACE1:\w+\) has coordinate 1e\+29 nm"),
    "NaN coordinate": (lambda p: p, "     nan", r"atom 0 \(ACE1:\w+\) has coordinate nan nm"),
}  # fmt: skip


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("command", [["systems", "show"], ["energy", "check"]])
def test_degenerate_pdb_files_are_refused_in_one_line(
    case: str, command: list[str], dipeptide: Molecule, tmp_path: Path, capsys
) -> None:
    change, x_field, expected = CASES[case]
    path = tmp_path / "bad.pdb"
    if x_field is None:
        _pdb(dipeptide, path, change(dipeptide.positions))
    else:
        _pdb(dipeptide, path, dipeptide.positions, x_field)
    assert main([*command, str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1
    assert captured.err.startswith(f"boltzgen: error: {path}: ")
    assert re.search(expected, captured.err), captured.err


@pytest.mark.parametrize("command", [["systems", "show"], ["energy", "check"]])
def test_a_chain_break_is_refused_in_one_line(
    command: list[str], dipeptide: Molecule, tmp_path: Path, capsys
) -> None:
    """Alanine dipeptide without its ALA residue: OpenMM bonds ACE to NME across the gap (0.33 nm
    here; it bonds consecutive residues whatever their distance), so the molecule would load as
    a stretched N-methylacetamide; it is refused, naming the bond."""
    path = _pdb(dipeptide, tmp_path / "gap.pdb", dipeptide.positions)
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(line for line in lines if " ALA " not in line))
    assert main([*command, str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1
    assert re.search(
        r"bonded atoms 4 \(ACE1:C\) and \d+ \(NME3:N\) are 0\.\d+ nm apart, longer than any "
        r"bond \(0\.3 nm\): residues are missing between them \(a chain break\)",
        captured.err,
    ), captured.err


def test_close_but_distinct_atoms_are_accepted(dipeptide: Molecule, tmp_path: Path) -> None:
    """0.02 nm apart is a clash, not a degenerate structure: the molecule loads."""
    positions = dipeptide.positions.copy()
    positions[5] = positions[4] + np.array([0.02, 0.0, 0.0])
    molecule = Molecule.from_pdb(_pdb(dipeptide, tmp_path / "clash.pdb", positions))
    assert molecule.n_atoms == dipeptide.n_atoms


def test_minimizer_failure_is_a_one_line_error(dipeptide: Molecule) -> None:
    """minimize_positions on coincident atoms (the library path, no Molecule check): OpenMM's
    'Particle coordinate is NaN' becomes one BoltzgenError line."""
    with pytest.raises(BoltzgenError) as raised:
        minimize_positions(dipeptide.system, np.zeros_like(dipeptide.positions), label="zeros")
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith("OpenMM's energy minimizer failed on zeros (Particle coordinate is")


def _energy(molecule_system: openmm.System, positions: np.ndarray) -> float:
    context = openmm.Context(
        molecule_system,
        openmm.VerletIntegrator(0.001),
        openmm.Platform.getPlatformByName("Reference"),
    )
    context.setPositions(positions)
    state = context.getState(getEnergy=True)
    return state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)


def test_the_iteration_cap_bounds_the_minimization() -> None:
    """AAA: 10 iterations lower the energy of the built chain but stop short of the minimum that
    an uncapped minimization reaches."""
    topology, start = build_peptide("AAA", minimize=False)
    system = Molecule(topology, start).system
    capped = build_peptide("AAA", max_iterations=10)[1]
    converged = build_peptide("AAA", max_iterations=0)[1]
    energies = [_energy(system, x) for x in (start, capped, converged)]
    assert energies[0] > energies[1] > energies[2] + 1.0


def test_the_pair_sweep_finds_what_all_pairwise_distances_find() -> None:
    """Clustered random points with duplicated rows: count and first pair equal brute force."""
    rng = np.random.default_rng(0)
    for _ in range(20):
        points = rng.uniform(0.0, 0.05, (60, 3))
        points[rng.integers(60, size=5)] = points[rng.integers(60, size=5)]
        distances = np.linalg.norm(points[:, None] - points[None], axis=-1)
        i, j = np.triu_indices(60, 1)
        close = distances[i, j] < MIN_ATOM_DISTANCE_NM
        count, first = _coincident_pairs(points)
        assert count == int(close.sum()) > 0
        assert first[:2] == (int(i[close][0]), int(j[close][0]))
        assert first[2] == pytest.approx(distances[first[0], first[1]])

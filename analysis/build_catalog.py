"""Regenerate the molecule catalog in ``systems/``: build, minimize and describe each peptide.

Each structure is built by :func:`boltzgen.peptide.build_peptide` from a few standard backbone
conformations (C5, C7eq, alpha-R), minimized with the system's own force field, solvent and
constraints, and the lowest-energy result is written as ``structure.pdb`` next to its
``system.toml``. Run: ``python analysis/build_catalog.py [NAME ...]``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import openmm
from openmm import app, unit

from boltzgen.molecule.openmm_setup import create_system, load_forcefield, solvent_files
from boltzgen.molecule.peptide import build_peptide

__all__ = ["CATALOG", "build_system"]

SYSTEMS_DIR = Path(__file__).resolve().parent.parent / "systems"
#: Backbone (phi, psi) starts in degrees: C5 / extended, C7eq, alpha-R.
STARTS = ((-150.0, 150.0), (-80.0, 75.0), (-65.0, -40.0))
_TA_BG = "Schopmans & Friederich 2025 (TA-BG); von Klitzing et al. 2025 (CMT)"
_FAB = (
    "Midgley et al. 2023 (FAB); Schopmans & Friederich 2025 (TA-BG); openmmtools "
    "AlanineDipeptideImplicit"
)

#: name -> (sequence, force field, solvent, constraints, description, references)
CATALOG: dict[str, tuple[str, list[str], str, str, str, str]] = {
    "alanine-dipeptide": (
        "A",
        ["amber96.xml"],
        "obc1",
        "none",
        "Alanine dipeptide Ace-Ala-Nme (22 atoms), Amber ff96 + OBC1 implicit solvent, no "
        "constraints",
        _FAB,
    ),
    "alanine-dipeptide-vacuum": (
        "A",
        ["amber96.xml"],
        "vacuum",
        "none",
        "Alanine dipeptide Ace-Ala-Nme (22 atoms), Amber ff96 in vacuum, no constraints",
        _FAB,
    ),
    "ala3": (
        "AAA",
        ["amber99sbildn.xml"],
        "amber99_obc.xml",
        "hbonds",
        "Ace-(Ala)3-Nme (42 atoms), Amber ff99SB-ILDN + OBC GBSA (GBSAOBCForce), H-bond "
        "constraints",
        _TA_BG,
    ),
    "ala3-vacuum": (
        "AAA",
        ["amber99sbildn.xml"],
        "vacuum",
        "hbonds",
        "Ace-(Ala)3-Nme (42 atoms), Amber ff99SB-ILDN in vacuum, H-bond constraints",
        _TA_BG,
    ),
    "ala5": (
        "AAAAA",
        ["amber99sbildn.xml"],
        "amber99_obc.xml",
        "hbonds",
        "Ace-(Ala)5-Nme (62 atoms), Amber ff99SB-ILDN + OBC GBSA (GBSAOBCForce), H-bond "
        "constraints",
        _TA_BG,
    ),
    "ala5-vacuum": (
        "AAAAA",
        ["amber99sbildn.xml"],
        "vacuum",
        "hbonds",
        "Ace-(Ala)5-Nme (62 atoms), Amber ff99SB-ILDN in vacuum, H-bond constraints",
        _TA_BG,
    ),
}


def build_system(name: str) -> float:
    """Build, minimize and write one catalog system; returns its energy in kJ/mol."""
    sequence, forcefield, solvent, constraints, description, references = CATALOG[name]
    files = forcefield + solvent_files(solvent)
    best = None
    for phi, psi in STARTS:
        topology, positions = build_peptide(
            sequence, files, phi=phi, psi=psi, constraints=constraints, tolerance=0.01
        )
        energy = _energy(topology, positions, files, constraints)
        if best is None or energy < best[0]:
            best = (energy, topology, positions)
    energy, topology, positions = best
    folder = SYSTEMS_DIR / name
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "structure.pdb", "w") as handle:
        app.PDBFile.writeFile(topology, positions * unit.nanometer, handle)
    toml = (
        f"# Built by analysis/build_catalog.py: minimized energy {energy:.4f} kJ/mol\n"
        f'description = "{description}"\n'
        f'structure = "structure.pdb"\n'
        f"forcefield = [{', '.join(repr(f).replace(chr(39), chr(34)) for f in forcefield)}]\n"
        f'solvent = "{solvent}"\n'
        f'constraints = "{constraints}"\n'
        f"temperature = 300.0\n"
        f'references = "{references}"\n'
    )
    (folder / "system.toml").write_text(toml)
    return energy


def _energy(
    topology: app.Topology, positions: np.ndarray, files: list[str], constraints: str
) -> float:
    system = create_system(topology, load_forcefield(files), constraints)
    context = openmm.Context(
        system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference")
    )
    context.setPositions(positions * unit.nanometer)
    return (
        context.getState(getEnergy=True)
        .getPotentialEnergy()
        .value_in_unit(unit.kilojoule_per_mole)
    )


if __name__ == "__main__":
    for system_name in sys.argv[1:] or list(CATALOG):
        print(f"{system_name}: {build_system(system_name):.4f} kJ/mol", flush=True)

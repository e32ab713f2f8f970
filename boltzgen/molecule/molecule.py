"""A molecule: structure + force field + solvent + temperature, turned into an OpenMM ``System``.

A :class:`Molecule` comes from a PDB file, from a one-letter peptide sequence (built by
:func:`boltzgen.peptide.build_peptide`) or from the built-in catalog (``systems/``, reached as
``importlib.resources.files("boltzgen") / "catalog"``). It carries the OpenMM ``Topology`` and
``System``, positions in nm and the temperature in K, and says exactly which XML files made it.
"""

from __future__ import annotations

import io
import math
import os
import sys
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import mdtraj
import numpy as np
import openmm
from openmm import app, unit

from ..errors import BoltzgenError
from ..io import atomic_write_text
from .geometry import check_geometry
from .openmm_setup import CONSTRAINTS, create_system, load_forcefield, one_line, solvent_files
from .peptide import build_peptide
from .ramachandran import BasinReference

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["Molecule", "DEFAULT_FORCEFIELD"]

#: Force field used when none is given.
DEFAULT_FORCEFIELD: tuple[str, ...] = ("amber99sbildn.xml",)
_CATALOG_KEYS = {
    "description",
    "structure",
    "forcefield",
    "solvent",
    "constraints",
    "temperature",
    "references",
    "md_reference",
}


class Molecule:
    """One molecule ready for simulation and sampling.

    Atom i of :attr:`topology` is particle i of :attr:`system` and row i of :attr:`positions`.
    The ``System`` has no cutoff (``NoCutoff``), no centre-of-mass motion remover and, for
    ``constraints="hbonds"``, rigid bonds to hydrogen.

    Arguments:
        topology: OpenMM topology with all hydrogens.
        positions: Positions in nm, shape ``(n_atoms, 3)``.
        forcefield: Force-field XML files (OpenMM data-file names or paths).
        solvent: ``"vacuum"``, ``"obc1"``, ``"obc2"``, ``"gbn2"``, or an XML file such as
            ``"amber99_obc.xml"`` (see :func:`boltzgen.forcefields.solvent_files`).
        constraints: ``"none"`` or ``"hbonds"``.
        temperature: In K, positive.
        name: A short name for reports.
        source: Where the structure came from (catalog name, file path, sequence).
        description: Free text (catalog systems carry one).
        references: Literature the system is taken from.

    Raises:
        BoltzgenError: For bad force-field/solvent/constraints/temperature values, a
            structure the force field cannot parameterize, or unusable coordinates (NaN,
            beyond 1000 nm, atoms closer than 0.01 nm: :func:`~boltzgen.molecule.geometry.
            check_geometry`).
    """

    def __init__(
        self,
        topology: app.Topology,
        positions: np.ndarray,
        forcefield: Sequence[str] = DEFAULT_FORCEFIELD,
        solvent: str = "vacuum",
        constraints: str = "none",
        temperature: float = 300.0,
        *,
        name: str = "molecule",
        source: str = "",
        description: str = "",
        references: str = "",
    ) -> None:
        positions = np.asarray(positions, dtype=np.float64)
        if positions.shape != (topology.getNumAtoms(), 3):
            raise BoltzgenError(
                f"positions must have shape ({topology.getNumAtoms()}, 3) in nm, got shape "
                f"{positions.shape}"
            )
        check_geometry(positions, topology, source or name)
        self.topology = topology
        self.positions = positions
        self.forcefield_files = _file_list(forcefield)
        self.solvent = str(solvent)
        self.solvent_files = solvent_files(self.solvent)
        self.constraints = _checked_constraints(constraints)
        self.temperature = _checked_temperature(temperature)
        self.name = name
        self.source = source
        self.description = description
        self.references = references
        #: Basin populations of boltzgen's own MD reference at exactly these settings (catalog
        #: entries that have one, when no setting was overridden), else ``None``.
        self.md_reference: BasinReference | None = None
        forcefield_object = load_forcefield(self.forcefield_files + self.solvent_files)
        self.system: openmm.System = create_system(topology, forcefield_object, self.constraints)

    # --- constructors -------------------------------------------------------------------------

    @classmethod
    def from_pdb(
        cls,
        path: str | os.PathLike[str],
        forcefield: Sequence[str] = DEFAULT_FORCEFIELD,
        solvent: str = "vacuum",
        constraints: str = "none",
        temperature: float = 300.0,
        **metadata: str,
    ) -> Molecule:
        """A molecule from a PDB file with all hydrogens (coordinates in Angstrom on disk).

        Arguments:
            path: The PDB file.
            forcefield: Force-field XML files (see :class:`Molecule`).
            solvent: The solvent (see :class:`Molecule`).
            constraints: ``"none"`` or ``"hbonds"``.
            temperature: In K, positive.
            **metadata: ``name``, ``source``, ``description``, ``references`` overrides.

        Raises:
            BoltzgenError: For a missing or malformed file, or one without atoms.
        """
        path = Path(path)
        if not path.is_file():
            raise BoltzgenError(f"PDB file {str(path)!r} does not exist")
        try:
            pdb = app.PDBFile(str(path))
        except Exception as error:
            raise BoltzgenError(
                f"cannot read PDB file {str(path)!r} ({one_line(error)}): check that it is a "
                "valid PDB file"
            ) from None
        if pdb.topology.getNumAtoms() == 0:
            raise BoltzgenError(f"PDB file {str(path)!r} has no ATOM/HETATM records")
        positions = pdb.getPositions(asNumpy=True).value_in_unit(unit.nanometer)
        metadata = {"name": path.stem, "source": str(path)} | metadata
        return cls(
            pdb.topology, positions, forcefield, solvent, constraints, temperature, **metadata
        )

    @classmethod
    def from_sequence(
        cls,
        sequence: str,
        forcefield: Sequence[str] = DEFAULT_FORCEFIELD,
        solvent: str = "vacuum",
        constraints: str = "none",
        temperature: float = 300.0,
        minimize: bool = True,
    ) -> Molecule:
        """A capped peptide ACE-<sequence>-NME, built and (optionally) minimized.

        Arguments:
            sequence: One-letter amino-acid codes, e.g. ``"AAA"``.
            forcefield: Force-field XML files (see :class:`Molecule`); the minimization
                uses the same force field, solvent and constraints.
            solvent: The solvent (see :class:`Molecule`).
            constraints: ``"none"`` or ``"hbonds"``.
            temperature: In K, positive.
            minimize: Relax the built structure with OpenMM's ``LocalEnergyMinimizer``.
        """
        files = _file_list(forcefield) + solvent_files(solvent)
        topology, positions = build_peptide(
            sequence, files, constraints=_checked_constraints(constraints), minimize=minimize
        )
        code = sequence.strip().upper()
        return cls(
            topology,
            positions,
            forcefield,
            solvent,
            constraints,
            temperature,
            name=f"ACE-{code}-NME",
            source=f"seq:{code}",
        )

    @classmethod
    def from_catalog(
        cls,
        name: str,
        *,
        forcefield: Sequence[str] | None = None,
        solvent: str | None = None,
        constraints: str | None = None,
        temperature: float | None = None,
    ) -> Molecule:
        """A built-in system of the catalog; keyword arguments given override its spec.

        Arguments:
            name: One of :meth:`catalog_names`, e.g. ``"alanine-dipeptide"``.
            forcefield: Override of the catalog entry's force field (``system.toml``).
            solvent: Override of its solvent.
            constraints: Override of its constraints.
            temperature: Override of its temperature (K).

        Raises:
            BoltzgenError: For an unknown name or a broken catalog entry.
        """
        if name not in cls.catalog_names():
            raise BoltzgenError(
                f"unknown catalog system {name!r}: choose one of {', '.join(cls.catalog_names())}"
            )
        folder = _catalog_root() / name
        spec = _read_spec(folder / "system.toml", name)
        structure = folder / spec["structure"]
        with resources.as_file(structure) as path:
            molecule = cls.from_pdb(
                path,
                forcefield=spec["forcefield"] if forcefield is None else forcefield,
                solvent=spec["solvent"] if solvent is None else solvent,
                constraints=spec["constraints"] if constraints is None else constraints,
                temperature=spec["temperature"] if temperature is None else temperature,
                name=name,
                source=f"catalog:{name}",
                description=spec.get("description", ""),
                references=spec.get("references", ""),
            )
        as_catalogued = (
            molecule.forcefield_files == _file_list(spec["forcefield"])
            and molecule.solvent == spec["solvent"]
            and molecule.constraints == spec["constraints"]
            and molecule.temperature == float(spec["temperature"])
        )
        if "md_reference" in spec and as_catalogued:
            where = f"catalog system {name!r}"
            molecule.md_reference = BasinReference.from_spec(spec["md_reference"], where)
        return molecule

    @staticmethod
    def catalog_names() -> list[str]:
        """Names of the built-in systems, sorted."""
        root = _catalog_root()
        return sorted(
            entry.name
            for entry in root.iterdir()
            if entry.is_dir() and (entry / "system.toml").is_file()
        )

    # --- properties ---------------------------------------------------------------------------

    @property
    def n_atoms(self) -> int:
        """Number of atoms (= particles of the ``System``)."""
        return self.topology.getNumAtoms()

    @property
    def n_residues(self) -> int:
        """Number of residues, caps included."""
        return self.topology.getNumResidues()

    @property
    def n_constraints(self) -> int:
        """Number of distance constraints of the ``System``."""
        return self.system.getNumConstraints()

    @property
    def n_dof(self) -> int:
        """Configurational degrees of freedom, 3N - 6 - n_constraints."""
        return 3 * self.n_atoms - 6 - self.n_constraints

    def constrained_bonds(self) -> list[tuple[int, int, float]]:
        """The ``System``'s constraints as ``(atom_i, atom_j, length_nm)``, in its order."""
        bonds = []
        for index in range(self.n_constraints):
            i, j, length = self.system.getConstraintParameters(index)
            bonds.append((int(i), int(j), float(length.value_in_unit(unit.nanometer))))
        return bonds

    def describe(self) -> dict[str, Any]:
        """A JSON-able summary: identity, size, degrees of freedom and the exact model files."""
        return {
            "name": self.name,
            "source": self.source,
            "description": self.description,
            "n_atoms": self.n_atoms,
            "n_residues": self.n_residues,
            "residues": [residue.name for residue in self.topology.residues()],
            "n_constraints": self.n_constraints,
            "n_dof": self.n_dof,
            "forcefield": list(self.forcefield_files),
            "solvent": list(self.solvent_files),
            "solvent_model": self.solvent,
            "constraints": self.constraints,
            "temperature": self.temperature,
            "forces": [type(force).__name__ for force in self.system.getForces()],
            "references": self.references,
        }

    def write_pdb(self, path: str | os.PathLike[str]) -> None:
        """Write topology and positions as a PDB file (Angstrom), atomically."""
        text = io.StringIO()
        app.PDBFile.writeFile(self.topology, self.positions * unit.nanometer, text, keepIds=True)
        atomic_write_text(path, text.getvalue())

    def mdtraj_topology(self) -> mdtraj.Topology:
        """The topology as an ``mdtraj.Topology`` (same atom order)."""
        return mdtraj.Topology.from_openmm(self.topology)

    def __repr__(self) -> str:
        return (
            f"Molecule({self.name!r}, n_atoms={self.n_atoms}, forcefield={self.forcefield_files}, "
            f"solvent={self.solvent_files}, constraints={self.constraints!r}, "
            f"temperature={self.temperature:g})"
        )


def _catalog_root() -> Any:
    return resources.files("boltzgen") / "catalog"


def _read_spec(path: Any, name: str) -> dict[str, Any]:
    try:
        spec = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise BoltzgenError(
            f"catalog system {name!r} has an unreadable system.toml: {one_line(error)}"
        ) from None
    unknown = set(spec) - _CATALOG_KEYS
    missing = {"structure", "forcefield", "solvent", "constraints", "temperature"} - set(spec)
    if unknown or missing:
        raise BoltzgenError(
            f"catalog system {name!r}: system.toml has unknown keys {sorted(unknown)} or lacks "
            f"{sorted(missing)}; allowed keys are {sorted(_CATALOG_KEYS)}"
        )
    return spec


def _file_list(forcefield: Sequence[str]) -> list[str]:
    if isinstance(forcefield, str):
        return [forcefield]
    files = [str(name) for name in forcefield]
    if not files:
        raise BoltzgenError("forcefield must name at least one XML file, e.g. 'amber99sbildn.xml'")
    return files


def _checked_constraints(constraints: str) -> str:
    if constraints not in CONSTRAINTS:
        raise BoltzgenError(
            f"constraints must be one of {', '.join(CONSTRAINTS)}, got {constraints!r}"
        )
    return constraints


def _checked_temperature(temperature: float) -> float:
    try:
        value = float(temperature)
    except (TypeError, ValueError):
        value = math.nan
    if not (value > 0 and math.isfinite(value)):
        raise BoltzgenError(
            f"temperature must be a positive number of kelvin, got {temperature!r}"
        )
    return value

"""Molecules: structure + force field + solvent + temperature through OpenMM, and their geometry.

- :class:`Molecule` (:mod:`.molecule`): a catalog system, a user's PDB or a capped peptide from
  a sequence, with its OpenMM ``System``; :func:`molecule_from_spec` (:mod:`.spec`) builds one
  from a config table or a command-line argument.
- :mod:`.openmm_setup`: force-field files, solvent models, ``System`` creation, minimisation.
- :mod:`.peptide`: the capped-peptide builder.
- :mod:`.zmatrix`, :mod:`.coordinates`: the Z-matrix of a topology and the Cartesian <->
  internal-coordinate map with its exact log-det Jacobian.
- :mod:`.ramachandran`: backbone dihedrals and the alanine-dipeptide basins.
- :mod:`.trajectories`: sample files with topology (PDB + DCD + HDF5 + log-weights).
- :mod:`.units`: k_B in OpenMM's units.

Its modules import OpenMM (and mdtraj); the package's names load them on first access.
"""

from __future__ import annotations

from .._lazy import lazy_exports

__getattr__ = lazy_exports(
    __name__,
    {
        "BOLTZMANN_CONSTANT": ".units",
        "DEFAULT_FORCEFIELD": ".molecule",
        "Molecule": ".molecule",
        "molecule_from_spec": ".spec",
        "spec_from_text": ".spec",
    },
)

__all__ = [
    "BOLTZMANN_CONSTANT",
    "DEFAULT_FORCEFIELD",
    "Molecule",
    "molecule_from_spec",
    "spec_from_text",
]

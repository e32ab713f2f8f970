"""Compile an OpenMM System into a :class:`TorchForceField`."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import openmm

from .bonded import HarmonicAngleTerm, HarmonicBondTerm, PeriodicTorsionTerm
from .custom_gb import read_custom_gb
from .errors import UnsupportedForceError
from .forcefield import TorchForceField
from .implicit import GeneralizedBornParameters, GeneralizedBornTerm
from .nonbonded import CoulombLennardJonesTerm
from .pairs import PairList
from .term import ForceTerm

if TYPE_CHECKING:
    from ...molecule.molecule import Molecule

__all__ = ["SUPPORTED_FORCES", "IGNORED_FORCES", "compile_system"]

_BUILDERS: dict[str, Callable[[openmm.Force, PairList], ForceTerm]] = {
    "HarmonicBondForce": lambda force, pairs: HarmonicBondTerm.from_force(force),
    "HarmonicAngleForce": lambda force, pairs: HarmonicAngleTerm.from_force(force),
    "PeriodicTorsionForce": lambda force, pairs: PeriodicTorsionTerm.from_force(force),
    "NonbondedForce": CoulombLennardJonesTerm.from_force,
    "GBSAOBCForce": lambda force, pairs: GeneralizedBornTerm(
        GeneralizedBornParameters.from_gbsaobc(force), pairs
    ),
    "CustomGBForce": lambda force, pairs: GeneralizedBornTerm(read_custom_gb(force), pairs),
}

#: OpenMM force classes the torch force field reproduces.
SUPPORTED_FORCES: tuple[str, ...] = tuple(_BUILDERS)
#: OpenMM force classes without energy, skipped.
IGNORED_FORCES: tuple[str, ...] = ("CMMotionRemover",)


def compile_system(
    system: openmm.System,
    temperature: float,
    max_batch: int | None = None,
    molecule: Molecule | None = None,
) -> TorchForceField:
    """Compile the forces of an OpenMM System into a batched torch energy.

    Arguments:
        system: The System (positions in nm, energies in kJ/mol). Constraints do not change
            energies and are ignored; no virtual sites.
        temperature: T in K of the reduced energies u = U/(k_B T).
        max_batch: Chunk size of batched evaluation (default: from a 1 GiB memory budget).
        molecule: The molecule the System belongs to, kept as the energy's :attr:`molecule`.

    Returns:
        The :class:`TorchForceField`, parameters in float64 on the CPU.

    Raises:
        UnsupportedForceError: For any force other than :data:`SUPPORTED_FORCES` and
            :data:`IGNORED_FORCES`, a cutoff or periodic boundaries, or virtual sites; the
            message names the force.
    """
    n_atoms = system.getNumParticles()
    if any(system.isVirtualSite(a) for a in range(n_atoms)):
        raise UnsupportedForceError(
            "the System has virtual sites; the torch force field does not support them (use the "
            "OpenMM bridge)"
        )
    pairs = PairList(n_atoms)
    terms = []
    for force in system.getForces():
        name = type(force).__name__
        if name in IGNORED_FORCES:
            continue
        if name not in _BUILDERS:
            raise UnsupportedForceError(
                f"the System holds a {name}, which the torch force field does not support "
                f"(supported: {', '.join(SUPPORTED_FORCES)}); use the OpenMM bridge"
            )
        if force.usesPeriodicBoundaryConditions():
            raise UnsupportedForceError(
                f"{name} uses periodic boundary conditions; the torch force field does not "
                "support them "
                "(use the OpenMM bridge)"
            )
        terms.append(_BUILDERS[name](force, pairs))
    uses_pairs = any(term.uses_pairs for term in terms)
    return TorchForceField(
        terms, n_atoms, temperature, pairs if uses_pairs else None, max_batch, molecule=molecule
    )

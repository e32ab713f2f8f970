"""A torch force field compiled from an OpenMM System, exact against OpenMM's Reference platform.

``compile_system(system, temperature)`` reads HarmonicBondForce, HarmonicAngleForce,
PeriodicTorsionForce, NonbondedForce (NoCutoff), GBSAOBCForce and the CustomGBForce of OpenMM's
``implicit/*.xml`` files into a :class:`TorchForceField`, an :class:`~boltzgen.energy.base.Energy`
over positions ``(batch, N, 3)`` in nm. Anything else raises :class:`UnsupportedForceError`;
:func:`energy_for_molecule` then falls back to the OpenMM bridge.
"""

from __future__ import annotations

from .compile import IGNORED_FORCES, SUPPORTED_FORCES, compile_system
from .errors import UnsupportedForceError
from .exactness import ExactnessReport, check_exactness, probe_configurations
from .forcefield import TorchForceField
from .molecule_energy import energy_for_molecule

__all__ = [
    "IGNORED_FORCES",
    "SUPPORTED_FORCES",
    "ExactnessReport",
    "TorchForceField",
    "UnsupportedForceError",
    "check_exactness",
    "compile_system",
    "energy_for_molecule",
    "probe_configurations",
]

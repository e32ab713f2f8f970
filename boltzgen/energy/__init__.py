"""Targets: the :class:`Energy` interface and its implementations.

The force field and the OpenMM bridge (which import OpenMM) load on first access.
"""

from __future__ import annotations

from .._lazy import lazy_exports
from .base import Energy
from .logprob import LogProbEnergy
from .toy import DoubleWell, GaussianMixture2D, ManyWell

#: The OpenMM-backed energies, imported on first use.
__getattr__ = lazy_exports(
    __name__,
    {
        "TorchForceField": ".forcefield",
        "compile_system": ".forcefield",
        "energy_for_molecule": ".forcefield",
        "OpenMMEnergy": ".openmm_bridge",
        "ResultDeadline": ".openmm_bridge",
    },
)

__all__ = [
    "Energy",
    "LogProbEnergy",
    "GaussianMixture2D",
    "DoubleWell",
    "ManyWell",
    "TorchForceField",
    "compile_system",
    "energy_for_molecule",
    "OpenMMEnergy",
    "ResultDeadline",
]

"""Targets: the :class:`Energy` interface and its implementations."""

from __future__ import annotations

from .base import Energy
from .forcefield import TorchForceField, compile_system, energy_for_molecule
from .openmm_bridge import OpenMMEnergy
from .teacher import LogProbEnergy
from .toy import DoubleWell, GaussianMixture2D, ManyWell

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
]

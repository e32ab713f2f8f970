"""boltzgen: Boltzmann generators for molecules and lattice models."""

from __future__ import annotations

from ._version import __version__
from .energy.base import Energy
from .errors import BoltzgenError

__all__ = ["__version__", "Energy", "BoltzgenError"]

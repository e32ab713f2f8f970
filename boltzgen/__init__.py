"""boltzgen: Boltzmann generators for molecules and lattice models.

The public API:

* :class:`Energy` — the target interface (reduced energies u(x) = U(x)/kT, batch first);
* :class:`Molecule` — a molecule with force field, solvent and temperature (OpenMM);
* :class:`CouplingFlow`, :class:`MolecularFlow` — spline coupling flows, and the
  internal-coordinate flow over a molecule's Cartesian positions;
* :class:`Trainer`, :class:`TrainSettings`, :class:`ReverseKL`, :class:`ForwardKL`,
  :class:`TemperatureAnnealing` — objectives and the training loop;
* :class:`BoltzgenError` — the one exception for user errors.

Everything else lives in the sub-packages (``boltzgen.energy``, ``boltzgen.flows``,
``boltzgen.trainers``, ``boltzgen.diagnostics``, ``boltzgen.models``).
"""

from __future__ import annotations

from ._version import __version__
from .energy.base import Energy
from .errors import BoltzgenError
from .flows import CouplingFlow
from .molecular_flow import MolecularFlow
from .molecule import Molecule
from .trainers import ForwardKL, ReverseKL, Trainer, TrainSettings
from .trainers.annealing import TemperatureAnnealing

__all__ = [
    "__version__",
    "BoltzgenError",
    "Energy",
    "Molecule",
    "CouplingFlow",
    "MolecularFlow",
    "Trainer",
    "TrainSettings",
    "ReverseKL",
    "ForwardKL",
    "TemperatureAnnealing",
]

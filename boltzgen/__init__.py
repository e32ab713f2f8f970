"""boltzgen: Boltzmann generators for molecules and lattice models.

The public API:

* :class:`Energy` — the target interface (reduced energies u(x) = U(x)/kT, batch first);
* :class:`Model` — the model contract (sample, log_prob, sample_and_log_prob);
* :class:`Molecule` — a molecule with force field, solvent and temperature (OpenMM), and
  :func:`energy_for_molecule` — its energy (the torch force field, or the OpenMM bridge);
* :class:`CouplingFlow`, :class:`MolecularFlow` — spline coupling flows, and the
  internal-coordinate flow over a molecule's Cartesian positions;
* :class:`Trainer`, :class:`TrainSettings`, :class:`ReverseKL`, :class:`ForwardKL`,
  :class:`TemperatureAnnealing`, :class:`AnnealingSettings` — objectives, the training loop and
  the TA-BG protocol;
* :func:`train_run`, :func:`load_run` — a config's run directory, trained and read back;
* :class:`BoltzgenError` — the one exception for user errors.

Everything else lives in the sub-packages (``boltzgen.energy``, ``boltzgen.flows``,
``boltzgen.trainers``, ``boltzgen.diagnostics``, ``boltzgen.models``, ``boltzgen.molecule``,
``boltzgen.samplers``, ``boltzgen.md``, ``boltzgen.workflow``); ``docs/architecture.md`` maps them.
"""

from __future__ import annotations

from ._lazy import lazy_exports
from ._version import __version__
from .errors import BoltzgenError

#: Every export but the version and the error loads its module on first access, so that
#: ``import boltzgen`` imports neither torch's heavier parts nor OpenMM and mdtraj.
__getattr__ = lazy_exports(
    __name__,
    {
        "Energy": ".energy.base",
        "Model": ".models.base",
        "Molecule": ".molecule.molecule",
        "energy_for_molecule": ".energy.forcefield",
        "CouplingFlow": ".flows.coupling",
        "MolecularFlow": ".flows.molecular",
        "Trainer": ".trainers.loop",
        "TrainSettings": ".trainers.loop",
        "ReverseKL": ".trainers.reverse_kl",
        "ForwardKL": ".trainers.forward_kl",
        "TemperatureAnnealing": ".trainers.annealing",
        "AnnealingSettings": ".trainers.annealing",
        "train_run": ".workflow.runs",
        "load_run": ".workflow.runs",
    },
)

__all__ = [
    "__version__",
    "BoltzgenError",
    "Energy",
    "Model",
    "Molecule",
    "energy_for_molecule",
    "CouplingFlow",
    "MolecularFlow",
    "Trainer",
    "TrainSettings",
    "ReverseKL",
    "ForwardKL",
    "TemperatureAnnealing",
    "AnnealingSettings",
    "train_run",
    "load_run",
]

"""Batched Langevin MD and temperature replica exchange on the torch force field.

- :mod:`.integrator`: OpenMM's LangevinMiddle scheme over R replicas at once.
- :mod:`.constraints`: SHAKE/RATTLE bond constraints, vectorised.
- :mod:`.replica_exchange`: neighbour swaps on a temperature ladder
  (:func:`boltzgen.samplers.ladders.geometric_ladder`).
- :mod:`.simulation`: a seeded, checkpointable replica-exchange run of a molecule.
- :mod:`.recording`: run folders with checkpoints, frame chunks and resume.
- :mod:`.statistics`: integrated autocorrelation times and block standard errors.
- :mod:`.datasets`: reference datasets (train/val/test splits of MD frames) on disk.
- :mod:`.openmm_langevin`: OpenMM's own LangevinMiddle integrator, the peer that tests and
  benchmarks compare with.
"""

from __future__ import annotations

from .constraints import BondConstraints
from .integrator import LangevinMiddleIntegrator, MDState
from .recording import MDRun
from .replica_exchange import ReplicaExchange, exchange_log_acceptance
from .simulation import ReplicaExchangeMD, system_masses
from .statistics import block_standard_error, integrated_autocorrelation_time

__all__ = [
    "BondConstraints",
    "LangevinMiddleIntegrator",
    "MDRun",
    "MDState",
    "ReplicaExchange",
    "ReplicaExchangeMD",
    "block_standard_error",
    "exchange_log_acceptance",
    "integrated_autocorrelation_time",
    "system_masses",
]

"""Batched Langevin MD and temperature replica exchange on the torch force field.

- :mod:`.integrator`: OpenMM's LangevinMiddle scheme over R replicas at once.
- :mod:`.constraints`: SHAKE/RATTLE bond constraints, vectorised.
- :mod:`.replica_exchange`: geometric ladders and neighbour swaps.
- :mod:`.simulation`: a seeded, checkpointable replica-exchange run of a molecule.
- :mod:`.recording`: run folders with checkpoints, frame chunks and resume.
- :mod:`.statistics`: integrated autocorrelation times and block standard errors.
"""

from __future__ import annotations

from .constraints import BondConstraints
from .integrator import LangevinMiddleIntegrator, MDState
from .recording import MDRun
from .replica_exchange import ReplicaExchange, exchange_log_acceptance, geometric_ladder
from .simulation import ReplicaExchangeMD, resolve_device, system_masses
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
    "geometric_ladder",
    "integrated_autocorrelation_time",
    "resolve_device",
    "system_masses",
]

"""Throughput of Langevin MD: OpenMM's integrator, one replica per Context, vs batched torch MD.

Both sides run the same scheme (OpenMM's LangevinMiddle, ``V R O R``; SHAKE/RATTLE for a System
with constraints) at the molecule's temperature with the same time step and friction. OpenMM runs
one trajectory per Context with ``integrator.step(n)`` on its CPU platform (one thread) and, when
present, its CUDA platform; ours runs R replicas at once through
:class:`~boltzgen.md.ReplicaExchangeMD` on the torch force field. Rates are replica-steps per
second: one energy+force evaluation per replica and step.
"""

from __future__ import annotations

import numpy as np
import openmm
import torch

from ..energy.forcefield.benchmark import Measurement, measure_rate, openmm_platforms
from .openmm_langevin import langevin_context
from .simulation import ReplicaExchangeMD

__all__ = ["benchmark_md", "openmm_platforms", "time_openmm_md", "time_torch_md"]


def time_openmm_md(
    system: openmm.System,
    positions: np.ndarray,
    temperature: float,
    platform: str,
    seconds: float,
    timestep: float = 0.001,
    friction: float = 1.0,
    steps_per_call: int = 100,
) -> tuple[float, float]:
    """MD steps/s of one OpenMM ``LangevinMiddleIntegrator`` trajectory (``Threads=1`` on the CPU
    platform), and the seconds of the first ``steps_per_call`` steps (Context creation
    excluded)."""
    context, integrator = langevin_context(
        system, positions, temperature, timestep, friction, platform=platform
    )

    def step() -> None:
        integrator.step(steps_per_call)
        context.getState(getEnergy=True)  # the queue is drained: the steps have run

    return measure_rate(step, steps_per_call, seconds)


def time_torch_md(
    molecule: object,
    replicas: int,
    device: torch.device,
    dtype: torch.dtype,
    seconds: float,
    timestep: float = 0.001,
    friction: float = 1.0,
    steps_per_call: int = 10,
    compiled: bool = False,
) -> tuple[float, float]:
    """Replica-steps/s of ``replicas`` chains of batched Langevin MD at the molecule's temperature,
    and the seconds of the first ``steps_per_call`` steps (includes any compilation)."""
    simulation = ReplicaExchangeMD.for_molecule(
        molecule,
        [molecule.temperature],
        replicas,
        energy="torch-compile" if compiled else "torch",
        timestep=timestep,
        friction=friction,
        device=device,
        dtype=dtype,
    )
    simulation.start(np.asarray(molecule.positions))
    synchronize = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    return measure_rate(
        lambda: simulation.advance(steps_per_call), steps_per_call * replicas, seconds, synchronize
    )


def benchmark_md(
    molecule: object,
    cpu_replicas: tuple[int, ...] = (64, 1024),
    gpu_replicas: tuple[int, ...] = (1_000, 10_000, 100_000),
    seconds: float = 2.0,
    timestep: float = 0.001,
    compiled: bool = False,
) -> list[Measurement]:
    """All MD throughput measurements of one molecule (a :class:`~boltzgen.molecule.Molecule`).

    Rows: OpenMM LangevinMiddle on each platform of :func:`openmm_platforms` (backend
    ``openmm-langevin``, 1 replica); ours in float32 on the CPU at ``cpu_replicas`` (and through
    ``torch.compile`` at the largest, when ``compiled``), and on the GPU at ``gpu_replicas`` when
    CUDA is available. ``evaluations_per_second`` holds replica-steps/s.
    """
    positions = np.asarray(molecule.positions)
    rows = []
    for platform in openmm_platforms():
        rate = time_openmm_md(
            molecule.system, positions, molecule.temperature, platform, seconds, timestep
        )
        rows.append(
            Measurement(molecule.name, "openmm-langevin", platform.lower(), "mixed", 1, 1, *rate)
        )
    runs = [("torch", torch.device("cpu"), r) for r in cpu_replicas]
    if compiled:
        runs.append(("torch-compile", torch.device("cpu"), max(cpu_replicas)))
    if torch.cuda.is_available():
        runs += [("torch", torch.device("cuda"), r) for r in gpu_replicas]
        runs += [("torch-compile", torch.device("cuda"), r) for r in gpu_replicas if compiled]
    for backend, device, replicas in runs:
        rate = time_torch_md(
            molecule,
            replicas,
            device,
            torch.float32,
            seconds,
            timestep,
            compiled=backend == "torch-compile",
        )
        rows.append(
            Measurement(molecule.name, backend, device.type, "float32", replicas, 1, *rate)
        )
    return rows

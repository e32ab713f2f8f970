"""OpenMM's own LangevinMiddleIntegrator on a System: the reference our batched MD is checked
against."""

from __future__ import annotations

import time

import numpy as np
import openmm
from openmm import unit

__all__ = ["langevin_context", "openmm_langevin_energies"]


def langevin_context(
    system: openmm.System,
    positions: np.ndarray,
    temperature: float,
    timestep: float = 0.001,
    friction: float = 1.0,
    seed: int = 1,
    platform: str = "CPU",
) -> tuple[openmm.Context, openmm.LangevinMiddleIntegrator]:
    """An OpenMM ``Context`` with a seeded ``LangevinMiddleIntegrator`` (K, ps, 1/ps), positions
    ``(N, 3)`` nm set and Maxwell-Boltzmann velocities drawn; the CPU platform runs one thread."""
    integrator = openmm.LangevinMiddleIntegrator(
        temperature * unit.kelvin, friction / unit.picosecond, timestep * unit.picosecond
    )
    integrator.setRandomNumberSeed(seed)
    properties = {"Threads": "1"} if platform == "CPU" else {}
    context = openmm.Context(
        system, integrator, openmm.Platform.getPlatformByName(platform), properties
    )
    context.setPositions(positions)
    context.setVelocitiesToTemperature(temperature * unit.kelvin, seed)
    return context, integrator


def openmm_langevin_energies(
    system: openmm.System,
    positions: np.ndarray,
    temperature: float,
    n_runs: int,
    equilibration_steps: int,
    n_reports: int,
    report_every: int,
    timestep: float = 0.001,
    friction: float = 1.0,
    seed: int = 1,
    platform: str = "CPU",
) -> tuple[np.ndarray, float]:
    """Potential energies of ``n_runs`` independent LangevinMiddle runs, one after the other.

    Arguments:
        system: The OpenMM System (not modified).
        positions: Start positions ``(N, 3)`` nm.
        temperature: K.
        n_runs: Independent runs (seeds ``seed``, ``seed + 1``, ...).
        equilibration_steps: Steps discarded at the start of each run.
        n_reports, report_every: Energies recorded every ``report_every`` steps.
        timestep: ps. friction: 1/ps.
        platform: OpenMM platform name (``"CPU"`` runs on one thread here).

    Returns:
        ``(n_reports, n_runs)`` potential energies in kJ/mol, and MD steps per second of the
        production part (energy reads included).
    """
    energies = np.empty((n_reports, n_runs))
    elapsed = 0.0
    for run in range(n_runs):
        context, integrator = langevin_context(
            system, positions, temperature, timestep, friction, seed + run, platform
        )
        integrator.step(equilibration_steps)
        started = time.perf_counter()
        for report in range(n_reports):
            integrator.step(report_every)
            state = context.getState(getEnergy=True)
            energies[report, run] = state.getPotentialEnergy().value_in_unit(
                unit.kilojoule_per_mole
            )
        elapsed += time.perf_counter() - started
        del context, integrator
    return energies, n_runs * n_reports * report_every / elapsed

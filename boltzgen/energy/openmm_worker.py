"""One OpenMM ``Context`` that evaluates batches, and the loop of a bridge worker process.

This file imports only NumPy and OpenMM. Worker processes of
:class:`~boltzgen.energy.openmm_bridge.OpenMMEnergy` run it as a script (``runpy.run_path``
with ``run_name`` :data:`WORKER_RUN_NAME`), so that a spawned worker starts in about a second
instead of importing torch and the rest of boltzgen.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import openmm
from openmm import unit

__all__ = ["ContextEvaluator", "serve", "WORKER_RUN_NAME"]

#: ``run_name`` under which a worker process executes this file.
WORKER_RUN_NAME = "__boltzgen_openmm_worker__"


class ContextEvaluator:
    """Loops a batch of configurations through one OpenMM ``Context``.

    Arguments:
        system_xml: The ``System``, serialized by ``openmm.XmlSerializer``.
        platform: An available OpenMM platform name; ``CPU`` runs one thread per context.
    """

    def __init__(self, system_xml: str, platform: str) -> None:
        system = openmm.XmlSerializer.deserialize(system_xml)
        properties = {"Threads": "1"} if platform == "CPU" else {}
        self._context = openmm.Context(
            system,
            openmm.VerletIntegrator(0.001),
            openmm.Platform.getPlatformByName(platform),
            properties,
        )

    def evaluate(self, positions: np.ndarray, forces: bool) -> tuple[np.ndarray, np.ndarray]:
        """Energies (kJ/mol, shape ``(batch,)``) and forces (kJ/mol/nm, ``(batch, N, 3)``).

        Arguments:
            positions: float64, shape ``(batch, N, 3)``, in nm.
            forces: Whether to compute forces; if not, the forces array is ``(batch, 0, 3)``.

        Configurations with non-finite coordinates, or for which OpenMM fails or returns a
        non-finite energy, get energy +inf and zero force.
        """
        energies = np.full(len(positions), np.inf)
        force_array = np.zeros(positions.shape if forces else (len(positions), 0, 3))
        finite = np.isfinite(positions).all(axis=(1, 2))
        for index in np.flatnonzero(finite):
            try:
                self._context.setPositions(positions[index])
                state = self._context.getState(getEnergy=True, getForces=forces)
            except openmm.OpenMMException:
                continue
            energy = state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
            if not np.isfinite(energy):
                continue
            energies[index] = energy
            if forces:
                force_array[index] = state.getForces(asNumpy=True).value_in_unit(
                    unit.kilojoule_per_mole / unit.nanometer
                )
        return energies, force_array


def serve(connection: Any, system_xml: str, platform: str) -> None:
    """Body of a worker process: build a Context, then answer requests until told to stop.

    Protocol on ``connection``: first sends ``("ready", None)`` or ``("error", message)``;
    then for each request ``(positions, forces)`` sends ``("result", (energies, forces))``;
    ``None`` or a closed pipe ends the loop.
    """
    try:
        evaluator = ContextEvaluator(system_xml, platform)
    except BaseException as error:  # reported to the parent, which raises it
        connection.send(("error", f"{type(error).__name__}: {error}"))
        return
    connection.send(("ready", None))
    while True:
        try:
            request = connection.recv()
        except (EOFError, OSError):  # the parent is gone
            return
        if request is None:
            return
        connection.send(("result", evaluator.evaluate(*request)))


if __name__ == WORKER_RUN_NAME:
    serve(*globals()["WORKER_ARGUMENTS"])

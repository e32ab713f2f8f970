"""Pick the energy of a molecule: the torch force field, or the OpenMM bridge as fallback."""

from __future__ import annotations

import warnings
from typing import Any, Literal

from ...errors import BoltzgenError
from ..base import Energy
from ..openmm_bridge import OpenMMEnergy
from .compile import compile_system
from .errors import UnsupportedForceError

__all__ = ["energy_for_molecule"]


def energy_for_molecule(molecule: Any, prefer: Literal["torch", "openmm"] = "torch") -> Energy:
    """The reduced energy of a molecule at its own temperature.

    Arguments:
        molecule: A :class:`boltzgen.molecule.Molecule` (anything with ``.system``,
            ``.temperature`` in K and ``.name``).
        prefer: ``"torch"``: the compiled torch force field, falling back (with a one-line
            warning) to the OpenMM bridge when the System holds an unsupported force;
            ``"openmm"``: the OpenMM bridge (one process, CPU platform).

    Returns:
        An :class:`Energy` over positions ``(batch, N, 3)`` in nm.
    """
    if prefer not in ("torch", "openmm"):
        raise BoltzgenError(f"prefer must be 'torch' or 'openmm', got {prefer!r}")
    if prefer == "torch":
        try:
            return compile_system(molecule.system, molecule.temperature)
        except UnsupportedForceError as error:
            warnings.warn(f"{molecule.name}: using the OpenMM bridge: {error}", stacklevel=2)
    return OpenMMEnergy(molecule.system, molecule.temperature)

"""Pick the energy of a molecule: the torch force field, or the OpenMM bridge as fallback."""

from __future__ import annotations

import warnings
from typing import Any, Literal

from ...errors import BoltzgenError
from ..base import Energy
from ..openmm_bridge import OpenMMEnergy
from .compile import compile_system
from .errors import UnsupportedForceError

__all__ = ["ENERGY_CHOICES", "energy_for_molecule"]


#: The energies a molecule target can ask for (``[target] energy`` in a config).
ENERGY_CHOICES = ("torch", "torch-autograd", "torch-compile", "openmm")


def energy_for_molecule(
    molecule: Any, prefer: Literal["torch", "torch-autograd", "torch-compile", "openmm"] = "torch"
) -> Energy:
    """The reduced energy of a molecule at its own temperature.

    Arguments:
        molecule: A :class:`boltzgen.molecule.Molecule` (anything with ``.system``,
            ``.temperature`` in K and ``.name``).
        prefer: ``"torch"``: the compiled torch force field, falling back (with a one-line
            warning) to the OpenMM bridge when the System holds an unsupported force; its pair
            terms differentiate with hand-written derivatives (first derivatives only);
            ``"torch-autograd"``: the same force field differentiated by autograd throughout (the
            reference path, slower, with second derivatives); ``"torch-compile"``: the
            autograd path through ``torch.compile`` (fused kernels; each new batch shape
            compiles first, 30-80 s on a small CPU, cached on disk by torch); ``"openmm"``:
            the OpenMM bridge (one process, CPU platform).

    Returns:
        An :class:`Energy` over positions ``(batch, N, 3)`` in nm.
    """
    if prefer not in ENERGY_CHOICES:
        raise BoltzgenError(
            f"the energy must be one of {', '.join(ENERGY_CHOICES)}; got {prefer!r}"
        )
    if prefer != "openmm":
        try:
            force_field = compile_system(molecule.system, molecule.temperature, molecule=molecule)
            if prefer == "torch-compile":
                return force_field.enable_compile()
            return force_field.use_analytic_gradients(prefer == "torch")
        except UnsupportedForceError as error:
            warnings.warn(f"{molecule.name}: using the OpenMM bridge: {error}", stacklevel=2)
    return OpenMMEnergy.from_molecule(molecule)

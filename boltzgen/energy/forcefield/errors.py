"""The error raised for an OpenMM System the torch force field cannot reproduce exactly."""

from __future__ import annotations

from ...errors import BoltzgenError

__all__ = ["UnsupportedForceError"]


class UnsupportedForceError(BoltzgenError):
    """The System holds a force (or a force setting) that :func:`compile_system` does not support.

    The message names the force. Callers can catch it and fall back to the OpenMM bridge, as
    :func:`~boltzgen.energy.forcefield.energy_for_molecule` does.
    """

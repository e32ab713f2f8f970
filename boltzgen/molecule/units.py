"""Physical constants in OpenMM's units (nm, ps, kJ/mol, K), read from :mod:`openmm.unit`."""

from __future__ import annotations

from openmm import unit

__all__ = ["BOLTZMANN_CONSTANT"]

#: k_B as the molar gas constant, kJ/(mol K) (OpenMM's ``MOLAR_GAS_CONSTANT_R``).
BOLTZMANN_CONSTANT: float = unit.MOLAR_GAS_CONSTANT_R.value_in_unit(
    unit.kilojoule_per_mole / unit.kelvin
)

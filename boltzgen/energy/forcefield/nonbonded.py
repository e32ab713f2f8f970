"""OpenMM's NonbondedForce without cutoff: Coulomb + Lennard-Jones over all pairs.

E = sum_{i<j} k_e q_i q_j / r + 4 eps_ij [(sigma_ij/r)^12 - (sigma_ij/r)^6], Lorentz-Berthelot
combination sigma_ij = (sigma_i + sigma_j)/2, eps_ij = sqrt(eps_i eps_j); the System's exceptions
(scaled 1-4 pairs, and exclusions with zero parameters) replace the combined pair parameters.
"""

from __future__ import annotations

import numpy as np
import openmm
import openmm.unit as unit
from torch import Tensor

from .analytic import AnalyticPairEnergy
from .errors import UnsupportedForceError
from .pairs import PairList
from .term import ForceTerm, column

__all__ = ["COULOMB_CONSTANT", "CoulombLennardJonesTerm"]

#: k_e = 1/(4 pi eps0) in kJ mol^-1 nm e^-2, the value OpenMM's NonbondedForce and GBSAOBCForce
#: use.
COULOMB_CONSTANT = 138.93545764438198


class CoulombLennardJonesTerm(ForceTerm):
    """Coulomb and Lennard-Jones energy of all pairs i < j with per-pair parameters.

    Arguments:
        charge_products: k_e q_i q_j per pair (exceptions applied), shape ``(P, 1)``,
            kJ/mol nm.
        sigma: sigma_ij per pair, shape ``(P, 1)``, nm.
        epsilon: eps_ij per pair, shape ``(P, 1)``, kJ/mol.

    Pairs are those of :class:`PairList` for the molecule's atom count.
    """

    force_name = "NonbondedForce"
    uses_pairs = True

    def __init__(self, charge_products: Tensor, sigma: Tensor, epsilon: Tensor) -> None:
        super().__init__()
        self.register_buffer("charge_products", charge_products)
        self.register_buffer("sigma6", sigma.pow(6))
        self.register_buffer("four_epsilon", 4.0 * epsilon)

    @classmethod
    def from_force(cls, force: openmm.NonbondedForce, pairs: PairList) -> CoulombLennardJonesTerm:
        """Read charges, LJ parameters and exceptions of a ``NonbondedForce`` (NoCutoff only)."""
        if force.getNonbondedMethod() != openmm.NonbondedForce.NoCutoff:
            raise UnsupportedForceError(
                "NonbondedForce uses a cutoff or periodic boundaries; the torch force field "
                "supports NoCutoff only (use the OpenMM bridge)"
            )
        if force.getNumParticleParameterOffsets() or force.getNumExceptionParameterOffsets():
            raise UnsupportedForceError(
                "NonbondedForce has parameter offsets; the torch force field does not support "
                "them (use the OpenMM bridge)"
            )
        rows = [force.getParticleParameters(a) for a in range(force.getNumParticles())]
        q = np.array([c.value_in_unit(unit.elementary_charge) for c, _, _ in rows])
        s = np.array([s.value_in_unit(unit.nanometer) for _, s, _ in rows])
        e = np.array([e.value_in_unit(unit.kilojoule_per_mole) for _, _, e in rows])
        i, j = pairs.first.numpy(), pairs.second.numpy()
        charge_products = COULOMB_CONSTANT * q[i] * q[j]
        sigma, epsilon = 0.5 * (s[i] + s[j]), np.sqrt(e[i] * e[j])
        exceptions = [force.getExceptionParameters(k) for k in range(force.getNumExceptions())]
        if exceptions:
            where = pairs.index(
                np.array([r[0] for r in exceptions]), np.array([r[1] for r in exceptions])
            )
            charge_products[where] = [
                COULOMB_CONSTANT * r[2].value_in_unit(unit.elementary_charge**2)
                for r in exceptions
            ]
            sigma[where] = [r[3].value_in_unit(unit.nanometer) for r in exceptions]
            epsilon[where] = [r[4].value_in_unit(unit.kilojoule_per_mole) for r in exceptions]
        return cls(column(charge_products), column(sigma), column(epsilon))

    def forward(self, xt: Tensor, pair_distances: Tensor | None) -> Tensor:
        if self.uses_analytic_gradient(pair_distances):
            return AnalyticPairEnergy.apply(pair_distances, self)
        inverse = pair_distances.reciprocal()
        inverse2 = inverse * inverse
        lj6 = self.parameter("sigma6", xt) * (inverse2 * inverse2 * inverse2)
        lennard_jones = self.parameter("four_epsilon", xt) * lj6 * (lj6 - 1.0)
        return (self.parameter("charge_products", xt) * inverse + lennard_jones).sum(0)

    def energy_and_gradient(self, r: Tensor) -> tuple[Tensor, Tensor]:
        """Energies ``(batch,)`` and dE/dr ``(P, batch)`` of distances ``r`` ``(P, batch)``:
        dE/dr = -(1/r) [k_e q_i q_j / r + 4 eps (12 (sigma/r)^12 - 6 (sigma/r)^6)]."""
        inverse = r.reciprocal()
        lj6 = inverse * inverse
        lj6.mul_(lj6).mul_(inverse * inverse).mul_(self.parameter("sigma6", r))
        four_epsilon = self.parameter("four_epsilon", r)
        coulomb = self.parameter("charge_products", r) * inverse
        energy = (lj6 - 1.0).mul_(lj6).mul_(four_epsilon).add_(coulomb).sum(0)
        # 4 eps (12 lj6^2 - 6 lj6) = 4 eps lj6 (12 lj6 - 6)
        gradient = (12.0 * lj6 - 6.0).mul_(lj6).mul_(four_epsilon).add_(coulomb)
        return energy, gradient.mul_(inverse).neg_()

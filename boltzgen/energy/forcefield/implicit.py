r"""Generalized Born implicit solvent: OpenMM's GBSAOBCForce and the HCT/OBC/GBn CustomGBForces.

All models share one form (nm, kJ/mol). With offset radii rho~_i = rho_i - offset and scaled
radii s_j = S_j rho~_j, the descreening integral of atom i by atom j != i is, where
rho~_i <= r + s_j (else 0), with U = r + s_j and L = max(rho~_i, |r - s_j|),

    I_ij = 0.5 [1/L - 1/U + (r/4 - s_j^2/(4r)) (1/U^2 - 1/L^2) + ln(L/U)/(2r)]

(``GBSAOBCForce`` adds 1/rho~_i - 1/L where rho~_i < s_j - r), plus for GBn/GBn2 a neck term
neck_scale * m0_ij / (1 + 100 (r - d0_ij)^2 + 3e5 (r - d0_ij)^6) where r < rho_i + rho_j +
neck_cut,
with m0 and d0 read from the force's tabulated functions. With I_i = sum_j I_ij and
psi_i = rho~_i I_i, the Born radius is B_i = 1/(1/rho~_i - tanh(c1 psi + c2 psi^2 + c3
psi^3)/rho_i)
(OBC1 c = (0.8, 0, 2.909125), OBC2 (1, -0.8, 4.85), GBn2 per atom) or, for HCT,
B_i = 1/(1/rho~_i - I_i). The energy is

    E = -k_e/2 sum_i (1/eps_in - e^{-kappa B_i}/eps_out) q_i^2 / B_i
        - k_e sum_{i<j} (1/eps_in - e^{-kappa f_ij}/eps_out) q_i q_j / f_ij
        + sum_i gamma_sa (rho_i + probe)^2 (rho_i / B_i)^6          (ACE surface term, optional)

with f_ij = sqrt(r^2 + B_i B_j exp(-r^2 / (4 B_i B_j))).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import openmm
import openmm.unit as unit
import torch
from torch import Tensor

from .analytic import AnalyticPairEnergy
from .errors import UnsupportedForceError
from .nonbonded import COULOMB_CONSTANT
from .pairs import PairList
from .term import ForceTerm, column

__all__ = ["NeckIntegral", "GeneralizedBornParameters", "GeneralizedBornTerm"]


def _step(x: Tensor) -> Tensor:
    """The step function [x > 0] as 0/1 in x's dtype, without gradient. Arithmetic (sign,
    clamp), because comparisons and ``torch.where`` are several times slower than plain
    elementwise operations on the CPU."""
    return x.detach().sign().clamp_(min=0.0)


#: Offset rho - rho~ and ACE probe radius that OpenMM's GBSAOBCForce hard-codes, nm.
_OBC_OFFSET = 0.009
_PROBE_RADIUS = 0.14
#: tanh coefficients (c1, c2, c3) of GBSAOBCForce (the OBC2 model).
_OBC2_COEFFICIENTS = (1.0, -0.8, 4.85)


@dataclass(frozen=True)
class NeckIntegral:
    """The neck correction of GBn/GBn2 (Mongan et al. 2007).

    Attributes:
        scale: Neck scale factor.
        cutoff: Extra distance beyond rho_i + rho_j within which the neck term applies, nm.
        radius_index: Per-atom row/column into the tables, shape ``(N,)``.
        m0: Peak heights, ``m0[index_i, index_j]``, shape ``(n, n)``, 1/nm.
        d0: Peak positions, same indexing and shape, nm.
    """

    scale: float
    cutoff: float
    radius_index: np.ndarray
    m0: np.ndarray
    d0: np.ndarray


@dataclass(frozen=True)
class GeneralizedBornParameters:
    """Everything a generalized Born model reads from the System.

    Attributes:
        force_name: The OpenMM class name of the force (``GBSAOBCForce`` or ``CustomGBForce``).
        charge: Per-atom charges q, shape ``(N,)``, e.
        offset_radius: rho~ = rho - offset, shape ``(N,)``, nm.
        scaled_radius: s = S rho~, shape ``(N,)``, nm.
        offset: rho - rho~, nm.
        tanh_coefficients: (c1, c2, c3) per atom, shape ``(N, 3)``; ``None`` for HCT.
        solute_dielectric, solvent_dielectric: eps_in and eps_out.
        kappa: Debye screening parameter, 1/nm.
        coulomb_constant: k_e, kJ mol^-1 nm e^-2 (CustomGB expressions hard-code 138.935485).
        surface_factor: gamma_sa of the ACE term, kJ/mol/nm^2; ``None`` without surface term.
        probe_radius: Solvent probe radius of the ACE term, nm.
        neck: The GBn/GBn2 neck correction, or ``None``.
        inner_correction: Whether I_ij gains 1/rho~_i - 1/L inside a larger sphere
            (OpenMM's GBSAOBCForce does, the CustomGB expressions do not).
    """

    force_name: str
    charge: np.ndarray
    offset_radius: np.ndarray
    scaled_radius: np.ndarray
    offset: float
    tanh_coefficients: np.ndarray | None
    solute_dielectric: float
    solvent_dielectric: float
    kappa: float
    coulomb_constant: float
    surface_factor: float | None
    probe_radius: float
    neck: NeckIntegral | None
    inner_correction: bool

    @classmethod
    def from_gbsaobc(cls, force: openmm.GBSAOBCForce) -> GeneralizedBornParameters:
        """Read OpenMM's native ``GBSAOBCForce`` (OBC2 model, ACE surface term)."""
        if force.getNonbondedMethod() != openmm.GBSAOBCForce.NoCutoff:
            raise UnsupportedForceError(
                "GBSAOBCForce uses a cutoff; the torch force field supports NoCutoff only "
                "(use the OpenMM bridge)"
            )
        rows = [force.getParticleParameters(a) for a in range(force.getNumParticles())]
        charge = np.array([q.value_in_unit(unit.elementary_charge) for q, _, _ in rows])
        radius = np.array([r.value_in_unit(unit.nanometer) for _, r, _ in rows])
        scale = np.array([float(s) for _, _, s in rows])
        surface = force.getSurfaceAreaEnergy().value_in_unit(
            unit.kilojoule_per_mole / unit.nanometer**2
        )
        return cls(
            force_name="GBSAOBCForce",
            charge=charge,
            offset_radius=radius - _OBC_OFFSET,
            scaled_radius=scale * (radius - _OBC_OFFSET),
            offset=_OBC_OFFSET,
            tanh_coefficients=np.tile(_OBC2_COEFFICIENTS, (len(rows), 1)),
            solute_dielectric=force.getSoluteDielectric(),
            solvent_dielectric=force.getSolventDielectric(),
            kappa=0.0,
            coulomb_constant=COULOMB_CONSTANT,
            surface_factor=4 * math.pi * surface if surface != 0 else None,
            probe_radius=_PROBE_RADIUS,
            neck=None,
            inner_correction=True,
        )


class GeneralizedBornTerm(ForceTerm):
    """Generalized Born energy (polar + optional ACE surface term) of a batch, see module doc.

    Arguments:
        parameters: The model, from :meth:`GeneralizedBornParameters.from_gbsaobc` or
            :func:`~boltzgen.energy.forcefield.custom_gb.read_custom_gb`.
        pairs: The molecule's pair list (the term reads the shared pair distances).

    The two directions of every pair (i descreened by j, j by i) are evaluated together, as
    tensors of shape ``(2, P, batch)``; the integrals are kept doubled (2 I_ij) until
    psi_i = (rho~_i / 2) sum_j 2 I_ij. Under autograd (when enabled, the default of
    :class:`TorchForceField`) :meth:`energy_and_gradient` computes dE/dr alongside the energy
    instead of recording the graph.
    """

    uses_pairs = True

    def __init__(self, parameters: GeneralizedBornParameters, pairs: PairList) -> None:
        super().__init__()
        p = parameters
        self.force_name = p.force_name
        i, j = pairs.first.numpy(), pairs.second.numpy()
        radius = p.offset_radius + p.offset
        self.n_atoms = pairs.n_atoms
        self.register_buffer("first", pairs.first.clone(), persistent=False)
        self.register_buffer("second", pairs.second.clone(), persistent=False)
        # The atom each of the 2P directed integrals descreens: i (direction 0), then j.
        self.register_buffer("receivers", torch.cat([pairs.first, pairs.second]), persistent=False)
        # Direction 0: atom i descreened by j; direction 1: j by i. Shape (2, P, 1).
        receiver, donor = np.stack([i, j]), np.stack([j, i])

        def directional(values: np.ndarray) -> Tensor:
            return torch.as_tensor(np.asarray(values, dtype=np.float64)[..., None].copy())

        self.register_buffer("rho", directional(p.offset_radius[receiver]))
        self.register_buffer("scaled", directional(p.scaled_radius[donor]))
        self.register_buffer("quarter_scaled2", directional(0.25 * p.scaled_radius[donor] ** 2))
        self.register_buffer("inverse_offset_radius", column(1.0 / p.offset_radius))
        self.register_buffer("half_offset_radius", column(0.5 * p.offset_radius))
        self.register_buffer("inverse_radius", column(1.0 / radius))
        self.inner_correction = p.inner_correction
        if p.inner_correction:
            self.register_buffer("twice_inverse_rho", directional(2.0 / p.offset_radius[receiver]))
        self.hct = p.tanh_coefficients is None
        if p.tanh_coefficients is not None:
            self.register_buffer(
                "tanh_coefficients",
                torch.as_tensor(p.tanh_coefficients.T.reshape(3, -1, 1).copy()),
            )
        self.has_neck = p.neck is not None
        if p.neck is not None:
            index = p.neck.radius_index
            self.register_buffer(
                "neck_height",
                directional(2.0 * p.neck.scale * p.neck.m0[index[receiver], index[donor]]),
            )
            self.register_buffer(
                "neck_center", directional(p.neck.d0[index[receiver], index[donor]])
            )
            self.register_buffer("neck_reach", column(radius[i] + radius[j] + p.neck.cutoff))
        # Polar prefactors (kJ/mol nm): self -k_e/2 (1/eps_in - s/eps_out) q_i^2, pairs
        # -k_e (1/eps_in - s/eps_out) q_i q_j, with screening s = e^{-kappa d} (1 without salt).
        self.kappa = p.kappa
        solute, solvent = (
            p.coulomb_constant / p.solute_dielectric,
            p.coulomb_constant / p.solvent_dielectric,
        )
        charge2, products = p.charge**2, p.charge[i] * p.charge[j]
        if p.kappa > 0:
            self.register_buffer("self_solute", column(-0.5 * solute * charge2))
            self.register_buffer("self_solvent", column(0.5 * solvent * charge2))
            self.register_buffer("pair_solute", column(-solute * products))
            self.register_buffer("pair_solvent", column(solvent * products))
        else:
            self.register_buffer("self_polar", column(-0.5 * (solute - solvent) * charge2))
            self.register_buffer("pair_polar", column(-(solute - solvent) * products))
        self.has_surface = p.surface_factor is not None
        if p.surface_factor is not None:
            self.register_buffer(
                "surface", column(p.surface_factor * (radius + p.probe_radius) ** 2 * radius**6)
            )

    def _bounds(self, r: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """r - s, U = max(r + s, rho~) and L = max(|r - s|, rho~) of both directions of every
        pair, each of shape ``(2, P, batch)``. Where r + s < rho~, U = L = rho~ and the integral
        vanishes, so no mask is needed."""
        rho = self.parameter("rho", r)
        s = self.parameter("scaled", r)
        separation = r - s
        upper = torch.maximum(r + s, rho)
        lower = torch.maximum(separation.abs(), rho)
        return separation, upper, lower

    def _doubled_integrals(self, r: Tensor, inverse_r: Tensor) -> Tensor:
        """2 I of both directions of every pair (0: i by j, 1: j by i), shape ``(2, P, batch)``."""
        separation, upper, lower = self._bounds(r)
        inverse_upper, inverse_lower = upper.reciprocal(), lower.reciprocal()
        # (r/4 - s^2/(4r)) (1/U^2 - 1/L^2) = -(r/4 - s^2/(4r)) (1/L - 1/U)(1/L + 1/U)
        slope = self.parameter("quarter_scaled2", r) * inverse_r - 0.25 * r
        integral = (inverse_lower - inverse_upper) * (
            1.0 + slope * (inverse_lower + inverse_upper)
        ) + torch.log(lower * inverse_upper) * (0.5 * inverse_r)
        if self.inner_correction:
            inside = _step(-separation - self.parameter("rho", r))
            integral = integral + inside * (
                self.parameter("twice_inverse_rho", r) - 2.0 * inverse_lower
            )
        if self.has_neck:
            offset = r - self.parameter("neck_center", r)
            offset2 = offset * offset
            neck = self.parameter("neck_height", r) / (
                1.0 + offset2 * (100.0 + 3.0e5 * offset2 * offset2)
            )
            integral = integral + neck * _step(self.parameter("neck_reach", r) - r)
        return integral

    def born_radii(self, pair_distances: Tensor) -> Tensor:
        """Born radii B_i.

        Arguments:
            pair_distances: Distances of all pairs i < j, shape ``(P, batch)``, nm.

        Returns:
            Born radii, shape ``(N, batch)``, nm.
        """
        r = pair_distances
        doubled = r.new_zeros(self.n_atoms, r.shape[1]).index_add(
            0,
            self.receivers.to(r.device),
            self._doubled_integrals(r, r.reciprocal()).flatten(0, 1),
        )
        inverse_rho = self.parameter("inverse_offset_radius", r)
        if self.hct:
            return (inverse_rho - 0.5 * doubled).reciprocal()
        psi = doubled * self.parameter("half_offset_radius", r)
        c1, c2, c3 = self.parameter("tanh_coefficients", r)
        return (
            inverse_rho
            - torch.tanh(psi * (c1 + psi * (c2 + psi * c3))) * self.parameter("inverse_radius", r)
        ).reciprocal()

    def forward(self, xt: Tensor, pair_distances: Tensor | None) -> Tensor:
        if self.uses_analytic_gradient(pair_distances):
            return AnalyticPairEnergy.apply(pair_distances, self)
        like = pair_distances
        born = self.born_radii(pair_distances)
        inverse_born = born.reciprocal()
        product = born.index_select(0, self.first.to(like.device)) * born.index_select(
            0, self.second.to(like.device)
        )
        r2 = pair_distances * pair_distances
        f = torch.sqrt(r2 + product * torch.exp(-0.25 * r2 / product))
        inverse_f = f.reciprocal()
        if self.kappa > 0:
            self_screened = self.parameter("self_solvent", like) * torch.exp(-self.kappa * born)
            pair_screened = self.parameter("pair_solvent", like) * torch.exp(-self.kappa * f)
            self_part = (self.parameter("self_solute", like) + self_screened) * inverse_born
            pair_part = (self.parameter("pair_solute", like) + pair_screened) * inverse_f
        else:
            self_part = self.parameter("self_polar", like) * inverse_born
            pair_part = self.parameter("pair_polar", like) * inverse_f
        energy = self_part.sum(0) + pair_part.sum(0)
        if self.has_surface:
            inverse_born2 = inverse_born * inverse_born
            energy = energy + (
                self.parameter("surface", like) * inverse_born2 * inverse_born2 * inverse_born2
            ).sum(0)
        return energy

    # -- analytic path: energy and dE/dr in one pass (see analytic.py) ---------------------------

    def _integrals_and_slopes(self, r: Tensor, inverse_r: Tensor) -> tuple[Tensor, Tensor]:
        """2 I and d(2 I)/dr of both directions of every pair, each of shape ``(2, P, batch)``.

        With a = 1/L, b = 1/U, k = s^2/(4r) - r/4, L' = dL/dr (sign(r - s) where
        |r - s| > rho~, else 0) and U' = dU/dr ([r + s > rho~]):
        2 I = a - b + k (a^2 - b^2) + ln(L b)/(2r), and
        d(2 I)/dr = U' b^2 - L' a^2 + k' (a^2 - b^2) + 2 k (U' b^3 - L' a^3)
        + (L' a - U' b)/(2r) - ln(L b)/(2r^2), k' = -s^2/(4r^2) - 1/4.
        """
        rho = self.parameter("rho", r)
        quarter_s2 = self.parameter("quarter_scaled2", r)
        half_inverse_r = 0.5 * inverse_r
        separation, upper, lower = self._bounds(r)
        upper_slope = _step(upper - rho)
        lower_slope = _step(lower - rho).mul_(separation.sign())
        a, b = lower.reciprocal(), upper.reciprocal()
        a2, b2 = a * a, b * b
        a2_minus_b2 = a2 - b2
        k = quarter_s2 * inverse_r - 0.25 * r
        log_ratio = torch.log(lower * b)
        integral = (a - b).add_(k * a2_minus_b2).add_(log_ratio * half_inverse_r)
        b = b.mul_(upper_slope)  # U' b: every term of the slope in b carries U'
        slope = (
            (b * b)
            .sub_(lower_slope * a2)
            .add_(a2_minus_b2.mul_(-quarter_s2 * inverse_r * inverse_r - 0.25))
            .add_((b2 * b).sub_(lower_slope * a2 * a).mul_(2.0 * k))
            .add_((lower_slope * a).sub_(b).mul_(half_inverse_r))
            .sub_(log_ratio.mul_(half_inverse_r * inverse_r))
        )
        if self.inner_correction:
            inside = _step(-separation - rho)
            integral.add_(inside * (self.parameter("twice_inverse_rho", r) - 2.0 * a))
            slope.add_(inside.mul_(2.0 * lower_slope * a2))
        if self.has_neck:
            offset = r - self.parameter("neck_center", r)
            offset2 = offset * offset
            denominator = 1.0 + offset2 * (100.0 + 3.0e5 * offset2 * offset2)
            within = _step(self.parameter("neck_reach", r) - r)
            neck = self.parameter("neck_height", r) * within / denominator
            integral.add_(neck)
            slope.sub_(neck * offset * (200.0 + 1.8e6 * offset2 * offset2) / denominator)
        return integral, slope

    def _born_radii_and_slopes(self, doubled: Tensor) -> tuple[Tensor, Tensor]:
        """Born radii B and dB/d(2 I_i) from the summed doubled integrals, shape ``(N, batch)``."""
        inverse_rho = self.parameter("inverse_offset_radius", doubled)
        if self.hct:
            born = (inverse_rho - 0.5 * doubled).reciprocal()
            return born, 0.5 * born * born
        half_rho = self.parameter("half_offset_radius", doubled)
        psi = doubled * half_rho
        c1, c2, c3 = self.parameter("tanh_coefficients", doubled)
        tanh = torch.tanh(psi * (c1 + psi * (c2 + psi * c3)))
        inverse_radius = self.parameter("inverse_radius", doubled)
        born = (inverse_rho - tanh * inverse_radius).reciprocal()
        # dB/dD = B^2 (1 - tanh^2) / rho * (c1 + 2 c2 psi + 3 c3 psi^2) * rho~/2
        slope = (1.0 - tanh * tanh).mul_(c1 + psi * (2.0 * c2 + 3.0 * c3 * psi))
        return born, slope.mul_(born * born).mul_(inverse_radius * half_rho)

    def energy_and_gradient(self, r: Tensor) -> tuple[Tensor, Tensor]:
        """Energies ``(batch,)`` and dE/dr ``(P, batch)`` of distances ``r`` ``(P, batch)``.

        The chain rule of OpenMM's two-pass GB: dE/dr_ij = dE/dr_ij at fixed Born radii +
        G_i d(2 I_ij)/dr + G_j d(2 I_ji)/dr, with G_i = dE/dB_i dB_i/d(2 I_i) and dE/dB_i
        summing the self, surface and pair terms of atom i.
        """
        first, second = self.first.to(r.device), self.second.to(r.device)
        receivers = self.receivers.to(r.device)
        inverse_r = r.reciprocal()
        integrals, integral_slopes = self._integrals_and_slopes(r, inverse_r)
        doubled = r.new_zeros(self.n_atoms, r.shape[1]).index_add_(
            0, receivers, integrals.flatten(0, 1)
        )
        born, born_slopes = self._born_radii_and_slopes(doubled)
        inverse_born = born.reciprocal()
        product = born.index_select(0, first) * born.index_select(0, second)
        r2 = r * r
        quarter_ratio = 0.25 * r2 / product
        screening = torch.exp(-quarter_ratio)
        f = torch.sqrt(r2 + product * screening)
        inverse_f = f.reciprocal()
        if self.kappa > 0:
            screened_self = self.parameter("self_solvent", r) * torch.exp(-self.kappa * born)
            screened_pair = self.parameter("pair_solvent", r) * torch.exp(-self.kappa * f)
            self_numerator = self.parameter("self_solute", r) + screened_self
            pair_numerator = self.parameter("pair_solute", r) + screened_pair
        else:
            self_numerator = self.parameter("self_polar", r)
            pair_numerator = self.parameter("pair_polar", r)
        self_part = self_numerator * inverse_born
        pair_part = pair_numerator * inverse_f
        energy = self_part.sum(0) + pair_part.sum(0)
        if self.has_surface:
            inverse_born6 = inverse_born * inverse_born
            inverse_born6.mul_(inverse_born6).mul_(inverse_born * inverse_born)
            surface = self.parameter("surface", r) * inverse_born6
            energy = energy + surface.sum(0)
        # dE/df of the pair part, then f's partials: df/dr = r (1 - e/4)/f and
        # B_i B_j df/d(B_i B_j) = B_i B_j e (1 + r^2/(4 B_i B_j)) / (2 f), e = screening.
        energy_slope_f = -pair_part * inverse_f
        born_slope_self = -self_part * inverse_born
        if self.kappa > 0:
            energy_slope_f.sub_(self.kappa * screened_pair * inverse_f)
            born_slope_self.sub_(self.kappa * screened_self * inverse_born)
        if self.has_surface:
            born_slope_self.sub_(6.0 * surface * inverse_born)
        direct = energy_slope_f * r * inverse_f * (1.0 - 0.25 * screening)
        pair_born = energy_slope_f.mul_(0.5 * inverse_f * product * screening).mul_(
            1.0 + quarter_ratio
        )
        # dE/dB_i = self and surface part + sum over i's pairs of B_i B_j df/d(B_i B_j) / B_i
        born_slope = (
            r.new_zeros(self.n_atoms, r.shape[1])
            .index_add_(0, receivers, pair_born.expand(2, -1, -1).flatten(0, 1))
            .mul_(inverse_born)
            .add_(born_slope_self)
            .mul_(born_slopes)
        )
        gradient = direct.add_(born_slope.index_select(0, first) * integral_slopes[0])
        return energy, gradient.add_(born_slope.index_select(0, second) * integral_slopes[1])

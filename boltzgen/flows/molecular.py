"""A Boltzmann-generator model over Cartesian positions: a coupling flow on internal coordinates.

:class:`MolecularFlow` follows TA-BG (Schopmans & Friederich 2025): the internal coordinates of
:class:`~boltzgen.molecule.coordinates.InternalCoordinates` are normalised to [0, 1], a
:class:`~boltzgen.flows.CouplingFlow` models them, and the internal -> Cartesian map (canonical
frame) turns its samples into positions. Normalisation, per feature:

* bonds and angles: affine from ``[ref - 5 sigma, ref + 5 sigma]`` around the reference
  (energy-minimized) structure onto [0, 1], prior truncated normal(0.5, 0.1) on [0, 1], so that
  the prior's 0.1 is ``sigma = 0.007 nm`` for bonds and ``0.18 rad`` for angles;
* torsions: ``[-pi, pi)`` onto the circle [0, 1), prior uniform;
* with ``chirality="constrain"``, the torsions that fix the handedness of stereocentres and the
  order of equivalent hydrogens (:attr:`InternalCoordinates.chirality_features`) live on the
  reference's half ``[0, pi]`` or ``[-pi, 0]``, mapped onto the interval [0, 1], prior uniform:
  every sample then has the reference's chirality.

Densities are over the ``3N - 6 - n_constraints`` internal degrees of freedom (positions up to
rigid motion), including the internal-coordinate Jacobian; positions outside the support (a bond
or angle beyond its interval, a wrong handedness under the constraint) have log-density -inf.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Protocol

import numpy as np
import torch
from openmm import app
from torch import Tensor, nn

from ..errors import BoltzgenError
from ..models.base import Model
from ..molecule.coordinates import (
    ANGLE_MARGIN,
    InternalCoordinates,
    backbone_dihedral_indices,
    dihedral_angles,
)
from .coupling import CouplingFlow
from .domains import Domain, circular, interval
from .priors import Prior

__all__ = [
    "MolecularFlow",
    "internal_coordinate_domains",
    "MoleculeLike",
    "BOND_SIGMA",
    "ANGLE_SIGMA",
    "PRIOR_SCALE",
    "CHIRALITY_MODES",
]

#: Physical standard deviation of the bond prior, nm (TA-BG).
BOND_SIGMA = 0.007
#: Physical standard deviation of the angle prior, radians (TA-BG).
ANGLE_SIGMA = 0.18
#: Standard deviation of the truncated-normal prior of bonds and angles on [0, 1].
PRIOR_SCALE = 0.1
#: ``"constrain"``: chirality and hydrogen order fixed by the support; ``"report"``: free
#: (check samples with :meth:`MolecularFlow.chirality_ok`).
CHIRALITY_MODES = ("constrain", "report")


def _buffer(values: Sequence[float]) -> Tensor:
    return torch.tensor(values, dtype=torch.float64).to(torch.get_default_dtype())


class MoleculeLike(Protocol):
    """What :class:`MolecularFlow` reads from a molecule (e.g. ``boltzgen.molecule.Molecule``)."""

    topology: app.Topology
    positions: np.ndarray

    def constrained_bonds(self) -> Sequence[tuple[int, int, float]]: ...


def _unpack(
    molecule: MoleculeLike | tuple,
) -> tuple[app.Topology, np.ndarray, Sequence[tuple[int, int, float]]]:
    if isinstance(molecule, tuple):
        if len(molecule) == 2:
            return molecule[0], molecule[1], ()
        if len(molecule) == 3:
            return molecule
        raise BoltzgenError(
            "give a molecule or a tuple (topology, positions[, constrained_bonds]), "
            f"got a tuple of {len(molecule)}"
        )
    if not all(hasattr(molecule, name) for name in ("topology", "positions", "constrained_bonds")):
        raise BoltzgenError(
            f"{type(molecule).__name__} is not a molecule: give an object with topology, "
            "positions and constrained_bonds(), or a tuple (topology, positions, "
            "constrained_bonds)"
        )
    return molecule.topology, molecule.positions, molecule.constrained_bonds()


def internal_coordinate_domains(
    coordinates: InternalCoordinates,
    bond_halfwidth: float = 0.035,
    angle_halfwidth: float = 0.9,
    constrain_chirality: bool = True,
) -> tuple[Domain, ...]:
    """Supports of the internal-coordinate features, centred on the reference structure.

    Arguments:
        coordinates: The molecule's internal-coordinate map (feature kinds, reference values,
            chirality features).
        bond_halfwidth: Bonds live on ``[r0 - w, r0 + w]`` (nm), clipped below at r0 / 2.
            The default 0.035 nm is TA-BG's: 5 prior standard deviations of 0.007 nm.
        angle_halfwidth: Angles live on ``[a0 - w, a0 + w]`` (radians) clipped to
            ``[0.01, pi - 0.01]``; default 0.9 rad = 5 x 0.18 rad (TA-BG).
        constrain_chirality: The chirality features live on ``[0, pi]`` or ``[-pi, 0]``, the
            reference's side; otherwise they are circular like the other torsions.

    Returns:
        One :class:`~boltzgen.flows.Domain` per feature; torsions ``circular(-pi, pi)``.
    """
    reference = coordinates.reference_features.tolist()
    chiral = set(coordinates.chirality_features) if constrain_chirality else set()
    domains = []
    for f, (kind, value) in enumerate(zip(coordinates.feature_kinds, reference)):
        if kind == "bond":
            domains.append(
                interval(max(0.5 * value, value - bond_halfwidth), value + bond_halfwidth)
            )
        elif kind == "angle":
            domains.append(
                interval(
                    max(ANGLE_MARGIN, value - angle_halfwidth),
                    min(math.pi - ANGLE_MARGIN, value + angle_halfwidth),
                )
            )
        elif f in chiral:
            domains.append(interval(0.0, math.pi) if value > 0 else interval(-math.pi, 0.0))
        else:
            domains.append(circular(-math.pi, math.pi))
    return tuple(domains)


class MolecularFlow(nn.Module, Model):
    """A normalizing flow over the Cartesian positions of one molecule (TA-BG architecture).

    Arguments:
        molecule: An object with ``topology`` (OpenMM), ``positions`` (nm, ``(N, 3)``, the
            energy-minimized reference) and ``constrained_bonds()`` (``[(i, j, length_nm)]``),
            or a tuple ``(topology, positions[, constrained_bonds])``.
        n_layers: Coupling layers (TA-BG's "random_8" is 16: 8 blocks of two).
        hidden: Width of the conditioner MLPs.
        depth: Hidden layers per conditioner (TA-BG: 5).
        bins: Spline bins.
        mask: ``"random"`` (TA-BG) or ``"alternating"`` feature splits.
        chirality: One of :data:`CHIRALITY_MODES`.
        seed: Seed of the initial weights, masks and circular shifts.

    The flow starts as the identity on [0, 1]: samples are prior draws placed around the
    reference structure. Dtype and device follow the module (``.to(torch.float64)``).

    Example:
        >>> from boltzgen import Molecule
        >>> molecule = Molecule.from_catalog("alanine-dipeptide-vacuum")
        >>> flow = MolecularFlow(molecule, n_layers=2, hidden=32, depth=1)
        >>> x, log_q = flow.sample_and_log_prob(8)  # positions in nm, log q in nats
        >>> tuple(x.shape), tuple(log_q.shape)
        ((8, 22, 3), (8,))
    """

    reparameterized = True

    def __init__(
        self,
        molecule: MoleculeLike | tuple,
        *,
        n_layers: int = 16,
        hidden: int = 256,
        depth: int = 5,
        bins: int = 8,
        mask: str = "random",
        chirality: str = "constrain",
        seed: int = 0,
    ) -> None:
        super().__init__()
        if chirality not in CHIRALITY_MODES:
            raise BoltzgenError(
                f"unknown chirality mode {chirality!r}: use one of {', '.join(CHIRALITY_MODES)}"
            )
        topology, positions, constrained = _unpack(molecule)
        self.chirality = chirality
        self.coordinates = InternalCoordinates(topology, positions, constrained)
        self.event_shape = self.coordinates.event_shape
        self.dim = self.coordinates.dim
        physical = internal_coordinate_domains(
            self.coordinates,
            bond_halfwidth=0.5 / PRIOR_SCALE * BOND_SIGMA,
            angle_halfwidth=0.5 / PRIOR_SCALE * ANGLE_SIGMA,
            constrain_chirality=chirality == "constrain",
        )
        self.domains: tuple[Domain, ...] = physical
        reference = self.coordinates.reference_features.tolist()
        unit_domains, families, loc, scale = [], [], [], []
        for kind, domain, value in zip(self.coordinates.feature_kinds, physical, reference):
            sigma = {"bond": BOND_SIGMA, "angle": ANGLE_SIGMA}.get(kind)
            if domain.kind == "circular":
                unit_domains.append(circular(0.0, 1.0))
            else:
                unit_domains.append(interval(0.0, 1.0))
            families.append("truncated-normal" if sigma else "uniform")
            loc.append((value - domain.low) / domain.width if sigma else 0.5)
            scale.append(sigma / domain.width if sigma else 1.0)
        self.register_buffer("low", _buffer([d.low for d in physical]))
        self.register_buffer("width", _buffer([d.width for d in physical]))
        self.register_buffer("bounded", torch.tensor([d.kind == "interval" for d in physical]))
        self.log_width = float(sum(math.log(d.width) for d in physical))
        self.flow = CouplingFlow(
            unit_domains,
            n_layers=n_layers,
            hidden=hidden,
            depth=depth,
            bins=bins,
            prior=Prior(unit_domains, families, loc, scale),
            mask=mask,
            seed=seed,
        )
        phi, psi = backbone_dihedral_indices(topology)
        self.register_buffer("phi_atoms", torch.as_tensor(phi))
        self.register_buffer("psi_atoms", torch.as_tensor(psi))

    def log_prob(self, x: Tensor) -> Tensor:
        """Log-density of positions over the internal degrees of freedom.

        Arguments:
            x: Positions in nm, shape ``(n, N, 3)``.

        Returns:
            log q(x), shape ``(n,)``; -inf outside the support.
        """
        features, log_det = self.coordinates(x)
        u = (features - self.low) / self.width
        inside = (((u >= 0) & (u <= 1)) | ~self.bounded).all(dim=-1)
        log_q = self.flow.log_prob(u) - self.log_width + log_det
        return torch.where(inside, log_q, torch.full_like(log_q, -math.inf))

    def sample_and_log_prob(self, n: int) -> tuple[Tensor, Tensor]:
        """Draw ``n`` positions ``(n, N, 3)`` (nm, canonical frame) and their log q ``(n,)``.

        Reparameterized: gradients flow from both outputs to the flow's parameters (the
        reverse-KL fast path).
        """
        u, log_q = self.flow.sample_and_log_prob(n)
        x, log_det = self.coordinates.inverse(self.low + self.width * u)
        return x, log_q - self.log_width - log_det

    @torch.no_grad()
    def sample(self, n: int) -> Tensor:
        """Draw ``n`` positions, shape ``(n, N, 3)`` in nm (canonical frame), without a graph."""
        return self.coordinates.inverse(self.low + self.width * self.flow.sample(n))[0]

    def dihedrals(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Backbone dihedrals in radians, as ``mdtraj.compute_phi`` / ``compute_psi``.

        Arguments:
            x: Positions ``(n, N, 3)``.

        Returns:
            ``phi (n, n_phi)`` and ``psi (n, n_psi)`` in (-pi, pi].
        """
        return dihedral_angles(x, self.phi_atoms), dihedral_angles(x, self.psi_atoms)

    def chirality_ok(self, x: Tensor) -> Tensor:
        """Whether every stereocentre has the reference's handedness, ``(n, N, 3) -> (n,)``."""
        return self.coordinates.chirality_ok(x)

    def hydrogen_order_ok(self, x: Tensor) -> Tensor:
        """Whether every CH3/CH2/NH3 group keeps the reference's hydrogen order, ``(n,)``."""
        return self.coordinates.hydrogen_order_ok(x)

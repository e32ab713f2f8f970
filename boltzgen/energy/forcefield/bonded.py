"""Bonded terms: OpenMM's HarmonicBondForce, HarmonicAngleForce and PeriodicTorsionForce.

Energy forms (OpenMM's): bond 0.5 k (r - r0)^2, angle 0.5 k (theta - theta0)^2, torsion
k (1 + cos(n phi - phi0)), with phi the IUPAC dihedral angle of atoms 1-2-3-4 (OpenMM's sign).
Tensors are in the batch-last layout of :mod:`~boltzgen.energy.forcefield.term`.
"""

from __future__ import annotations

import numpy as np
import openmm
import openmm.unit as unit
import torch
from torch import Tensor

from .term import ForceTerm, column

__all__ = ["HarmonicBondTerm", "HarmonicAngleTerm", "PeriodicTorsionTerm", "dihedral_angles"]

_ENERGY = unit.kilojoule_per_mole


def _atoms(indices: list, width: int) -> Tensor:
    """Atom indices transposed to shape ``(width, M)``: row k holds the k-th atom of each item."""
    return torch.as_tensor(np.asarray(indices, dtype=np.int64).reshape(-1, width).T.copy())


def _positions(xt: Tensor, atoms: Tensor) -> list[Tensor]:
    """Positions of the k-th atoms of each item, a list of ``(3, M, batch)`` tensors."""
    atoms = atoms.to(xt.device)
    return [xt.index_select(1, row) for row in atoms]


def _cross(a: Tensor, b: Tensor) -> Tensor:
    """Cross product along the leading axis of two ``(3, M, batch)`` tensors (written out: on
    CPU this is several times faster than ``torch.linalg.cross`` on a leading axis)."""
    ax, ay, az = a
    bx, by, bz = b
    return torch.stack([ay * bz - az * by, az * bx - ax * bz, ax * by - ay * bx])


def dihedral_angles(xt: Tensor, atoms: Tensor) -> Tensor:
    """IUPAC dihedral angles phi of atom quadruples (OpenMM's sign convention).

    Arguments:
        xt: Positions, batch-last, shape ``(3, N, batch)``, nm.
        atoms: Atom indices, shape ``(4, M)``.

    Returns:
        Angles in (-pi, pi], shape ``(M, batch)``, rad.
    """
    p0, p1, p2, p3 = _positions(xt, atoms)
    b1, b2, b3 = p1 - p0, p2 - p1, p3 - p2
    n1, n2 = _cross(b1, b2), _cross(b2, b3)
    y = (b2 * b2).sum(0).sqrt() * (b1 * n2).sum(0)
    return torch.atan2(y, (n1 * n2).sum(0))


class HarmonicBondTerm(ForceTerm):
    """0.5 k (r - r0)^2 summed over bonds.

    Arguments:
        atoms: Bonded atom pairs, shape ``(2, M)``.
        length: Equilibrium lengths r0, shape ``(M, 1)``, nm.
        k: Force constants, shape ``(M, 1)``, kJ/mol/nm^2.
    """

    force_name = "HarmonicBondForce"

    def __init__(self, atoms: Tensor, length: Tensor, k: Tensor) -> None:
        super().__init__()
        self.register_buffer("atoms", atoms)
        self.register_buffer("length", length)
        self.register_buffer("half_k", 0.5 * k)

    @classmethod
    def from_force(cls, force: openmm.HarmonicBondForce) -> HarmonicBondTerm:
        """Read the bonds of an OpenMM ``HarmonicBondForce``."""
        rows = [force.getBondParameters(b) for b in range(force.getNumBonds())]
        return cls(
            _atoms([row[:2] for row in rows], 2),
            column([row[2].value_in_unit(unit.nanometer) for row in rows]),
            column([row[3].value_in_unit(_ENERGY / unit.nanometer**2) for row in rows]),
        )

    def forward(self, xt: Tensor, pair_distances: Tensor | None) -> Tensor:
        a, b = _positions(xt, self.atoms)
        bond = b - a
        stretch = (bond * bond).sum(0).sqrt() - self.parameter("length", xt)
        return (self.parameter("half_k", xt) * stretch * stretch).sum(0)


class HarmonicAngleTerm(ForceTerm):
    """0.5 k (theta - theta0)^2 summed over angles 1-2-3 (vertex at atom 2).

    Arguments:
        atoms: Atom triples, shape ``(3, M)``.
        angle: Equilibrium angles theta0, shape ``(M, 1)``, rad.
        k: Force constants, shape ``(M, 1)``, kJ/mol/rad^2.
    """

    force_name = "HarmonicAngleForce"

    def __init__(self, atoms: Tensor, angle: Tensor, k: Tensor) -> None:
        super().__init__()
        self.register_buffer("atoms", atoms)
        self.register_buffer("angle", angle)
        self.register_buffer("half_k", 0.5 * k)

    @classmethod
    def from_force(cls, force: openmm.HarmonicAngleForce) -> HarmonicAngleTerm:
        """Read the angles of an OpenMM ``HarmonicAngleForce``."""
        rows = [force.getAngleParameters(a) for a in range(force.getNumAngles())]
        return cls(
            _atoms([row[:3] for row in rows], 3),
            column([row[3].value_in_unit(unit.radian) for row in rows]),
            column([row[4].value_in_unit(_ENERGY / unit.radian**2) for row in rows]),
        )

    def forward(self, xt: Tensor, pair_distances: Tensor | None) -> Tensor:
        end1, vertex, end2 = _positions(xt, self.atoms)
        a, b = end1 - vertex, end2 - vertex
        normal = _cross(a, b)
        theta = torch.atan2((normal * normal).sum(0).sqrt(), (a * b).sum(0))
        bend = theta - self.parameter("angle", xt)
        return (self.parameter("half_k", xt) * bend * bend).sum(0)


class PeriodicTorsionTerm(ForceTerm):
    """k (1 + cos(n phi - phi0)) summed over proper and improper torsions.

    Arguments:
        atoms: Atom quadruples, shape ``(4, M)``.
        periodicity: Multiplicities n, shape ``(M, 1)``.
        phase: Phases phi0, shape ``(M, 1)``, rad.
        k: Barrier constants, shape ``(M, 1)``, kJ/mol.
    """

    force_name = "PeriodicTorsionForce"

    def __init__(self, atoms: Tensor, periodicity: Tensor, phase: Tensor, k: Tensor) -> None:
        super().__init__()
        self.register_buffer("atoms", atoms)
        self.register_buffer("periodicity", periodicity)
        self.register_buffer("phase", phase)
        self.register_buffer("k", k)

    @classmethod
    def from_force(cls, force: openmm.PeriodicTorsionForce) -> PeriodicTorsionTerm:
        """Read the torsions of an OpenMM ``PeriodicTorsionForce``."""
        rows = [force.getTorsionParameters(t) for t in range(force.getNumTorsions())]
        return cls(
            _atoms([row[:4] for row in rows], 4),
            column([row[4] for row in rows]),
            column([row[5].value_in_unit(unit.radian) for row in rows]),
            column([row[6].value_in_unit(_ENERGY) for row in rows]),
        )

    def forward(self, xt: Tensor, pair_distances: Tensor | None) -> Tensor:
        phi = dihedral_angles(xt, self.atoms)
        cosine = torch.cos(self.parameter("periodicity", xt) * phi - self.parameter("phase", xt))
        return (self.parameter("k", xt) * (1.0 + cosine)).sum(0)

"""Holonomic bond-length constraints (SHAKE for positions, RATTLE for velocities), batched.

Every constraint k holds atoms i_k, j_k at the distance d_k. Both projections iterate over all
constraints at once (a mass-weighted Jacobi sweep: each sweep computes every constraint's
correction from the same positions and adds them up with ``index_add``), a fixed number of sweeps,
so a step never waits for the device. H-bond constraints (a heavy atom with up to three
hydrogens) converge geometrically at a rate of about m_H / m_heavy per sweep; the default
12 sweeps reach float64 round-off on the catalog peptides (measured: 1e-16 nm after 10).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from ..errors import BoltzgenError

__all__ = ["BondConstraints"]


class BondConstraints(torch.nn.Module):
    """Fixed bond lengths between atom pairs, for batches of configurations ``(R, N, 3)`` nm.

    Arguments:
        bonds: ``(atom_i, atom_j, length_nm)`` for each constraint
            (``Molecule.constrained_bonds()``).
        masses: Atomic masses in amu (g/mol), shape ``(N,)``.
        iterations: Jacobi sweeps per projection.
    """

    def __init__(
        self, bonds: Sequence[tuple[int, int, float]], masses: Tensor, iterations: int = 12
    ) -> None:
        super().__init__()
        if iterations < 1:
            raise BoltzgenError(f"constraint iterations must be at least 1, got {iterations}")
        masses = torch.as_tensor(masses, dtype=torch.float64)
        pairs = torch.tensor([(i, j) for i, j, _ in bonds], dtype=torch.long).reshape(-1, 2)
        if len(pairs) and (pairs.min() < 0 or pairs.max() >= len(masses)):
            raise BoltzgenError(
                f"constraint atom indices must lie in [0, {len(masses)}), check the bonds"
            )
        if len(pairs) and bool((masses[pairs] <= 0).any()):
            raise BoltzgenError(
                "constrained atoms must have positive masses (massless virtual sites cannot be "
                "constrained)"
            )
        self.iterations = int(iterations)
        self.register_buffer("atom_i", pairs[:, 0].contiguous())
        self.register_buffer("atom_j", pairs[:, 1].contiguous())
        self.register_buffer(
            "lengths", torch.tensor([d for _, _, d in bonds], dtype=torch.float64)
        )
        inverse = torch.where(masses > 0, 1.0 / masses.clamp_min(1e-30), torch.zeros_like(masses))
        self.register_buffer("inverse_masses", inverse)

    @property
    def count(self) -> int:
        """Number of constraints."""
        return int(self.atom_i.numel())

    def _cast(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        inverse = self.inverse_masses.to(x)
        return self.lengths.to(x), inverse[self.atom_i], inverse[self.atom_j]

    def _spread(self, x: Tensor, step: Tensor, inv_i: Tensor, inv_j: Tensor) -> Tensor:
        """Add ``step`` (R, K, 3) to atom i (mass-weighted) and subtract it from atom j."""
        update = torch.zeros_like(x)
        update.index_add_(1, self.atom_i, step * inv_i[:, None])
        update.index_add_(1, self.atom_j, -step * inv_j[:, None])
        return x + update

    def positions(self, x: Tensor, reference: Tensor) -> Tensor:
        """SHAKE: move ``x`` along the reference bond vectors until every length is met.

        Arguments:
            x: Unconstrained positions, shape ``(R, N, 3)`` nm.
            reference: Positions that satisfy the constraints (the previous step), same shape.

        Returns:
            Constrained positions, shape ``(R, N, 3)`` nm.
        """
        if self.count == 0:
            return x
        lengths, inv_i, inv_j = self._cast(x)
        r_ref = reference[:, self.atom_i] - reference[:, self.atom_j]
        for _ in range(self.iterations):
            r = x[:, self.atom_i] - x[:, self.atom_j]
            mismatch = (r * r).sum(-1) - lengths**2
            g = mismatch / (2.0 * (r * r_ref).sum(-1) * (inv_i + inv_j))
            x = self._spread(x, -g[..., None] * r_ref, inv_i, inv_j)
        return x

    def velocities(self, v: Tensor, x: Tensor) -> Tensor:
        """RATTLE: remove the velocity components that would change any constrained length.

        Arguments:
            v: Velocities, shape ``(R, N, 3)`` nm/ps.
            x: Constrained positions, shape ``(R, N, 3)`` nm.

        Returns:
            Velocities tangent to the constraint surface at ``x``, shape ``(R, N, 3)`` nm/ps.
        """
        if self.count == 0:
            return v
        lengths, inv_i, inv_j = self._cast(x)
        r = x[:, self.atom_i] - x[:, self.atom_j]
        r_squared = (r * r).sum(-1)
        for _ in range(self.iterations):
            rate = (r * (v[:, self.atom_i] - v[:, self.atom_j])).sum(-1)
            k = rate / (r_squared * (inv_i + inv_j))
            v = self._spread(v, -k[..., None] * r, inv_i, inv_j)
        return v

    def violation(self, x: Tensor) -> Tensor:
        """Largest ``|r_ij - d_ij|`` of each configuration, shape ``(R,)`` nm (zeros without
        constraints)."""
        if self.count == 0:
            return x.new_zeros(x.shape[0])
        r = (x[:, self.atom_i] - x[:, self.atom_j]).norm(dim=-1)
        return (r - self.lengths.to(x)).abs().amax(-1)

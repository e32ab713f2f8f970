"""Discrete targets: 2-D Ising, Curie-Weiss, Sherrington-Kirkpatrick, Edwards-Anderson, 2-D Potts.

Every target here is a pairwise spin model on spins s in {-1, +1}^N (float tensors, batch first,
``event_shape = (N,)``; lattice sites are numbered row-major, site = row * L + column):

    E(s) = -( sum_{i<j} J_ij s_i s_j + sum_i h_i s_i ) + offset,      u(s) = beta E(s).

The energy's own temperature is 1.0 and the inverse temperature ``beta`` is a parameter of the
model, so that ``energy(s)`` returns the reduced energy beta E(s) (dimensionless, in kT) and
p(s) = exp(-u(s)) / Z. Couplings are stored as a padded neighbour table (``neighbors``: (N, K)
site indices, ``couplings``: (N, K) values, padding points at the site itself with coupling 0),
which is all that the energy, the local fields and the Monte Carlo moves of :mod:`boltzgen.mcmc`
need.

The q-state Potts model (:class:`PottsModel2D`) has units in {0 .. q-1} (K-state units) and
E(s) = -J sum_<ij> delta(s_i, s_j) on the torus; it shares the inverse-temperature handling and
the exact references (enumeration of q**N states, Kaufman's formula at q = 2) through
:class:`DiscreteEnergy`.
"""

from __future__ import annotations

import copy
import functools
import math

import numpy as np
import torch
from torch import Tensor

from ..errors import BoltzgenError
from .base import Energy
from .exact import (
    MAX_ENUMERATION_UNITS,
    ExactDistribution,
    check_enumerable,
    curie_weiss_log_z,
    ising_log_z_kaufman,
)

__all__ = [
    "DiscreteEnergy",
    "PairwiseSpinEnergy",
    "PottsModel2D",
    "IsingModel2D",
    "CurieWeiss",
    "SherringtonKirkpatrick",
    "EdwardsAnderson2D",
    "ISING_CRITICAL_BETA",
]

#: beta_c J = ln(1 + sqrt 2) / 2 of the square-lattice Ising model.
ISING_CRITICAL_BETA = 0.5 * math.log(1 + math.sqrt(2))


def _neighbor_table(coupling_matrix: np.ndarray) -> tuple[Tensor, Tensor]:
    """Padded neighbour table (N, K) of the non-zero off-diagonal entries of a symmetric matrix."""
    n = coupling_matrix.shape[0]
    off = coupling_matrix.copy()
    np.fill_diagonal(off, 0.0)
    rows = [np.flatnonzero(off[i]) for i in range(n)]
    width = max(1, max(len(r) for r in rows))
    neighbors = np.tile(np.arange(n)[:, None], (1, width))
    couplings = np.zeros((n, width))
    for i, r in enumerate(rows):
        neighbors[i, : len(r)] = r
        couplings[i, : len(r)] = off[i, r]
    return torch.from_numpy(neighbors), torch.from_numpy(couplings)


def _check_beta(beta: float) -> float:
    if not (math.isfinite(beta) and beta >= 0):
        raise BoltzgenError(f"beta must be a finite number >= 0, got {beta!r}")
    return float(beta)


class DiscreteEnergy(Energy):
    r"""A discrete target at inverse temperature ``beta``, u(s) = beta E(s), with N units of
    ``levels`` values each (2: spins +-1; K > 2: 0 .. K - 1) and exact references.

    Subclasses implement :meth:`coupling_energy` (E, not multiplied by beta) and may give a
    closed-form log Z (:attr:`log_z_method`, :meth:`_closed_form_log_z`).

    Arguments:
        n_units: Number of units N.
        beta: Inverse temperature (dimensionless, in units of 1/J).
        levels: Values per unit.
    """

    def __init__(self, n_units: int, beta: float, levels: int = 2) -> None:
        super().__init__(event_shape=(n_units,), temperature=1.0, discrete=True)
        self.beta = _check_beta(beta)
        self.levels = int(levels)

    @property
    def n_spins(self) -> int:
        """Number of units N."""
        return self.event_shape[0]

    def coupling_energy(self, s: Tensor) -> Tensor:
        """E(s) (not multiplied by beta) of states ``(batch, N)``: ``(batch,)``."""
        raise NotImplementedError

    def _energy(self, x: Tensor) -> Tensor:
        return self.beta * self.coupling_energy(x)

    def with_beta(self, beta: float) -> DiscreteEnergy:
        """The same model at inverse temperature ``beta`` (couplings shared, not copied; its
        exact log Z computed afresh)."""
        other = copy.copy(self)
        other.__dict__.pop("log_z", None)  # the cached value belongs to self's beta
        other.beta = _check_beta(beta)
        return other

    def _device(self) -> torch.device:
        return next(iter(self.buffers())).device

    def exact(self) -> ExactDistribution:
        """The exact distribution by enumeration of all levels**N states (<= 2**24), float64,
        on the device of the energy's buffers."""
        check_enumerable(self.n_spins, f"exact enumeration of {type(self).__name__}", self.levels)
        return ExactDistribution.from_energy(
            self.energy, self.n_spins, spin=True, device=self._device(), levels=self.levels
        )

    @functools.cached_property
    def log_z(self) -> float | None:
        """Exact log Z (computed once, by :attr:`log_z_method`), or ``None`` when there are
        more than 2**24 states and no closed form applies."""
        method = self.log_z_method
        if method is None:
            return None
        return self._closed_form_log_z() if method != "enumeration" else float(self.exact().log_z)

    @property
    def log_z_method(self) -> str | None:
        """How :attr:`log_z` is known: ``"enumeration"`` (<= 2**24 states), a closed form's
        name, or ``None``."""
        enumerable = self.levels**self.n_spins <= 1 << MAX_ENUMERATION_UNITS
        return "enumeration" if enumerable else None

    def _closed_form_log_z(self) -> float:
        raise NotImplementedError

    def extra_repr(self) -> str:
        return f"n_spins={self.n_spins}, beta={self.beta:g}"


class PairwiseSpinEnergy(DiscreteEnergy):
    r"""Reduced energy u(s) = beta [-(sum_{i<j} J_ij s_i s_j + h . s) + offset] of N Ising spins.

    Arguments:
        coupling_matrix: Symmetric couplings J, shape (N, N) (diagonal ignored), float64.
        beta: Inverse temperature (dimensionless, in units of 1/J).
        field: External field h, a number or shape (N,) (default 0).
        offset: Constant added to E (e.g. the diagonal of the Curie-Weiss coupling).
    """

    def __init__(
        self,
        coupling_matrix: np.ndarray,
        beta: float,
        field: float | np.ndarray = 0.0,
        offset: float = 0.0,
    ) -> None:
        coupling_matrix = np.asarray(coupling_matrix, dtype=np.float64)
        n = coupling_matrix.shape[0]
        if coupling_matrix.shape != (n, n) or not np.allclose(coupling_matrix, coupling_matrix.T):
            raise BoltzgenError("the coupling matrix of a spin model must be square and symmetric")
        super().__init__(n, beta)
        self.offset = float(offset)
        neighbors, couplings = _neighbor_table(coupling_matrix)
        self.register_buffer("neighbors", neighbors)
        self.register_buffer("couplings", couplings)
        self.register_buffer(
            "field", torch.as_tensor(np.broadcast_to(field, (n,)).copy(), dtype=torch.float64)
        )

    @property
    def has_field(self) -> bool:
        """Whether any external field is non-zero."""
        return bool(self.field.abs().max() > 0)

    def local_fields(self, s: Tensor) -> Tensor:
        """h_i + sum_j J_ij s_j of each spin, shape (batch, N); flipping s_i changes E by 2 s_i
        times it."""
        neighbor_spins = s[:, self.neighbors]  # (B, N, K)
        return (neighbor_spins * self.couplings.to(s.dtype)).sum(-1) + self.field.to(s.dtype)

    def coupling_energy(self, s: Tensor) -> Tensor:
        """E(s) (not multiplied by beta), shape (batch,)."""
        pair = (s[:, :, None] * s[:, self.neighbors] * self.couplings.to(s.dtype)).sum((1, 2))
        return -(0.5 * pair + s @ self.field.to(s.dtype)) + self.offset

    def magnetization(self, s: Tensor) -> Tensor:
        """Mean spin m = sum_i s_i / N, shape (batch,)."""
        return s.mean(-1)


def _torus_couplings(bonds_right: np.ndarray, bonds_down: np.ndarray) -> np.ndarray:
    """Coupling matrix of an L x L torus with the given right/down bond values (L, L)."""
    L = bonds_right.shape[0]
    n = L * L
    site = np.arange(n).reshape(L, L)
    matrix = np.zeros((n, n))
    for bonds, neighbor in (
        (bonds_right, np.roll(site, -1, axis=1)),
        (bonds_down, np.roll(site, -1, axis=0)),
    ):
        np.add.at(matrix, (site.ravel(), neighbor.ravel()), bonds.ravel())
        np.add.at(matrix, (neighbor.ravel(), site.ravel()), bonds.ravel())
    return matrix


class IsingModel2D(PairwiseSpinEnergy):
    r"""Ising model on a periodic L x L square lattice: E = -J sum_<ij> s_i s_j - h sum_i s_i.

    The sum runs over the 2 L^2 bonds (every site's right and down neighbour; for L = 2 the two
    bonds between a pair of sites both count). beta_c J = ln(1 + sqrt 2)/2 = 0.4406868.

    Arguments:
        L: Linear size (>= 2); N = L^2 spins, site = row * L + column.
        beta: Inverse temperature.
        J: Coupling (default 1, ferromagnetic).
        h: Uniform external field (default 0).
    """

    def __init__(self, L: int, beta: float, J: float = 1.0, h: float = 0.0) -> None:
        if L < 2:
            raise BoltzgenError(f"the 2-D Ising model needs L >= 2, got L={L}")
        bonds = np.full((L, L), float(J))
        super().__init__(_torus_couplings(bonds, bonds), beta, field=h)
        self.L, self.J, self.h = int(L), float(J), float(h)

    @property
    def log_z_method(self) -> str | None:
        """Kaufman's formula at zero field (any L); enumeration in a field (L <= 4)."""
        return "kaufman" if self.h == 0 else super().log_z_method

    def _closed_form_log_z(self) -> float:
        return ising_log_z_kaufman(self.L, self.beta * self.J)


class CurieWeiss(PairwiseSpinEnergy):
    r"""Curie-Weiss (mean-field) model: E = -(sum_i s_i)^2 / (2N) - h sum_i s_i.

    All pairs couple with J_ij = 1/N; the diagonal's constant -1/2 is kept as ``offset`` so that
    E equals the formula above exactly. beta_c = 1.

    Arguments:
        n: Number of spins N.
        beta: Inverse temperature.
        h: Uniform external field (default 0).
    """

    def __init__(self, n: int, beta: float, h: float = 0.0) -> None:
        if n < 1:
            raise BoltzgenError(f"curie-weiss needs n >= 1 spins, got {n}")
        super().__init__(np.full((n, n), 1.0 / n), beta, field=h, offset=-0.5)
        self.h = float(h)

    def coupling_energy(self, s: Tensor) -> Tensor:
        total = s.sum(-1)
        return -(total**2) / (2 * self.n_spins) - self.h * total

    @property
    def log_z_method(self) -> str:
        """The sum over magnetisations (any N)."""
        return "magnetization-sum"

    def _closed_form_log_z(self) -> float:
        return curie_weiss_log_z(self.n_spins, self.beta, self.h)


class SherringtonKirkpatrick(PairwiseSpinEnergy):
    r"""Sherrington-Kirkpatrick spin glass: E = -1/2 s^T J s, J_ij = J_ji ~ N(0, 1/N), J_ii = 0.

    Arguments:
        n: Number of spins N.
        beta: Inverse temperature (beta_c = 1 for N -> infinity).
        seed: Seed of the couplings (``numpy.random.default_rng(seed)``; the upper triangle is
            drawn row by row), so an instance is reproducible on any device.
    """

    def __init__(self, n: int, beta: float, seed: int = 0) -> None:
        if n < 2:
            raise BoltzgenError(f"sk needs n >= 2 spins, got {n}")
        rng = np.random.default_rng(seed)
        upper = np.triu(rng.standard_normal((n, n)) / math.sqrt(n), k=1)
        super().__init__(upper + upper.T, beta)
        self.seed = int(seed)


class EdwardsAnderson2D(PairwiseSpinEnergy):
    r"""2-D Edwards-Anderson +-J spin glass on a periodic L x L torus: E = -sum_<ij> J_ij s_i s_j.

    Arguments:
        L: Linear size (>= 3, so that the 2 L^2 bonds join distinct pairs).
        beta: Inverse temperature.
        seed: Seed of the bonds (``numpy.random.default_rng(seed)``: right bonds (L, L), then down
            bonds (L, L), each +1 or -1 with probability 1/2).
    """

    def __init__(self, L: int, beta: float, seed: int = 0) -> None:
        if L < 3:
            raise BoltzgenError(f"the Edwards-Anderson model needs L >= 3, got L={L}")
        rng = np.random.default_rng(seed)
        right = rng.choice([-1.0, 1.0], size=(L, L))
        down = rng.choice([-1.0, 1.0], size=(L, L))
        super().__init__(_torus_couplings(right, down), beta)
        self.L, self.seed = int(L), int(seed)


class PottsModel2D(DiscreteEnergy):
    r"""q-state Potts model on a periodic L x L square lattice: E = -J sum_<ij> delta(s_i, s_j).

    Units take the values 0 .. q-1 (float tensors, ``(batch, L * L)``, site = row * L + column);
    the sum runs over the 2 L^2 bonds (every site's right and down neighbour).
    beta_c J = ln(1 + sqrt q) (the transition is continuous for q <= 4, first order above).
    At q = 2, delta(s, s') = (1 + sigma sigma') / 2 with sigma = 2 s - 1 maps it onto the Ising
    model at coupling J / 2: log Z = beta J L^2 + log Z_Ising(beta J / 2), Kaufman's formula,
    which :attr:`log_z` uses for any L.

    Arguments:
        L: Linear size (>= 3, so that the bonds join distinct pairs).
        q: Number of states per site (>= 2).
        beta: Inverse temperature.
        J: Coupling (default 1, ferromagnetic).
    """

    def __init__(self, L: int, q: int, beta: float, J: float = 1.0) -> None:
        if L < 3:
            raise BoltzgenError(f"the 2-D Potts model needs L >= 3, got L={L}")
        if q < 2:
            raise BoltzgenError(f"the Potts model needs q >= 2 states per site, got q={q}")
        super().__init__(L * L, beta, levels=q)
        self.L, self.J = int(L), float(J)
        site = torch.arange(L * L).view(L, L)
        neighbors = torch.stack([site.roll(-1, 1).reshape(-1), site.roll(-1, 0).reshape(-1)], 1)
        #: Right and down neighbour of every site, ``(N, 2)``.
        self.register_buffer("neighbors", neighbors)
        #: J as a 0-d float tensor: the device and dtype the target was moved to.
        self.register_buffer("coupling", torch.tensor(float(J), dtype=torch.float64))

    @property
    def q(self) -> int:
        """States per site (the :attr:`levels` of the units)."""
        return self.levels

    def coupling_energy(self, s: Tensor) -> Tensor:
        """E(s) = -J (number of bonds joining equal states) of ``(batch, N)``: ``(batch,)``."""
        equal = (s[:, :, None] == s[:, self.neighbors]).to(s.dtype)
        return -self.coupling.to(s.dtype) * equal.sum((1, 2))

    @property
    def log_z_method(self) -> str | None:
        """Kaufman's formula through the Ising mapping at q = 2 (any L); enumeration of the q**N
        states (<= 2**24) otherwise."""
        return "kaufman" if self.q == 2 else super().log_z_method

    def _closed_form_log_z(self) -> float:
        coupling = self.beta * self.J
        return coupling * self.L**2 + ising_log_z_kaufman(self.L, coupling / 2)

    def extra_repr(self) -> str:
        return f"L={self.L}, q={self.q}, beta={self.beta:g}, J={self.J:g}"

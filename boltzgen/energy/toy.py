"""Continuous toy targets with exact references: Gaussian mixtures, double wells, ManyWell.

All energies are reduced (dimensionless) at their own temperature T0 = 1, so that
p(x) = exp(-u(x)) / Z. Each class documents its parameters and exposes exact ``log_z`` and exact
``sample(n)`` where they are available, for use as test references.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from ..errors import BoltzgenError
from .base import Energy

__all__ = ["GaussianMixture2D", "DoubleWell", "ManyWell", "QuarticWell1D"]


class GaussianMixture2D(Energy):
    r"""Mixture of isotropic 2-D Gaussians with modes evenly spaced on a ring.

    u(x) = -log sum_k w_k N(x; mu_k, sigma^2 I), mu_k = radius (cos 2 pi k/K, sin 2 pi k/K).
    The density is normalised, so log Z = 0 exactly.

    Arguments:
        n_modes: Number of modes K (default 8).
        radius: Radius of the ring of centres (default 3).
        sigma: Standard deviation of each mode (default 0.3).
        weights: Mode weights (normalised here); ``None`` for uniform weights 1/K. The
            non-uniform default used in tests is ``GaussianMixture2D.skewed_weights(8)``.
    """

    can_sample = True

    def __init__(
        self,
        n_modes: int = 8,
        radius: float = 3.0,
        sigma: float = 0.3,
        weights: Sequence[float] | None = None,
    ) -> None:
        super().__init__(event_shape=(2,))
        if n_modes < 1 or radius < 0 or sigma <= 0:
            raise BoltzgenError("gaussian-mixture needs n_modes >= 1, radius >= 0 and sigma > 0")
        angles = torch.arange(n_modes, dtype=torch.float64) * (2 * math.pi / n_modes)
        w = (
            torch.full((n_modes,), 1.0 / n_modes, dtype=torch.float64)
            if weights is None
            else torch.as_tensor(weights, dtype=torch.float64)
        )
        if w.shape != (n_modes,) or not bool((w > 0).all()):
            raise BoltzgenError(f"gaussian-mixture weights must be {n_modes} positive numbers")
        self.register_buffer("centers", radius * torch.stack([angles.cos(), angles.sin()], dim=1))
        self.register_buffer("log_weights", (w / w.sum()).log())
        self.sigma = float(sigma)

    @property
    def log_z(self) -> float:
        """0: the mixture density is normalized."""
        return 0.0

    @staticmethod
    def skewed_weights(n_modes: int = 8) -> list[float]:
        """Non-uniform weights proportional to 1, 2, ..., K (normalised by the energy)."""
        return [float(k + 1) for k in range(n_modes)]

    def _energy(self, x: Tensor) -> Tensor:
        centers = self.centers.to(x.dtype)
        sq = ((x[:, None, :] - centers) ** 2).sum(-1)  # (B, K)
        log_norm = -math.log(2 * math.pi * self.sigma**2)
        log_p = (
            torch.logsumexp(self.log_weights.to(x.dtype) - 0.5 * sq / self.sigma**2, dim=1)
            + log_norm
        )
        return -log_p

    def mode_index(self, x: Tensor) -> Tensor:
        """Index of the nearest mode centre of each state, shape (batch,)."""
        return torch.cdist(x.to(self.centers.dtype), self.centers).argmin(dim=1)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """Exact samples, shape ``(n, 2)``, float64."""
        k = torch.multinomial(self.log_weights.exp(), n, replacement=True, generator=generator)
        noise = torch.randn(n, 2, dtype=torch.float64, generator=generator)
        return self.centers[k] + self.sigma * noise


class QuarticWell1D:
    r"""The 1-D double well u(x) = a x^4 + b x^2 + c x with exact statistics by quadrature.

    log Z and the inverse CDF are computed on a uniform grid of ``n_grid`` points over
    [-L, L] (L chosen where u exceeds its minimum by 80), with the trapezoidal rule in float64;
    the quadrature error is below 1e-12 for the default parameters.
    """

    def __init__(
        self, a: float = 1.0, b: float = -6.0, c: float = -0.5, n_grid: int = 200_001
    ) -> None:
        if a <= 0:
            raise BoltzgenError("the quartic coefficient a of a double well must be positive")
        self.a, self.b, self.c = float(a), float(b), float(c)
        half_width = 1.0
        while self(np.array([-half_width, half_width])).min() < self._u_min(half_width) + 80:
            half_width *= 1.5
        self.grid = np.linspace(-half_width, half_width, n_grid)
        log_density = -self(self.grid)
        shift = log_density.max()
        density = np.exp(log_density - shift)
        spacing = self.grid[1] - self.grid[0]
        cdf = np.concatenate([[0.0], np.cumsum(0.5 * (density[1:] + density[:-1]) * spacing)])
        self.log_z = float(math.log(cdf[-1]) + shift)
        self.cdf = cdf / cdf[-1]

    def _u_min(self, half_width: float) -> float:
        return float(self(np.linspace(-half_width, half_width, 1001)).min())

    def __call__(self, x):
        """u(x) for numpy arrays or torch tensors of any shape."""
        return self.a * x**4 + self.b * x**2 + self.c * x

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """Exact samples by inverse-CDF interpolation on the quadrature grid, shape (n,)."""
        return np.interp(rng.random(n), self.cdf, self.grid)


class DoubleWell(Energy):
    r"""d-dimensional double well: a quartic well along the first ``n_wells`` axes, harmonic in the
    rest.

    u(x) = sum_{i < n_wells} (a x_i^4 + b x_i^2 + c x_i) + 0.5 sum_{i >= n_wells} x_i^2.

    With the defaults (a, b, c) = (1, -6, -0.5) each well has two minima near x = +-1.7 separated
    by a barrier of about 9 kT, the one at positive x deeper by about 1.7 kT. Exact log Z and exact
    samples
    follow from 1-D quadrature (:class:`QuarticWell1D`).

    Arguments:
        dim: Total number of dimensions d >= n_wells.
        n_wells: Number of double-well axes (default 1).
        a, b, c: Coefficients of the quartic.
    """

    can_sample = True

    def __init__(
        self, dim: int = 2, n_wells: int = 1, a: float = 1.0, b: float = -6.0, c: float = -0.5
    ) -> None:
        if not 1 <= n_wells <= dim:
            raise BoltzgenError(
                f"double-well needs 1 <= n_wells <= dim, got n_wells={n_wells}, dim={dim}"
            )
        super().__init__(event_shape=(dim,))
        self.n_wells = int(n_wells)
        self.well = QuarticWell1D(a, b, c)
        self.register_buffer("well_mask", self._well_axes().to(torch.float64))

    def _well_axes(self) -> Tensor:
        mask = torch.zeros(self.dim, dtype=torch.bool)
        mask[: self.n_wells] = True
        return mask

    def _energy(self, x: Tensor) -> Tensor:
        mask = self.well_mask.to(x.dtype)
        return (mask * self.well(x) + (1 - mask) * 0.5 * x**2).sum(dim=1)

    @property
    def log_z(self) -> float:
        """Exact log Z (quadrature for the wells, closed form for the Gaussian axes)."""
        n_gauss = self.dim - self.n_wells
        return self.n_wells * self.well.log_z + 0.5 * n_gauss * math.log(2 * math.pi)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """Exact samples, shape ``(n, dim)``, float64 (inverse-CDF on the quadrature grid, drawn
        with a NumPy generator seeded from ``generator``)."""
        seed = int(torch.randint(2**62, (1,), generator=generator))
        rng = np.random.default_rng(seed)
        x = rng.standard_normal((n, self.dim))
        wells = self.well_mask.bool().numpy()
        x[:, wells] = self.well.sample(n * self.n_wells, rng).reshape(n, self.n_wells)
        return torch.from_numpy(x)


class ManyWell(DoubleWell):
    r"""The separable ManyWell target of the FAB paper (Midgley et al. 2023): ManyWell-32 by
    default.

    ``n_pairs`` independent 2-D factors, each a 1-D double well in its first coordinate times a
    standard Gaussian in its second: u(x) = sum_i [x_{2i}^4 - 6 x_{2i}^2 - 0.5 x_{2i} +
    0.5 x_{2i+1}^2]. With 16 pairs (32 dimensions) there are 2^16 modes. Exact log Z and samples
    by quadrature, as for :class:`DoubleWell`.
    """

    def __init__(
        self, n_pairs: int = 16, a: float = 1.0, b: float = -6.0, c: float = -0.5
    ) -> None:
        self.n_pairs = int(n_pairs)
        super().__init__(dim=2 * n_pairs, n_wells=n_pairs, a=a, b=b, c=c)

    def _well_axes(self) -> Tensor:
        mask = torch.zeros(self.dim, dtype=torch.bool)
        mask[0::2] = True
        return mask

"""Exact references for discrete targets: enumeration of all states, Kaufman's formula,
Curie-Weiss.

States of ``n`` units with K levels each (``levels``, 2 unless stated) are numbered 0 .. K**n - 1;
unit k of state i is digit (n - 1 - k) of i in base K (the first unit is the most significant
digit). Two-level units take the values ``(-1, +1)`` (spins) or ``(0, 1)`` (binary units); units
of K > 2 levels take the values 0 .. K - 1 (Potts states). Everything here works in float64 on the
device the caller asks for and walks the K**n states in chunks, so that up to 2**24 states
(:data:`MAX_ENUMERATION_UNITS` binary units) fit in memory.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import numpy as np
import torch
from torch import Tensor

from ..errors import BoltzgenError

__all__ = [
    "MAX_ENUMERATION_UNITS",
    "check_enumerable",
    "states_from_indices",
    "enumerate_states",
    "log_weights_by_enumeration",
    "ExactDistribution",
    "ising_log_z_kaufman",
    "curie_weiss_log_z",
    "signed_logsumexp",
]

#: The largest number of units that exact enumeration accepts (2**24 = 16.8 million states).
MAX_ENUMERATION_UNITS = 24

_CHUNK = 1 << 16


def check_enumerable(n_units: int, what: str = "enumeration", levels: int = 2) -> None:
    """Raise :class:`BoltzgenError` unless ``n_units >= 1`` and ``levels**n_units <= 2**24``
    (``1 <= n_units <= MAX_ENUMERATION_UNITS`` for two-level units)."""
    if levels > 2 and n_units >= 1 and levels**n_units > 1 << MAX_ENUMERATION_UNITS:
        raise BoltzgenError(
            f"{what} needs at most 2**{MAX_ENUMERATION_UNITS} states, got {levels}**{n_units}; "
            "use a smaller system, or Monte Carlo estimates for large ones"
        )
    if not 1 <= n_units <= MAX_ENUMERATION_UNITS:
        raise BoltzgenError(
            f"{what} needs 1 <= N <= {MAX_ENUMERATION_UNITS} units (2**N states), got "
            f"N={n_units}; "
            "use a smaller system, or Monte Carlo (MCMC / AIS) estimates for large ones"
        )


def states_from_indices(
    indices: Tensor,
    n_units: int,
    spin: bool = True,
    dtype: torch.dtype = torch.float64,
    levels: int = 2,
) -> Tensor:
    """The states numbered ``indices``.

    Arguments:
        indices: Integer tensor of state numbers, shape ``(batch,)``.
        n_units: Number of units n.
        spin: Two levels: values ``(-1, +1)`` if true, ``(0, 1)`` otherwise.
        dtype: Floating dtype of the result.
        levels: Levels K per unit; K > 2 gives the values 0 .. K - 1 (``spin`` is ignored).

    Returns:
        States, shape ``(batch, n_units)``, on the device of ``indices``.
    """
    if levels > 2:
        powers = levels ** torch.arange(n_units - 1, -1, -1, device=indices.device)
        return (
            torch.div(indices[:, None], powers, rounding_mode="floor").remainder(levels).to(dtype)
        )
    shifts = torch.arange(n_units - 1, -1, -1, device=indices.device)
    bits = ((indices[:, None] >> shifts) & 1).to(dtype)
    return 2 * bits - 1 if spin else bits


def enumerate_states(
    n_units: int,
    spin: bool = True,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float64,
    chunk: int = _CHUNK,
    levels: int = 2,
) -> Iterator[Tensor]:
    """All K**n states (K = ``levels``) in index order, in chunks ``(<= chunk, n_units)``."""
    check_enumerable(n_units, levels=levels)
    total = levels**n_units
    for start in range(0, total, chunk):
        indices = torch.arange(start, min(start + chunk, total), device=device)
        yield states_from_indices(indices, n_units, spin, dtype, levels)


def log_weights_by_enumeration(
    log_weight: Callable[[Tensor], Tensor],
    n_units: int,
    spin: bool = True,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float64,
    levels: int = 2,
) -> Tensor:
    """Unnormalised log-probabilities of every state, shape ``(levels**n_units,)``.

    Arguments:
        log_weight: Maps states ``(batch, n_units)`` to log p~ ``(batch,)``, e.g. ``lambda s:
            -energy(s)``. Autograd flows through it (useful for exact objectives on few units).
        n_units, spin, device, dtype, levels: As in :func:`enumerate_states`.
    """
    states = enumerate_states(n_units, spin, device, dtype, levels=levels)
    return torch.cat([log_weight(chunk) for chunk in states])


class ExactDistribution:
    """A distribution over all K**n states, held as normalised log-probabilities.

    Arguments:
        log_weights: Unnormalised log-probabilities of all states in index order, ``(K**n,)``.
        spin: Two levels: whether units take values ``(-1, +1)`` (else ``(0, 1)``).
        levels: Levels K per unit (K > 2: values 0 .. K - 1).

    Attributes:
        log_z: log of the normalising constant, 0-d tensor.
        log_prob: Normalised log-probabilities, ``(K**n,)``.
    """

    def __init__(self, log_weights: Tensor, spin: bool = True, levels: int = 2) -> None:
        n_states = log_weights.shape[0]
        n_units = round(math.log(max(n_states, 1), levels)) if levels >= 2 else 0
        if log_weights.dim() != 1 or n_units < 1 or n_states != levels**n_units:
            raise BoltzgenError(
                f"log_weights must have {levels}**n entries, got shape {tuple(log_weights.shape)}"
            )
        self.n_units = n_units
        self.spin = spin and levels == 2
        self.levels = levels
        self.log_z = torch.logsumexp(log_weights, dim=0)
        self.log_prob = log_weights - self.log_z

    @classmethod
    def from_energy(
        cls,
        energy: Callable[[Tensor], Tensor],
        n_units: int,
        spin: bool = True,
        device: torch.device | str | None = None,
        levels: int = 2,
    ) -> ExactDistribution:
        """p(s) proportional to exp(-u(s)) for a reduced energy ``u`` (float64, by enumeration)."""
        with torch.no_grad():
            log_weights = log_weights_by_enumeration(
                lambda s: -energy(s), n_units, spin, device, levels=levels
            )
        return cls(log_weights, spin, levels)

    @property
    def probs(self) -> Tensor:
        """Probabilities of all states, ``(K**n,)``."""
        return self.log_prob.exp()

    def states(self, chunk: int = _CHUNK) -> Iterator[Tensor]:
        """All states in index order, in chunks (float64, device of the log-probabilities)."""
        return enumerate_states(
            self.n_units, self.spin, self.log_prob.device, torch.float64, chunk, self.levels
        )

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """Exact i.i.d. samples, shape ``(n, n_units)``, float64."""
        indices = torch.multinomial(self.probs, n, replacement=True, generator=generator)
        return states_from_indices(indices, self.n_units, self.spin, levels=self.levels)

    def expectation(self, observable: Callable[[Tensor], Tensor]) -> Tensor:
        """Exact E_p[f(s)] for ``f: (batch, n) -> (batch, ...)``."""
        probs = self.probs
        total, start = 0.0, 0
        for states in self.states():
            values = observable(states)
            weights = probs[start : start + states.shape[0]].reshape(
                -1, *([1] * (values.dim() - 1))
            )
            total = total + (weights * values).sum(0)
            start += states.shape[0]
        return total


def signed_logsumexp(log_abs: Tensor, signs: Tensor) -> Tensor:
    """log(sum_i sign_i exp(log_abs_i)) for a sum known to be positive (float64, 1-D inputs)."""
    shift = log_abs.max()
    return shift + torch.log((signs * torch.exp(log_abs - shift)).sum())


def _log_2cosh(x: Tensor) -> Tensor:
    a = x.abs()
    return a + torch.log1p(torch.exp(-2 * a))


def _log_abs_2sinh(x: Tensor) -> Tensor:
    a = x.abs()
    return a + torch.log(-torch.expm1(-2 * a))


def ising_log_z_kaufman(L: int, coupling: float) -> float:
    r"""Exact log Z of the zero-field 2-D Ising model on a periodic L x L torus (Kaufman 1949).

    Z = sum_s exp(K sum_<ij> s_i s_j), K = beta J, 2 L^2 bonds (each site's right and down
    neighbour). With gamma_k defined by cosh gamma_k = cosh 2K coth 2K - cos(pi k / L) and
    gamma_0 = 2K + ln tanh K (negative below T_c, which makes the fourth term negative),

        Z = 1/2 (2 sinh 2K)^{L^2/2} sum_{i=1..4} Z_i,
        Z_1 = prod_r 2 cosh(L gamma_{2r+1}/2),  Z_2 = prod_r 2 sinh(L gamma_{2r+1}/2),
        Z_3 = prod_r 2 cosh(L gamma_{2r}/2),    Z_4 = prod_r 2 sinh(L gamma_{2r}/2),

    r = 0 .. L-1. The four terms are summed with their signs in log space (float64).

    Arguments:
        L: Linear size, >= 2.
        coupling: K = beta J (dimensionless). Negative K (antiferromagnet) is mapped to -K on
            even L; odd L with K < 0 is frustrated and refused.

    Returns:
        log Z (float).
    """
    if L < 2:
        raise BoltzgenError(f"Kaufman's formula needs L >= 2, got L={L}")
    n_sites = L * L
    if coupling == 0:
        return n_sites * math.log(2.0)
    if coupling < 0:
        if L % 2:
            raise BoltzgenError(
                "an antiferromagnet on an odd L torus is frustrated: use enumeration (L <= 4)"
            )
        coupling = -coupling
    K = torch.tensor(coupling, dtype=torch.float64)
    k = torch.arange(2 * L, dtype=torch.float64)
    arg = torch.cosh(2 * K) / torch.tanh(2 * K) - torch.cos(math.pi * k / L)
    gamma = torch.arccosh(arg.clamp(min=1.0))
    gamma[0] = 2 * K + torch.log(torch.tanh(K))
    odd, even = L * gamma[1::2] / 2, L * gamma[0::2] / 2
    log_terms = torch.stack(
        [
            _log_2cosh(odd).sum(),
            _log_abs_2sinh(odd).sum(),
            _log_2cosh(even).sum(),
            _log_abs_2sinh(even).sum(),
        ]
    )
    signs = torch.stack(
        [
            torch.ones((), dtype=torch.float64),
            torch.sign(odd).prod(),
            torch.ones((), dtype=torch.float64),
            torch.sign(even).prod(),
        ]
    )
    log_prefactor = -math.log(2.0) + 0.5 * n_sites * float(torch.log(2 * torch.sinh(2 * K)))
    return log_prefactor + float(signed_logsumexp(log_terms, signs))


def curie_weiss_log_z(n_spins: int, beta: float, field: float = 0.0) -> float:
    r"""Exact log Z of the Curie-Weiss model, u(s) = -beta [(sum s)^2/(2N) + h sum s].

    Sums over the magnetisation M = 2k - N with binomial multiplicities C(N, k), in float64.
    """
    if n_spins < 1:
        raise BoltzgenError(f"curie-weiss needs N >= 1 spins, got {n_spins}")
    k = np.arange(n_spins + 1, dtype=np.float64)
    m = 2 * k - n_spins
    log_binom = np.array(
        [math.lgamma(n_spins + 1) - math.lgamma(j + 1) - math.lgamma(n_spins - j + 1) for j in k]
    )
    log_terms = log_binom + beta * (m**2 / (2 * n_spins) + field * m)
    shift = log_terms.max()
    return float(shift + np.log(np.exp(log_terms - shift).sum()))

"""Markov chain Monte Carlo for pairwise spin models: Metropolis, Swendsen-Wang, parallel
tempering.

All samplers act on a batch of independent chains at once, shape ``(chains, N)`` with spins +-1,
on the device and dtype of the given states, and never synchronise with the device inside a step
(fixed iteration counts, no data-dependent Python branches). They target p(s) proportional to
exp(-beta E(s)) of a :class:`~boltzgen.energy.lattice.PairwiseSpinEnergy`, read through its
padded neighbour table.

- :func:`metropolis_sweep`: one systematic-scan sweep of single-spin Metropolis updates, with a
  per-chain inverse temperature (so that parallel tempering can run every replica in one batch).
- :func:`swendsen_wang_step`: one Swendsen-Wang cluster update (any coupling signs, zero field):
  a satisfied bond (J_ij s_i s_j > 0) is frozen with probability 1 - exp(-2 beta |J_ij|), clusters
  are found by min-label propagation with pointer jumping for a fixed N - 1 rounds (enough for
  any cluster), and every cluster flips with probability 1/2.
- :class:`ParallelTempering`: Metropolis sweeps on a ladder of inverse temperatures with swaps of
  neighbouring replicas, accepted with probability min(1, exp((beta_r - beta_r+1)(E_r - E_r+1))).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from ..energy.lattice import PairwiseSpinEnergy
from ..errors import BoltzgenError
from .ladders import geometric_ladder

__all__ = [
    "random_spins",
    "metropolis_sweep",
    "swendsen_wang_step",
    "sample_swendsen_wang",
    "ParallelTempering",
    "sample_parallel_tempering",
]


def random_spins(
    n_chains: int,
    n_spins: int,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float64,
) -> Tensor:
    """Uniformly random spin states, shape ``(n_chains, n_spins)``."""
    u = torch.rand(n_chains, n_spins, generator=generator, device=device, dtype=dtype)
    return torch.where(u < 0.5, -1.0, 1.0).to(dtype)


def metropolis_sweep(
    energy: PairwiseSpinEnergy,
    s: Tensor,
    beta: Tensor | float | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """One sweep of single-spin-flip Metropolis updates, sites in order 0 .. N-1.

    Arguments:
        energy: The spin model (its ``beta`` is used unless ``beta`` is given).
        s: Spins, shape ``(chains, N)``; not modified.
        beta: Inverse temperature, a number or one per chain, shape ``(chains,)``.
        generator: Random generator on the device of ``s``.

    Returns:
        New spins, shape ``(chains, N)``.
    """
    s = s.clone()
    beta = torch.as_tensor(energy.beta if beta is None else beta, dtype=s.dtype, device=s.device)
    neighbors, couplings, field = (
        energy.neighbors,
        energy.couplings.to(s.dtype),
        energy.field.to(s.dtype),
    )
    log_u = torch.log(torch.rand(s.shape, generator=generator, device=s.device, dtype=s.dtype))
    for i in range(energy.n_spins):
        local = s[:, neighbors[i]] @ couplings[i] + field[i]
        delta = 2 * s[:, i] * local  # E(flipped) - E(s)
        accept = log_u[:, i] < -beta * delta
        s[:, i] = torch.where(accept, -s[:, i], s[:, i])
    return s


class _BondTable:
    """Symmetric bond bookkeeping of a neighbour table for cluster moves."""

    def __init__(self, energy: PairwiseSpinEnergy) -> None:
        neighbors = energy.neighbors
        n, k = neighbors.shape
        site = torch.arange(n, device=neighbors.device)[:, None].expand(n, k)
        # entry e = (i, k) with j = neighbors[i, k]; its reverse is the entry (j, k') with
        # neighbors[j, k'] = i.
        match = neighbors[neighbors] == site[:, :, None]  # (n, k, k): neighbors[j, k'] == i
        reverse_slot = match.to(torch.int64).argmax(-1)
        reverse = (neighbors * k + reverse_slot).reshape(-1)
        entry = torch.arange(n * k, device=neighbors.device)
        self.canonical = torch.minimum(entry, reverse)
        self.neighbors = neighbors
        self.couplings = energy.couplings


def swendsen_wang_step(
    energy: PairwiseSpinEnergy,
    s: Tensor,
    generator: torch.Generator | None = None,
    bonds: _BondTable | None = None,
) -> Tensor:
    """One Swendsen-Wang update of every chain (zero field), shape ``(chains, N)`` -> same."""
    bonds = _BondTable(energy) if bonds is None else bonds
    chains, n = s.shape
    neighbors, couplings = bonds.neighbors, bonds.couplings.to(s.dtype)
    u = torch.rand(chains, neighbors.numel(), generator=generator, device=s.device, dtype=s.dtype)
    u = u[:, bonds.canonical].reshape(chains, *neighbors.shape)
    satisfied = couplings * s[:, :, None] * s[:, neighbors] > 0
    frozen = satisfied & (u < -torch.expm1(-2 * energy.beta * couplings.abs()))
    # A thawed bond points at a label no site has (n), so the min over neighbours ignores it.
    blocked = (~frozen).reshape(chains, -1).to(torch.int64) * n
    flat_neighbors = neighbors.reshape(1, -1).expand(chains, -1)
    labels = torch.arange(n, device=s.device).expand(chains, n).contiguous()
    for _ in range(max(n - 1, 1)):
        candidate = (
            (labels.gather(1, flat_neighbors) + blocked).reshape(chains, n, -1).min(-1).values
        )
        labels = torch.minimum(labels, candidate)
        labels = labels.gather(1, labels)
    flip = torch.rand(chains, n, generator=generator, device=s.device, dtype=s.dtype) < 0.5
    return torch.where(flip.gather(1, labels), -s, s)


def _check_zero_field(energy: PairwiseSpinEnergy) -> None:
    if energy.has_field:
        raise BoltzgenError(
            "Swendsen-Wang needs zero external field; use metropolis or parallel tempering"
        )


def sample_swendsen_wang(
    energy: PairwiseSpinEnergy,
    n_samples: int,
    n_chains: int = 256,
    n_burn_in: int = 100,
    thin: int = 1,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float64,
) -> Tensor:
    """Samples from Swendsen-Wang chains: ``n_samples`` states, shape ``(n_samples, N)``.

    Runs ``n_chains`` chains from random states for ``n_burn_in`` steps, then records every
    chain after each ``thin`` further steps until ``n_samples`` states are collected (chain-major
    order: rows ``t * n_chains + c``).
    """
    _check_zero_field(energy)
    bonds = _BondTable(energy.to(device))
    s = random_spins(n_chains, energy.n_spins, generator, device, dtype)
    for _ in range(n_burn_in):
        s = swendsen_wang_step(energy, s, generator, bonds)
    records = []
    for _ in range(math.ceil(n_samples / n_chains)):
        for _ in range(thin):
            s = swendsen_wang_step(energy, s, generator, bonds)
        records.append(s)
    return torch.cat(records)[:n_samples]


class ParallelTempering:
    """Replica-exchange Monte Carlo on a ladder of inverse temperatures.

    Arguments:
        energy: The spin model; its ``beta`` is the target (the last rung of the ladder).
        betas: Increasing inverse temperatures ending at ``energy.beta``; ``None``: a geometric
            ladder of ``n_replicas`` rungs from ``min(0.1, beta)`` to beta.
        n_chains: Independent chains per rung.
        n_replicas: Rungs when ``betas`` is ``None``.
        sweeps_per_exchange: Metropolis sweeps between two rounds of swap attempts.
        generator, device, dtype: Random generator, device and dtype of the states.

    Attributes:
        states: Spins of every replica, shape ``(n_rungs, n_chains, N)``.
        swap_acceptance: Running count of accepted swaps per neighbouring pair, ``(n_rungs - 1,)``.
    """

    def __init__(
        self,
        energy: PairwiseSpinEnergy,
        betas: Sequence[float] | None = None,
        n_chains: int = 64,
        n_replicas: int = 16,
        sweeps_per_exchange: int = 1,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float64,
    ) -> None:
        if betas is None:
            betas = geometric_ladder(min(0.1, energy.beta), energy.beta, n_replicas)
        betas = [float(b) for b in betas]
        if (
            len(betas) < 2
            or any(b2 <= b1 for b1, b2 in zip(betas, betas[1:]))
            or abs(betas[-1] - energy.beta) > 1e-12
        ):
            raise BoltzgenError(
                "parallel tempering needs >= 2 increasing inverse temperatures ending at the "
                "target's beta"
            )
        self.energy = energy.to(device)
        self.betas = torch.tensor(betas, device=device, dtype=dtype)
        self.sweeps_per_exchange = int(sweeps_per_exchange)
        self.generator = generator
        self.states = random_spins(
            len(betas) * n_chains, energy.n_spins, generator, device, dtype
        ).reshape(len(betas), n_chains, -1)
        self.swap_acceptance = torch.zeros(len(betas) - 1, device=device, dtype=dtype)
        self._round = 0

    def step(self) -> Tensor:
        """One round (sweeps, then swap attempts on alternating pairs); returns the target rung's
        states."""
        rungs, chains, n = self.states.shape
        beta_per_chain = self.betas[:, None].expand(rungs, chains).reshape(-1)
        s = self.states.reshape(-1, n)
        for _ in range(self.sweeps_per_exchange):
            s = metropolis_sweep(self.energy, s, beta_per_chain, self.generator)
        s = s.reshape(rungs, chains, n)
        energies = self.energy.coupling_energy(s.reshape(-1, n)).reshape(rungs, chains)
        lower = torch.arange(self._round % 2, rungs - 1, 2, device=s.device)
        upper = lower + 1
        log_accept = (self.betas[lower] - self.betas[upper])[:, None] * (
            energies[lower] - energies[upper]
        )
        u = torch.rand(log_accept.shape, generator=self.generator, device=s.device, dtype=s.dtype)
        accept = (torch.log(u) < log_accept)[:, :, None]
        new = s.clone()
        new[lower] = torch.where(accept, s[upper], s[lower])
        new[upper] = torch.where(accept, s[lower], s[upper])
        self.swap_acceptance[lower] += accept.to(s.dtype).mean((1, 2))
        self.states = new
        self._round += 1
        return new[-1]


def sample_parallel_tempering(
    energy: PairwiseSpinEnergy,
    n_samples: int,
    n_chains: int = 64,
    n_burn_in: int = 200,
    thin: int = 1,
    betas: Sequence[float] | None = None,
    n_replicas: int = 16,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float64,
) -> Tensor:
    """Samples at the target's beta from :class:`ParallelTempering`, shape ``(n_samples, N)``.

    ``n_burn_in`` rounds are discarded, then the target rung's chains are recorded every ``thin``
    rounds (chain-major order, as in :func:`sample_swendsen_wang`).
    """
    sampler = ParallelTempering(energy, betas, n_chains, n_replicas, 1, generator, device, dtype)
    for _ in range(n_burn_in):
        sampler.step()
    records = []
    for _ in range(math.ceil(n_samples / n_chains)):
        for _ in range(thin):
            target = sampler.step()
        records.append(target)
    return torch.cat(records)[:n_samples]

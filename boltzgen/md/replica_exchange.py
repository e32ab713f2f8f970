"""Temperature replica exchange between neighbouring rungs of a ladder, vectorised over chains.

The R = K * C replicas of a run form K temperature rungs of C independent chains; replica
``k * C + c`` is chain c at temperature T_k. Every exchange attempt pairs rung k with rung k + 1
for all k of one parity (even attempts: k = 0, 2, ...; odd attempts: k = 1, 3, ...), separately
for each chain, and swaps the two configurations with the Metropolis probability

    p = min(1, exp[(beta_k - beta_k+1) (U_k - U_k+1)]),  beta = 1/(k_B T),

computed from reduced energies at the energy's own temperature T0 as
(T0/T_k - T0/T_k+1) (u0_k - u0_k+1). Swapped velocities are rescaled by sqrt(T_new / T_old) so
each stays Maxwell-Boltzmann at its new rung. No host-device synchronisation.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from ..errors import BoltzgenError
from .integrator import MDState

__all__ = ["exchange_log_acceptance", "ReplicaExchange"]


def exchange_log_acceptance(
    reduced_energy_i: Tensor,
    reduced_energy_j: Tensor,
    temperature_i: float | Tensor,
    temperature_j: float | Tensor,
    energy_temperature: float,
) -> Tensor:
    """Log Metropolis probability (before the min with 0) of swapping configurations i and j.

    Arguments:
        reduced_energy_i, reduced_energy_j: u0 = U/(k_B T0) of the configurations now at
            temperatures T_i and T_j, any matching shapes.
        temperature_i, temperature_j: The two rungs' temperatures.
        energy_temperature: T0, the temperature the reduced energies refer to.

    Returns:
        (T0/T_i - T0/T_j) (u0_i - u0_j), same shape as the energies.
    """
    return (energy_temperature / temperature_i - energy_temperature / temperature_j) * (
        reduced_energy_i - reduced_energy_j
    )


class ReplicaExchange:
    """Neighbour swaps on a ladder of K temperatures with C chains each.

    Arguments:
        temperatures: The ladder, increasing, length K (K = 1: no exchanges).
        n_chains: C, chains per temperature.
        energy_temperature: T0 of the reduced energies in the states.

    Attributes:
        accepted: ``(K - 1,)`` accepted swaps per neighbour pair (a tensor on the states' device).
        attempted: ``(K - 1,)`` attempted swaps per neighbour pair.
    """

    def __init__(
        self, temperatures: Sequence[float], n_chains: int, energy_temperature: float
    ) -> None:
        temperatures = [float(t) for t in temperatures]
        if not temperatures or any(b <= a for a, b in zip(temperatures, temperatures[1:])):
            raise BoltzgenError(
                f"the temperature ladder must be strictly increasing, got {temperatures}"
            )
        if n_chains < 1:
            raise BoltzgenError(f"need at least one chain per temperature, got {n_chains}")
        self.temperatures = temperatures
        self.n_chains = int(n_chains)
        self.energy_temperature = float(energy_temperature)
        self.accepted = torch.zeros(max(len(temperatures) - 1, 0), dtype=torch.float64)
        self.attempted = torch.zeros_like(self.accepted)

    @property
    def n_replicas(self) -> int:
        """R = K * C."""
        return len(self.temperatures) * self.n_chains

    def replica_temperatures(self) -> Tensor:
        """``(R,)`` temperature of each replica (rung-major), float64."""
        return torch.tensor(self.temperatures, dtype=torch.float64).repeat_interleave(
            self.n_chains
        )

    def acceptance_rates(self) -> Tensor:
        """``(K - 1,)`` accepted / attempted swaps per neighbour pair (NaN where never
        attempted)."""
        return self.accepted / self.attempted

    def permutation(
        self, reduced_energies: Tensor, attempt: int, generator: torch.Generator | None = None
    ) -> Tensor:
        """One round of swap attempts between rungs (k, k + 1) with k = attempt mod 2, 2 + attempt
        mod 2, ..., as a permutation of the ladder's slots.

        Arguments:
            reduced_energies: ``(R,)`` u0 of the configuration in each slot, rung-major (slot
                ``k * C + c`` is chain c at rung k).
            attempt: Index of this attempt; its parity picks the pairs.
            generator: Random generator on the energies' device (draws ``(pairs, C)`` uniforms;
                none when the parity leaves no pair).

        Returns:
            ``order`` ``(R,)`` long: after the round, slot s holds the configuration that slot
            ``order[s]`` held (the identity where nothing was swapped). The acceptance counters
            are updated.
        """
        k_count, c = len(self.temperatures), self.n_chains
        device = reduced_energies.device
        source = torch.arange(k_count * c, device=device).view(k_count, c)
        lower = self.lower_rungs(attempt)
        if not lower:
            return source.reshape(-1)
        self.accepted = self.accepted.to(device)
        self.attempted = self.attempted.to(device)
        u = reduced_energies.view(k_count, c)
        temperatures = self.ladder(u)
        low = torch.tensor(lower, device=device)
        log_p = exchange_log_acceptance(
            u[low],
            u[low + 1],
            temperatures[low, None],
            temperatures[low + 1, None],
            self.energy_temperature,
        )
        uniform = torch.rand(log_p.shape, generator=generator, device=device, dtype=u.dtype)
        accept = torch.log(uniform) < log_p  # (pairs, C)
        self.accepted[low] += accept.sum(-1).to(self.accepted)
        self.attempted[low] += c
        new_source = source.clone()
        new_source[low] = torch.where(accept, source[low + 1], source[low])
        new_source[low + 1] = torch.where(accept, source[low], source[low + 1])
        return new_source.reshape(-1)

    def lower_rungs(self, attempt: int) -> list[int]:
        """The lower rung k of each pair (k, k + 1) that attempt ``attempt`` tries (empty when
        its parity leaves no pair, as for K = 1)."""
        return list(range(attempt % 2, len(self.temperatures) - 1, 2))

    def ladder(self, like: Tensor) -> Tensor:
        """``(K,)`` the rung temperatures in the dtype and on the device of ``like``."""
        return torch.tensor(self.temperatures, dtype=like.dtype, device=like.device)

    def velocity_scale(self, order: Tensor, like: Tensor) -> Tensor:
        """``(R,)`` sqrt(T_s / T_order[s]): the factor that keeps the velocities of a
        configuration that moved from slot ``order[s]`` to slot s Maxwell-Boltzmann at its new
        rung (temperatures in the dtype of the energies ``like``)."""
        replica_t = self.ladder(like).repeat_interleave(self.n_chains)
        return torch.sqrt(replica_t / replica_t[order])

    def exchange(
        self, state: MDState, attempt: int, generator: torch.Generator | None = None
    ) -> MDState:
        """:meth:`permutation` applied to a state that holds all R replicas in slot order.

        Arguments:
            state: R = K * C replicas, rung-major.
            attempt: Index of this attempt; its parity picks the pairs.
            generator: Random generator on the state's device.

        Returns:
            The state with accepted pairs swapped (positions, forces, energies; velocities
            rescaled).
        """
        order = self.permutation(state.reduced_energies, attempt, generator)
        scale = self.velocity_scale(order, state.reduced_energies)
        return MDState(
            state.positions[order],
            state.velocities[order] * scale.to(state.velocities.dtype)[:, None, None],
            state.forces[order],
            state.reduced_energies[order],
            state.step,
        )

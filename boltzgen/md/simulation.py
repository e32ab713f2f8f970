"""Replica-exchange Langevin MD of one molecule: integrator + ladder + seeded RNG,
checkpointable."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import openmm
import torch
from openmm import unit
from torch import Tensor

from ..energy.base import Energy
from ..energy.forcefield import energy_for_molecule
from ..errors import BoltzgenError
from ..molecule.units import BOLTZMANN_CONSTANT
from .constraints import BondConstraints
from .integrator import LangevinMiddleIntegrator, MDState
from .replica_exchange import ReplicaExchange

__all__ = ["ReplicaExchangeMD", "system_masses"]


def system_masses(system: openmm.System) -> Tensor:
    """Particle masses of an OpenMM ``System``, shape ``(N,)`` in amu (g/mol), float64."""
    return torch.tensor(
        [
            system.getParticleMass(i).value_in_unit(unit.dalton)
            for i in range(system.getNumParticles())
        ],
        dtype=torch.float64,
    )


class ReplicaExchangeMD:
    """K temperatures x C chains of Langevin MD with neighbour exchanges every few steps.

    Replica ``k * C + c`` is chain c at rung k; rung 0 is the target temperature.

    Arguments:
        energy: Reduced energy over ``(R, N, 3)`` nm at its own temperature T0; moved to
            ``device`` and ``dtype`` in place (``Module.to``).
        masses: ``(N,)`` amu.
        temperatures: The ladder, increasing (K >= 1); a single temperature means plain MD.
        n_chains: C.
        timestep: ps.
        friction: 1/ps.
        exchange_every: Steps between exchange attempts (ignored for K = 1).
        constraints: Bond constraints or ``None``.
        seed: Seed of the run's random generator.
        device, dtype: Where and in which precision the run happens.
        boltzmann_constant: k_B (kJ/mol/K; 1.0 for dimensionless toys).
    """

    def __init__(
        self,
        energy: Energy,
        masses: Tensor,
        temperatures: Sequence[float],
        n_chains: int,
        timestep: float = 0.001,
        friction: float = 1.0,
        exchange_every: int = 10,
        constraints: BondConstraints | None = None,
        seed: int = 0,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
        boltzmann_constant: float = BOLTZMANN_CONSTANT,
    ) -> None:
        if exchange_every < 1:
            raise BoltzgenError(f"exchange interval must be at least 1 step, got {exchange_every}")
        self.device = torch.device(device)
        self.dtype = dtype
        self.exchange = ReplicaExchange(temperatures, n_chains, energy.temperature)
        self.exchange_every = int(exchange_every)
        energy = energy.to(device=self.device, dtype=dtype)
        if constraints is not None:
            constraints = constraints.to(self.device)
        self.integrator = LangevinMiddleIntegrator(
            energy,
            torch.as_tensor(masses).to(self.device, dtype),
            self.exchange.replica_temperatures().to(self.device, dtype),
            timestep,
            friction,
            constraints,
            boltzmann_constant,
        )
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(int(seed))
        self.state: MDState | None = None

    @classmethod
    def for_molecule(
        cls,
        molecule: Any,
        temperatures: Sequence[float],
        n_chains: int,
        energy: str = "torch",
        **options: Any,
    ) -> ReplicaExchangeMD:
        """A run of a :class:`~boltzgen.molecule.Molecule`: torch force field (``energy``:
        ``"torch"`` or ``"torch-compile"``, see :func:`energy_for_molecule`), System masses, its
        constraints (SHAKE/RATTLE). ``options`` as in the constructor."""
        masses = system_masses(molecule.system)
        bonds = molecule.constrained_bonds()
        constraints = BondConstraints(bonds, masses) if bonds else None
        return cls(
            energy_for_molecule(molecule, prefer=energy),
            masses,
            temperatures,
            n_chains,
            constraints=constraints,
            **options,
        )

    @property
    def n_chains(self) -> int:
        """C, chains per temperature."""
        return self.exchange.n_chains

    @property
    def temperatures(self) -> list[float]:
        """The ladder."""
        return list(self.exchange.temperatures)

    @property
    def step(self) -> int:
        """Steps taken so far."""
        return self._current().step

    def _current(self) -> MDState:
        if self.state is None:
            raise BoltzgenError(
                "the simulation has not started: call start(positions) or load_state_dict first"
            )
        return self.state

    def start(self, positions: Tensor | np.ndarray) -> MDState:
        """Start every replica from ``positions`` ``(N, 3)`` or ``(R, N, 3)`` nm with fresh
        velocities."""
        x = torch.as_tensor(
            np.asarray(positions) if not isinstance(positions, Tensor) else positions
        )
        self.state = self.integrator.initial_state(x.to(self.device, self.dtype), self.generator)
        return self.state

    def advance(self, n_steps: int) -> MDState:
        """``n_steps`` MD steps with an exchange attempt after every ``exchange_every``-th step."""
        state = self._current()
        for _ in range(n_steps):
            state = self.integrator.step(state, self.generator)
            if state.step % self.exchange_every == 0:
                state = self.exchange.exchange(
                    state, state.step // self.exchange_every, self.generator
                )
        self.state = state
        return state

    def observe(self) -> dict[str, np.ndarray]:
        """Observables now (copies to the host: call every few steps, not every step).

        Returns:
            ``positions`` ``(C, N, 3)`` nm float32 of the rung-0 chains, ``reduced_energies``
            ``(C,)`` at rung 0's temperature, ``potential_energies`` ``(R,)`` in kJ/mol (energy
            units), ``kinetic_temperatures`` ``(R,)``.
        """
        state = self._current()
        c = self.n_chains
        potential = self.integrator.potential_energies(state)
        kinetic = self.integrator.kinetic_temperature(state.velocities)
        reduced = potential[:c] / (self.integrator.boltzmann_constant * self.temperatures[0])
        return {
            "positions": state.positions[:c].float().cpu().numpy(),
            "reduced_energies": reduced.double().cpu().numpy(),
            "potential_energies": potential.double().cpu().numpy(),
            "kinetic_temperatures": kinetic.double().cpu().numpy(),
        }

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue bit-for-bit: state tensors, step, RNG, exchange
        counters."""
        state = self._current()
        return {
            "positions": state.positions.cpu(),
            "velocities": state.velocities.cpu(),
            "forces": state.forces.cpu(),
            "reduced_energies": state.reduced_energies.cpu(),
            "step": state.step,
            "rng": self.generator.get_state(),
            "accepted": self.exchange.accepted.cpu(),
            "attempted": self.exchange.attempted.cpu(),
        }

    def load_state_dict(self, saved: dict[str, Any]) -> None:
        """Continue from :meth:`state_dict` output (same ladder, chains and molecule)."""
        positions = saved["positions"]
        if positions.shape[0] != self.exchange.n_replicas:
            raise BoltzgenError(
                f"checkpoint holds {positions.shape[0]} replicas, this run has "
                f"{self.exchange.n_replicas}"
            )
        to = {"device": self.device, "dtype": self.dtype}
        self.state = MDState(
            positions.to(**to),
            saved["velocities"].to(**to),
            saved["forces"].to(**to),
            saved["reduced_energies"].to(**to),
            int(saved["step"]),
        )
        self.generator.set_state(saved["rng"])
        self.exchange.accepted = saved["accepted"].to(self.device)
        self.exchange.attempted = saved["attempted"].to(self.device)

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
from ..parallel import all_gather_tensor, world
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

    Slot ``k * C + c`` is chain c at rung k; rung 0 is the target temperature. The R = K * C
    replicas (configurations) stay where they are, in rows; an accepted exchange swaps the
    temperatures of two rows (velocities rescaled), and the run keeps the slot of every row.
    That makes the run the same on one process and spread over the ranks of a ``torchrun``
    launch (:mod:`boltzgen.parallel`): rank r of W integrates rows ``r * R/W`` to
    ``(r + 1) * R/W - 1``; an exchange needs only the R reduced energies (one all-gather);
    every rank seeds its generator alike, draws the noise of all R replicas and takes its rows
    (:class:`LangevinMiddleIntegrator`'s ``noise_rows``), and draws the same exchange uniforms,
    so all ranks take the same decisions and a replica receives the same numbers as on one
    process. Observations and checkpoints are in slot order (gathered at report and checkpoint
    time only), so a checkpoint resumes on any number of ranks.

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
        seed: Seed of the run's random generator (the same on every rank).
        device, dtype: Where and in which precision the run happens.
        boltzmann_constant: k_B (kJ/mol/K; 1.0 for dimensionless toys).

    Raises:
        BoltzgenError: Bad settings, or R not a multiple of the number of ranks.
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
        self.world = world()
        total = self.exchange.n_replicas
        if total % self.world.size:
            raise BoltzgenError(
                f"{total} replicas cannot be split evenly over {self.world.size} processes: use "
                "a number of replicas that is a multiple of the number of processes"
            )
        share = total // self.world.size
        self.rows = slice(self.world.rank * share, (self.world.rank + 1) * share)
        energy = energy.to(device=self.device, dtype=dtype)
        if constraints is not None:
            constraints = constraints.to(self.device)
        self._slot_temperatures = self.exchange.replica_temperatures().to(self.device, dtype)
        self.integrator = LangevinMiddleIntegrator(
            energy,
            torch.as_tensor(masses).to(self.device, dtype),
            self._slot_temperatures[self.rows],
            timestep,
            friction,
            constraints,
            boltzmann_constant,
        )
        self.integrator.noise_count = total
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(int(seed))
        self._local: MDState | None = None
        self._assign(torch.arange(total, device=self.device))

    def _assign(self, slot_of_row: Tensor) -> None:
        """Give row i the slot ``slot_of_row[i]`` ``(R,)``: its temperature and noise rows."""
        self.slot_of_row = slot_of_row
        self.row_of_slot = torch.argsort(slot_of_row)
        local = slot_of_row[self.rows]
        self.integrator.temperatures = self._slot_temperatures[local]
        self.integrator.noise_rows = local

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

    @property
    def state(self) -> MDState | None:
        """All R replicas in slot order (``None`` before the start); on several ranks a
        collective that every rank must call."""
        return None if self._local is None else self._slot_ordered(self._local)

    def _current(self) -> MDState:
        if self._local is None:
            raise BoltzgenError(
                "the simulation has not started: call start(positions) or load_state_dict first"
            )
        return self._local

    def _gathered(self, rows: Tensor) -> Tensor:
        """Every rank's ``rows`` ``(R/W, ...)`` in slot order, ``(R, ...)`` (a collective)."""
        everything = all_gather_tensor(rows)
        return everything.reshape(-1, *rows.shape[1:])[self.row_of_slot]

    def _slot_ordered(self, state: MDState) -> MDState:
        return MDState(
            self._gathered(state.positions),
            self._gathered(state.velocities),
            self._gathered(state.forces),
            self._gathered(state.reduced_energies),
            state.step,
        )

    def start(self, positions: Tensor | np.ndarray) -> MDState:
        """Start every replica from ``positions`` ``(N, 3)`` or ``(R, N, 3)`` nm (slot order) with
        fresh velocities; returns this rank's replicas."""
        x = torch.as_tensor(
            np.asarray(positions) if not isinstance(positions, Tensor) else positions
        ).to(self.device, self.dtype)
        self._assign(torch.arange(self.exchange.n_replicas, device=self.device))
        if x.dim() == 3 and x.shape[0] == self.exchange.n_replicas:
            x = x[self.rows]
        self._local = self.integrator.initial_state(x, self.generator)
        return self._local

    def advance(self, n_steps: int) -> MDState:
        """``n_steps`` MD steps with an exchange attempt after every ``exchange_every``-th step;
        returns this rank's replicas."""
        state = self._current()
        for _ in range(n_steps):
            state = self.integrator.step(state, self.generator)
            if state.step % self.exchange_every == 0:
                state = self._exchange(state, state.step // self.exchange_every)
        self._local = state
        return state

    def _exchange(self, state: MDState, attempt: int) -> MDState:
        """One round of swaps: the temperatures of the rows move, the configurations stay."""
        if not self.exchange.lower_rungs(attempt):
            return state
        slot_energies = self._gathered(state.reduced_energies)
        order = self.exchange.permutation(slot_energies, attempt, self.generator)
        scale = self.exchange.velocity_scale(order, slot_energies)
        new_row_of_slot = self.row_of_slot[order]
        row_scale = torch.empty_like(scale)
        row_scale[new_row_of_slot] = scale
        self._assign(torch.argsort(new_row_of_slot))
        scale = row_scale[self.rows].to(state.velocities.dtype)[:, None, None]
        return MDState(
            state.positions,
            state.velocities * scale,
            state.forces,
            state.reduced_energies,
            state.step,
        )

    def observe(self) -> dict[str, np.ndarray]:
        """Observables now (copies to the host: call every few steps, not every step; on several
        ranks a collective that every rank must call).

        Returns:
            ``positions`` ``(C, N, 3)`` nm float32 of the rung-0 chains, ``reduced_energies``
            ``(C,)`` at rung 0's temperature, ``potential_energies`` ``(R,)`` in kJ/mol (energy
            units), ``kinetic_temperatures`` ``(R,)``, in slot order.
        """
        state = self._current()
        c = self.n_chains
        potential = self._gathered(self.integrator.potential_energies(state))
        kinetic = self._gathered(self.integrator.kinetic_temperature(state.velocities))
        reduced = potential[:c] / (self.integrator.boltzmann_constant * self.temperatures[0])
        return {
            "positions": self._gathered(state.positions)[:c].float().cpu().numpy(),
            "reduced_energies": reduced.double().cpu().numpy(),
            "potential_energies": potential.double().cpu().numpy(),
            "kinetic_temperatures": kinetic.double().cpu().numpy(),
        }

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue bit-for-bit: state tensors in slot order, step, RNG,
        exchange counters (on several ranks a collective; every rank gets the whole)."""
        state = self._slot_ordered(self._current())
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
        """Continue from :meth:`state_dict` output (same ladder, chains and molecule; any number
        of ranks)."""
        positions = saved["positions"]
        if positions.shape[0] != self.exchange.n_replicas:
            raise BoltzgenError(
                f"checkpoint holds {positions.shape[0]} replicas, this run has "
                f"{self.exchange.n_replicas}"
            )
        to = {"device": self.device, "dtype": self.dtype}
        self._assign(torch.arange(self.exchange.n_replicas, device=self.device))
        self._local = MDState(
            positions[self.rows].to(**to),
            saved["velocities"][self.rows].to(**to),
            saved["forces"][self.rows].to(**to),
            saved["reduced_energies"][self.rows].to(**to),
            int(saved["step"]),
        )
        self.generator.set_state(saved["rng"])
        self.exchange.accepted = saved["accepted"].to(self.device)
        self.exchange.attempted = saved["attempted"].to(self.device)

"""Batched Langevin dynamics: OpenMM's LangevinMiddle scheme over R replicas at once.

One step of length dt (Zhang et al. 2019, OpenMM's ``LangevinMiddleIntegrator``), with forces
F = -dU/dx in kJ/mol/nm, masses m in amu (g/mol), friction gamma in 1/ps:

1. v <- v + dt F(x)/m                                  (full kick, "V")
2. x' <- x + (dt/2) v                                   (half drift, "R")
3. v <- a v + sqrt((1 - a^2) k_B T / m) xi, a = exp(-gamma dt), xi ~ N(0, 1)   ("O")
4. x' <- x' + (dt/2) v                                  (half drift, "R")

With constraints (as OpenMM does it): after the kick, v is projected onto the tangent space of
the constraint surface at x (RATTLE); after the drifts, the new positions x' are projected by
SHAKE along the previous bond vectors, and the correction enters v as (x'_constrained - x')/dt,
the velocity that would have produced it over the whole step. The stored v is then projected at
the new positions too; that does not change the next step (the projection after the next kick
absorbs it) but makes the reported velocities tangent, so the kinetic temperature counts
3N - N_constraints degrees of freedom. The stored velocities are those after the O step
(half-step velocities, as in OpenMM's LangevinMiddle); the positions follow BAOAB with its two
half kicks merged into one full kick, so one force evaluation per step.

Everything runs on the device and dtype of the positions; a step never synchronises with the
device. Temperatures are per replica, so one batch can hold a whole replica-exchange ladder.
A batch can also be part of a larger run (one rank's replicas of a run spread over ranks): with
``noise_rows`` set, every step draws the Gaussian noise of all ``noise_count`` replicas of the run
from the generator (which every rank seeds alike) and takes the rows of its own replicas, so the
numbers a replica receives do not depend on how the run is split.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from ..energy.base import Energy
from ..errors import BoltzgenError
from ..molecule.units import BOLTZMANN_CONSTANT
from .constraints import BondConstraints

__all__ = ["MDState", "LangevinMiddleIntegrator"]


@dataclass(frozen=True)
class MDState:
    """The state of R replicas.

    Attributes:
        positions: ``(R, N, 3)`` nm, satisfying the constraints.
        velocities: ``(R, N, 3)`` nm/ps (half-step velocities, after the O step).
        forces: ``(R, N, 3)`` kJ/mol/nm at ``positions``.
        reduced_energies: ``(R,)`` u(x) = U(x)/(k_B T0) at the energy's own temperature T0.
        step: Number of steps taken.
    """

    positions: Tensor
    velocities: Tensor
    forces: Tensor
    reduced_energies: Tensor
    step: int = 0


class LangevinMiddleIntegrator:
    """Langevin dynamics of R replicas of one system, each at its own temperature.

    Arguments:
        energy: The target; ``energy.energy(x)`` gives reduced energies at ``energy.temperature``
            of positions ``(R, N, 3)``.
        masses: ``(N,)`` in amu (g/mol), all positive.
        temperatures: ``(R,)`` thermostat temperatures (K for molecules).
        timestep: dt in ps.
        friction: gamma in 1/ps.
        constraints: Bond constraints, or ``None``.
        boltzmann_constant: k_B in energy units per temperature unit (kJ/mol/K by default; 1.0
            for dimensionless toy targets).

    Attributes:
        temperatures: ``(R,)`` thermostat temperatures; may be reassigned between steps (a
            replica exchange that moves temperatures instead of configurations).
        noise_rows: ``None`` (each step draws noise of the batch's shape), or ``(R,)`` long: the
            rows of a draw of ``noise_count`` replicas' noise that this batch's replicas take.
        noise_count: Replicas in the whole run (the rows of each draw when ``noise_rows`` is
            set).
    """

    def __init__(
        self,
        energy: Energy,
        masses: Tensor,
        temperatures: Tensor,
        timestep: float = 0.001,
        friction: float = 1.0,
        constraints: BondConstraints | None = None,
        boltzmann_constant: float = BOLTZMANN_CONSTANT,
    ) -> None:
        if not (timestep > 0 and math.isfinite(timestep)):
            raise BoltzgenError(f"time step must be positive (ps), got {timestep!r}")
        if not (friction >= 0 and math.isfinite(friction)):
            raise BoltzgenError(f"friction must be non-negative (1/ps), got {friction!r}")
        masses = torch.as_tensor(masses)
        if masses.dim() != 1 or not bool((masses > 0).all()):
            raise BoltzgenError(
                "masses must be a positive (N,) vector in amu: massless particles are not "
                "supported"
            )
        temperatures = torch.as_tensor(temperatures)
        if temperatures.dim() != 1 or not bool((temperatures > 0).all()):
            raise BoltzgenError("temperatures must be a positive (R,) vector, one per replica")
        self.energy = energy
        self.masses = masses
        self.temperatures = temperatures
        self.timestep = float(timestep)
        self.friction = float(friction)
        self.constraints = constraints
        self.boltzmann_constant = float(boltzmann_constant)
        self.energy_kT = self.boltzmann_constant * energy.temperature
        self.noise_rows: Tensor | None = None
        self.noise_count = int(temperatures.numel())

    @property
    def n_replicas(self) -> int:
        """Number of replicas R."""
        return int(self.temperatures.numel())

    @property
    def n_dof(self) -> int:
        """Kinetic degrees of freedom per replica: N * 3 - n_constraints (no centre-of-mass
        remover)."""
        n_constraints = self.constraints.count if self.constraints is not None else 0
        return self.masses.numel() * self.energy.event_shape[-1] - n_constraints

    def _per_replica(self, values: Tensor, like: Tensor) -> Tensor:
        return values.to(like)[:, None, None]

    def _masses(self, like: Tensor) -> Tensor:
        return self.masses.to(like)[None, :, None]

    def evaluate(self, positions: Tensor) -> tuple[Tensor, Tensor]:
        """Reduced energies ``(R,)`` at T0 and forces ``(R, N, 3)`` kJ/mol/nm (detached)."""
        with torch.enable_grad():
            x = positions.detach().requires_grad_(True)
            u = self.energy.energy(x)
            (gradient,) = torch.autograd.grad(u.sum(), x)
        return u.detach(), -gradient * self.energy_kT

    def _noise(self, x: Tensor, generator: torch.Generator | None) -> Tensor:
        """Standard normal noise of the shape of ``x`` ``(R, N, 3)`` (see ``noise_rows``)."""
        if self.noise_rows is None:
            return torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        shape = (self.noise_count, *x.shape[1:])
        return torch.randn(shape, generator=generator, device=x.device, dtype=x.dtype)[
            self.noise_rows
        ]

    def _project_velocities(self, v: Tensor, x: Tensor) -> Tensor:
        return self.constraints.velocities(v, x) if self.constraints is not None else v

    def initial_state(
        self, positions: Tensor, generator: torch.Generator | None = None
    ) -> MDState:
        """Constrained positions with Maxwell-Boltzmann velocities at each replica's temperature.

        Arguments:
            positions: ``(R, N, 3)`` nm (or ``(N, 3)``, copied to every replica); sets the
                device and dtype of the run.
            generator: Random generator on that device.
        """
        if positions.dim() == 2:
            positions = positions.expand(self.n_replicas, -1, -1)
        if positions.shape[0] != self.n_replicas or positions.shape[1] != self.masses.numel():
            raise BoltzgenError(
                f"positions must have shape ({self.n_replicas}, {self.masses.numel()}, 3), got "
                f"{tuple(positions.shape)}"
            )
        x = positions.detach().clone()
        if self.constraints is not None:
            x = self.constraints.positions(x, x)
        v = self.maxwell_boltzmann(x, generator)
        u, forces = self.evaluate(x)
        return MDState(x, v, forces, u, 0)

    def maxwell_boltzmann(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Velocities ``(R, N, 3)`` nm/ps drawn at each replica's temperature, projected on the
        constraints."""
        sigma = torch.sqrt(
            self.boltzmann_constant * self._per_replica(self.temperatures, x) / self._masses(x)
        )
        noise = self._noise(x, generator)
        return self._project_velocities(sigma * noise, x)

    def step(self, state: MDState, generator: torch.Generator | None = None) -> MDState:
        """One LangevinMiddle step of every replica (see the module docstring)."""
        x, forces = state.positions, state.forces
        masses = self._masses(x)
        half = 0.5 * self.timestep
        a = math.exp(-self.friction * self.timestep)
        v = self._project_velocities(state.velocities + self.timestep * forces / masses, x)
        moved = x + half * v
        sigma = torch.sqrt(
            (1.0 - a * a)
            * self.boltzmann_constant
            * self._per_replica(self.temperatures, x)
            / masses
        )
        noise = self._noise(x, generator)
        v = a * v + sigma * noise
        moved = moved + half * v
        if self.constraints is not None:
            constrained = self.constraints.positions(moved, x)
            v = self.constraints.velocities(v + (constrained - moved) / self.timestep, constrained)
            moved = constrained
        u, forces = self.evaluate(moved)
        return MDState(moved, v, forces, u, state.step + 1)

    def run(
        self, state: MDState, n_steps: int, generator: torch.Generator | None = None
    ) -> MDState:
        """``n_steps`` steps of every replica."""
        for _ in range(n_steps):
            state = self.step(state, generator)
        return state

    def kinetic_temperature(self, velocities: Tensor) -> Tensor:
        """Instantaneous kinetic temperatures ``(R,)``: sum m v^2 / (n_dof k_B)."""
        twice_kinetic = (self._masses(velocities) * velocities * velocities).sum((1, 2))
        return twice_kinetic / (self.n_dof * self.boltzmann_constant)

    def potential_energies(self, state: MDState) -> Tensor:
        """Potential energies ``(R,)`` in the energy units of k_B T (kJ/mol for molecules)."""
        return state.reduced_energies * self.energy_kT

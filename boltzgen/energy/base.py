"""The energy-function interface that every target of boltzgen implements.

An :class:`Energy` returns *reduced* energies u(x) = U(x) / (k_B T), dimensionless, of shape
``(batch,)``. Subclasses implement :meth:`Energy._energy` at the energy's own temperature T0;
the public :meth:`Energy.energy` validates the input and applies a different temperature in
exactly one place: u_T(x) = u_T0(x) * T0 / T.

What a target may offer beyond its energy is stated here, with one signature each, so that no
caller has to probe for it:

- :attr:`Energy.log_z`: the exact log Z at T0 as a float, or ``None`` when it is not known;
- :meth:`Energy.sample`: exact i.i.d. samples (when :attr:`Energy.can_sample` is true);
- :meth:`Energy.exact`: the exact distribution by enumeration of a small discrete target;
- :attr:`Energy.molecule`: the molecule whose Boltzmann distribution this is, or ``None``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, ClassVar

import torch
from torch import Tensor

from ..errors import BoltzgenError

if TYPE_CHECKING:
    from ..molecule.molecule import Molecule
    from .exact import ExactDistribution

__all__ = ["Energy"]


class Energy(torch.nn.Module):
    """Base class of all targets: reduced energies u(x) = U(x)/kT of a batch of states.

    Arguments:
        event_shape: The shape of one state, e.g. ``(2,)`` for a 2-D toy, ``(n_atoms, 3)`` for
            a molecule in Cartesian coordinates, ``(n_spins,)`` for a spin model.
        temperature: The energy's own temperature T0. Kelvin for molecules; a dimensionless
            1.0 for toy targets and lattice models (where beta is a parameter of the model).
        discrete: Whether states are discrete (spins, binary units). Gradients are only
            defined for continuous energies.
        molecule: The molecule this energy belongs to (force fields and the OpenMM bridge), or
            ``None``; read it back as :attr:`molecule`.

    Subclasses implement ``_energy(x) -> (batch,)`` at T0. Any buffers (centres, couplings,
    force-field parameters) are registered with :meth:`register_buffer` so that ``.to(device,
    dtype)`` moves them.
    """

    #: Whether :meth:`sample` draws exact samples.
    can_sample: ClassVar[bool] = False

    def __init__(
        self,
        event_shape: Sequence[int],
        temperature: float = 1.0,
        discrete: bool = False,
        molecule: Molecule | None = None,
    ) -> None:
        super().__init__()
        if not (temperature > 0 and math.isfinite(temperature)):
            raise BoltzgenError(f"temperature must be a positive number, got {temperature!r}")
        self.event_shape = torch.Size(event_shape)
        self.temperature = float(temperature)
        self.is_discrete = bool(discrete)
        self.molecule: Molecule | None = molecule

    @property
    def log_z(self) -> float | None:
        """Exact log Z = log sum/integral of exp(-u) at the energy's own temperature, or ``None``.

        For molecules Z is not known; lattice models and toy targets know it in closed form, by
        quadrature or by enumeration.
        """
        return None

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """Exact i.i.d. samples at T0, shape ``(n, *event_shape)``, float64 (:attr:`can_sample`).

        Raises:
            BoltzgenError: The target has no exact sampler.
        """
        raise BoltzgenError(
            f"{type(self).__name__} has no exact sampler: give samples from a file or MCMC"
        )

    def exact(self) -> ExactDistribution:
        """The exact distribution of a small discrete target by enumeration, float64, on the
        energy's device.

        Raises:
            BoltzgenError: A continuous target, or too many states to enumerate.
        """
        raise BoltzgenError(f"{type(self).__name__} cannot be enumerated exactly")

    @property
    def dim(self) -> int:
        """Number of scalar degrees of freedom of one state, ``prod(event_shape)``."""
        return math.prod(self.event_shape)

    def energy(self, x: Tensor, temperature: float | None = None) -> Tensor:
        """Reduced energies of a batch.

        Arguments:
            x: States, shape ``(batch, *event_shape)``, any device and floating dtype.
            temperature: Evaluate u_T = u_T0 * T0 / T at this temperature (same units as the
                energy's own ``temperature``). ``None``: at T0.

        Returns:
            Reduced energies, shape ``(batch,)``, same device and dtype as ``x``.
        """
        n = len(self.event_shape)
        if x.dim() != n + 1 or x.shape[1:] != self.event_shape:
            raise BoltzgenError(
                f"{type(self).__name__} expects states of shape (batch, "
                f"{', '.join(map(str, self.event_shape))}), got {tuple(x.shape)}"
            )
        u = self._energy(x)
        if temperature is not None:
            if not temperature > 0:
                raise BoltzgenError(f"temperature must be positive, got {temperature!r}")
            u = u * (self.temperature / temperature)
        return u

    def forward(self, x: Tensor, temperature: float | None = None) -> Tensor:
        """Same as :meth:`energy`."""
        return self.energy(x, temperature)

    def _energy(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def extra_repr(self) -> str:
        return f"event_shape={tuple(self.event_shape)}, temperature={self.temperature:g}"

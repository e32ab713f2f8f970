"""The energy-function interface that every target of boltzgen implements.

An :class:`Energy` returns *reduced* energies u(x) = U(x) / (k_B T), dimensionless, of shape
``(batch,)``. Subclasses implement :meth:`Energy._energy` at the energy's own temperature T0;
the public :meth:`Energy.energy` validates the input and applies a different temperature in
exactly one place: u_T(x) = u_T0(x) * T0 / T.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from ..errors import BoltzgenError

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

    Subclasses implement ``_energy(x) -> (batch,)`` at T0. Any buffers (centres, couplings,
    force-field parameters) are registered with :meth:`register_buffer` so that ``.to(device,
    dtype)`` moves them.
    """

    def __init__(
        self, event_shape: Sequence[int], temperature: float = 1.0, discrete: bool = False
    ) -> None:
        super().__init__()
        if not (temperature > 0 and math.isfinite(temperature)):
            raise BoltzgenError(f"temperature must be a positive number, got {temperature!r}")
        self.event_shape = torch.Size(event_shape)
        self.temperature = float(temperature)
        self.is_discrete = bool(discrete)

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

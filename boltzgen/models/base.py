"""The model contract: what every trainable distribution of boltzgen promises.

A *model* is a distribution q over the states of a target (Cartesian positions, feature vectors,
spins). Flows (:class:`~boltzgen.flows.CouplingFlow`, :class:`~boltzgen.flows.MolecularFlow`),
restricted Boltzmann machines (:class:`~boltzgen.models.RBM`) and the autoregressive models
implement it by subclassing :class:`Model` next to :class:`torch.nn.Module`, and state three
capabilities as class attributes instead of letting callers probe for methods:

- ``normalized``: :meth:`Model.log_prob` is the normalized log q(x). When false (an RBM), it is
  the unnormalized log q~(x) = -F(x), and log q = log q~ - log Z_theta with an unknown Z_theta.
- ``reparameterized``: :meth:`Model.sample_and_log_prob` returns samples through which gradients
  flow to the parameters (pathwise gradients, as for flows). When false, samples are detached and
  objectives use score-function gradients of :meth:`Model.log_prob`.
- ``discrete``: states are discrete (spins +-1, binary units, categories).
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

__all__ = ["Model"]


class Model:
    """Mixin base of every model; subclass it together with :class:`torch.nn.Module`.

    Subclasses set the class attributes and implement the three methods. Shapes: ``n`` states
    are returned as ``(n, *event_shape)``, log-probabilities as ``(n,)`` in nats, on the model's
    device and dtype.
    """

    #: ``log_prob`` is normalized (sums or integrates to one).
    normalized: ClassVar[bool] = True
    #: ``sample_and_log_prob`` is differentiable in the parameters through the samples.
    reparameterized: ClassVar[bool] = False
    #: States are discrete.
    discrete: ClassVar[bool] = False

    #: The shape of one state.
    event_shape: torch.Size

    def sample(self, n: int) -> Tensor:
        """``n`` independent states, shape ``(n, *event_shape)`` (no gradient)."""
        raise NotImplementedError

    def log_prob(self, x: Tensor) -> Tensor:
        """log q(x) (log q~(x) if not ``normalized``) of ``(B, *event_shape)`` states: ``(B,)``."""
        raise NotImplementedError

    def sample_and_log_prob(self, n: int) -> tuple[Tensor, Tensor]:
        """``n`` states and their log-probabilities in one pass: ``((n, *event_shape), (n,))``."""
        raise NotImplementedError

    def log_normalizer(self) -> Tensor:
        """log of the constant that normalizes ``exp(log_prob)``: 0-d, 0 for normalized models.

        Unnormalized models return their exact log Z_theta where it can be computed and raise
        :class:`~boltzgen.errors.BoltzgenError` otherwise.
        """
        return torch.zeros(())

"""An energy made from any log-density: distillation targets and user-supplied distributions."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from torch import Tensor

from .base import Energy

__all__ = ["LogProbEnergy"]


class LogProbEnergy(Energy):
    """u(x) = -log_prob(x) for any callable (a teacher flow's ``log_prob``, a torch
    distribution's).

    Arguments:
        log_prob: Maps states (batch, *event_shape) to log-densities (batch,). Its gradients
            flow through (the teacher's parameters are not trained by the student's optimiser,
            since only the student's parameters are handed to it).
        event_shape: Shape of one state.
        discrete: Whether the teacher is a distribution over discrete states.
    """

    def __init__(
        self,
        log_prob: Callable[[Tensor], Tensor],
        event_shape: Sequence[int],
        discrete: bool = False,
    ) -> None:
        super().__init__(event_shape=event_shape, discrete=discrete)
        self.log_prob = log_prob

    def _energy(self, x: Tensor) -> Tensor:
        return -self.log_prob(x).to(x.dtype)

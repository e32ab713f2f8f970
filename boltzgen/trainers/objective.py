"""The protocol every training objective implements.

An *objective* knows how to produce, for one optimisation step, a scalar surrogate loss whose
autograd gradient is the objective's gradient estimator (pathwise for flows, score-function for
discrete models), plus named diagnostics. The shared training loop
(:class:`boltzgen.trainers.Trainer`) owns everything else: optimiser, schedule, gradient clipping,
skipping non-finite steps, checkpoints, progress, energy-evaluation counting.

Samples whose loss term is not finite (a NaN or infinite target energy, a model density of
zero) are left out of the loss by the objective and counted in the diagnostic
:data:`NONFINITE_SAMPLES`; :func:`finite_mean` is the shared masked mean. A batch without a
single finite term gives a NaN loss, which the loop skips.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor

__all__ = ["Objective", "StepOutput", "NONFINITE_SAMPLES", "finite_mean"]

#: Diagnostic key: samples of the step left out of the loss because their term was not finite.
NONFINITE_SAMPLES = "nonfinite_samples"

#: What :meth:`Objective.loss` returns: the scalar surrogate loss to minimise, and a dict of
#: detached 0-d device tensors (named diagnostics such as ``"kl"`` or ``"ess"``) that the loop
#: reads only every few steps, so that the step itself never synchronises with the device.
StepOutput = tuple[Tensor, dict[str, Tensor]]


@runtime_checkable
class Objective(Protocol):
    """A training objective.

    Attributes:
        name: Short identifier, e.g. ``"reverse-kl"``.
        temperature: The temperature the objective fits the model to (target units), ``None``
            for the target's own (also for objectives that learn from given samples).
    """

    name: str
    temperature: float | None

    def loss(self, model: torch.nn.Module, batch_size: int) -> StepOutput:
        """Surrogate loss of one step on a batch of ``batch_size`` (model samples or data)."""
        ...

    def energy_evaluations(self, batch_size: int) -> int:
        """How many target-energy evaluations one call of :meth:`loss` makes."""
        ...

    def state_dict(self) -> dict[str, Any]:
        """Tensors and numbers the objective carries between steps (e.g. persistent chains)."""
        ...

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        ...


def finite_mean(values: Tensor, keep: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Mean of the finite entries of ``values`` (those where ``keep`` is also true), on the device.

    Arguments:
        values: Per-sample terms, shape ``(batch,)``.
        keep: Optional bool mask of the same shape (e.g. top-k drops); ``None`` keeps all.

    Returns:
        ``(mean, nonfinite)``: the mean over the kept finite entries (NaN when there are none:
        the step is then skipped; the gradient of a left-out entry is exactly zero), and the
        number of non-finite entries as a float64 0-d tensor. No host synchronisation.
    """
    finite = torch.isfinite(values)
    kept = finite if keep is None else finite & keep
    total = torch.where(kept, values, torch.zeros_like(values)).sum()
    return total / kept.sum(), (~finite).sum().to(torch.float64)

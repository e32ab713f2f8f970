"""Pair terms with hand-written derivatives: energy and dE/dr in one pass, no autograd graph.

A pair term (Coulomb + Lennard-Jones, generalized Born) evaluated under autograd records every
elementwise operation on its ``(P, batch)`` tensors and replays about twice as many in the
backward pass. :class:`AnalyticPairEnergy` instead asks the term for its energy *and* the
derivative of the energy with respect to every pair distance, computed alongside in the forward
pass, and its backward pass is one multiplication. The autograd path stays the reference
(``TorchForceField.use_analytic_gradients(False)``, ``[target] energy = "torch-autograd"``) and
the only one with second derivatives.
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import Tensor

from ...errors import BoltzgenError

__all__ = ["SecondDerivativeError", "AnalyticPairTerm", "AnalyticPairEnergy"]


class SecondDerivativeError(BoltzgenError):
    """Second derivatives of the energy (forces of forces, Hessians) were asked of the analytic
    pair path, which has first derivatives only."""


class AnalyticPairTerm(Protocol):
    """A pair term that knows its derivative with respect to the pair distances."""

    def energy_and_gradient(self, r: Tensor) -> tuple[Tensor, Tensor]:
        """Energies of shape ``(batch,)`` (kJ/mol) and dE/dr of shape ``(P, batch)``
        (kJ/mol/nm) for pair distances ``r`` of shape ``(P, batch)`` (nm)."""
        ...


class AnalyticPairEnergy(torch.autograd.Function):
    """``AnalyticPairEnergy.apply(r, term)``: the term's energy with its analytic gradient.

    Arguments (of ``apply``):
        r: Pair distances, shape ``(P, batch)``, nm.
        term: An :class:`AnalyticPairTerm`.

    Returns:
        Energies, shape ``(batch,)``, kJ/mol; differentiable once with respect to ``r``.

    Terms call it only when ``r`` requires a gradient; without one, their plain forward is as
    fast.
    """

    @staticmethod
    def forward(
        ctx: torch.autograd.function.FunctionCtx, r: Tensor, term: AnalyticPairTerm
    ) -> Tensor:  # type: ignore[override]
        energy, gradient = term.energy_and_gradient(r)
        ctx.save_for_backward(gradient)
        return energy

    @staticmethod
    def backward(
        ctx: torch.autograd.function.FunctionCtx, grad_energy: Tensor
    ) -> tuple[Tensor, None]:  # type: ignore[override]
        if torch.is_grad_enabled():
            raise SecondDerivativeError(
                "second derivatives of the torch force field (forces of forces) need its "
                "autograd path: call use_analytic_gradients(False) on it, or set [target] "
                'energy = "torch-autograd"'
            )
        (gradient,) = ctx.saved_tensors
        return grad_energy.unsqueeze(0) * gradient, None

r"""Reverse KL divergence: train a model by its own samples and the target energy.

Minimises E_{x~q}[log q(x) + u(x)] = KL(q || p) - log Z with the pathwise (reparameterisation)
gradient, so the model must provide a differentiable ``sample_and_log_prob(n)``. The reported
``loss`` is therefore KL(q||p) - log Z: it can be negative, because the unknown constant log Z
was dropped. When the target knows its exact ``log_z`` the exact ``kl`` is reported as well.

Bad samples (atom clashes) have huge energies. For the *loss only*, energies above
``energy_cap`` are replaced by the smooth cap u_c + log(1 + u - u_c) (linear below, logarithmic
above, continuous with slope 1 at the threshold), and the ``drop_top_k`` highest energies of a
batch can be left out; the reported diagnostics (``kl``, ``ess``, ``energy``) always use the raw
energies.

Samples with a non-finite term (NaN or infinite energy, non-finite log q) are left out of the
loss and counted (``nonfinite_samples``); so is a sample whose energy is finite but whose
energy *gradient* is not: its rows of the gradient with respect to the sample are zeroed during
the backward pass (what is left of it, the direct parameter-dependence of log q, has zero mean
under q). NaN energies are left out of the diagnostics as well (infinite ones are not: they
make ``kl`` infinite and carry zero importance weight).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from ..energy.base import Energy
from ..errors import BoltzgenError
from ..samplers.weights import reverse_ess
from .objective import NONFINITE_SAMPLES, StepOutput, finite_mean

__all__ = ["ReverseKL", "soft_energy_cap", "drop_nonfinite_rows"]


def soft_energy_cap(u: Tensor, cap: float | None) -> Tensor:
    """u below ``cap``; cap + log(1 + u - cap) above (shape preserved). ``None``: no cap."""
    if cap is None:
        return u
    excess = (u - cap).clamp(min=0)
    return torch.where(u < cap, u, cap + torch.log1p(excess))


class ReverseKL:
    """Reverse-KL objective with the pathwise gradient.

    Arguments:
        target: The target energy.
        temperature: Train at this temperature (target units; ``None``: the target's own).
        energy_cap: Threshold of the smooth logarithmic energy cap (reduced units), or ``None``.
        drop_top_k: Leave the k highest energies of each batch out of the loss.
    """

    name = "reverse-kl"

    def __init__(
        self,
        target: Energy,
        temperature: float | None = None,
        energy_cap: float | None = None,
        drop_top_k: int = 0,
    ) -> None:
        self._check_target(target)
        if drop_top_k < 0:
            raise BoltzgenError(f"drop_top_k must be >= 0, got {drop_top_k}")
        self.target = target
        self.temperature = temperature
        self.energy_cap = energy_cap
        self.drop_top_k = int(drop_top_k)
        at_own_temperature = temperature is None or temperature == target.temperature
        self._log_z = target.log_z if at_own_temperature else None

    @staticmethod
    def _check_target(target: Energy) -> None:
        if target.is_discrete:
            raise BoltzgenError(
                "reverse-kl uses the pathwise gradient and needs a continuous target; "
                "for discrete targets use the score-function objectives of "
                "boltzgen.trainers.discrete_kl"
            )

    def loss(self, model: torch.nn.Module, batch_size: int) -> StepOutput:
        """Surrogate loss mean(log q + capped u) over the kept samples of one model batch."""
        x, log_q, u, per_sample, keep = self._terms(model, batch_size)
        loss, nonfinite = self._reduce(per_sample, keep)
        if x.requires_grad:
            kept = keep & torch.isfinite(per_sample.detach())
            x.register_hook(drop_nonfinite_rows(kept, nonfinite))
        return loss, self._diagnostics(log_q.detach(), u.detach(), nonfinite)

    def _diagnostics(self, log_q: Tensor, u: Tensor, nonfinite: Tensor) -> dict[str, Tensor]:
        """The step's diagnostics from detached ``log_q`` and raw energies ``u`` ``(B,)``."""
        raw = log_q + u
        diagnostics = {
            "kl_minus_log_z": raw.nanmean(),
            "ess": reverse_ess(-raw, clip_fraction=0.0),  # NaN weights are dropped
            "energy": u.nanmean(),
            NONFINITE_SAMPLES: nonfinite,
        }
        if self._log_z is not None:
            diagnostics["kl"] = raw.nanmean() + self._log_z
        return diagnostics

    def _terms(
        self, model: torch.nn.Module, batch_size: int
    ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """One model batch: samples ``x``, ``log_q`` ``(B,)``, raw energies ``u`` ``(B,)``, the
        per-sample loss terms log q + capped u ``(B,)`` and the top-k ``keep`` mask ``(B,)``."""
        if self.drop_top_k >= batch_size:
            raise BoltzgenError(
                f"drop_top_k ({self.drop_top_k}) must be smaller than the batch size "
                f"({batch_size})"
            )
        x, log_q = model.sample_and_log_prob(batch_size)
        u = self.target.energy(x, self.temperature)
        per_sample = log_q + soft_energy_cap(u, self.energy_cap)
        keep = torch.ones_like(per_sample, dtype=torch.bool)
        if self.drop_top_k:
            ranked = torch.nan_to_num(u.detach(), nan=math.inf)
            worst = torch.topk(ranked, self.drop_top_k).indices
            keep = keep.index_fill(0, worst, False)
        return x, log_q, u, per_sample, keep

    def _reduce(self, per_sample: Tensor, keep: Tensor) -> tuple[Tensor, Tensor]:
        """The loss from the per-sample terms: their finite mean (and the non-finite count)."""
        return finite_mean(per_sample, keep)

    def energy_evaluations(self, batch_size: int) -> int:
        """One target energy per model sample."""
        return batch_size

    def state_dict(self) -> dict[str, Any]:
        """Stateless."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Stateless."""


def drop_nonfinite_rows(kept: Tensor, nonfinite: Tensor) -> Callable[[Tensor], Tensor]:
    """A gradient hook for the samples ``x``: zero the rows of left-out samples and of kept
    samples whose gradient is not finite (a NaN force), counting the latter into ``nonfinite``
    (in place, on the device) so that one bad sample cannot spoil the step."""

    def hook(grad: Tensor) -> Tensor:
        finite = torch.isfinite(grad).flatten(1).all(dim=1)
        nonfinite.add_((kept & ~finite).sum())
        rows = (kept & finite).view(-1, *[1] * (grad.dim() - 1))
        return torch.where(rows, grad, torch.zeros_like(grad))

    return hook

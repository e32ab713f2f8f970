r"""Reverse KL divergence: train a model by its own samples and the target energy.

Minimises E_{x~q}[log q(x) + u(x)] = KL(q || p) - log Z with the pathwise (reparameterisation)
gradient, so the model must provide a differentiable ``sample_and_log_prob(n)``. The reported
``loss`` is therefore KL(q||p) - log Z: it can be negative, because the unknown constant log Z
was dropped. When the target knows its exact ``log_z`` the exact ``kl`` is reported as well.

Bad samples (atom clashes) have huge energies. For the *loss only*, energies above
``energy_cap`` are replaced by the smooth cap u_c + log(1 + u - u_c) (linear below, logarithmic
above, continuous with slope 1 at the threshold), and the ``drop_top_k`` highest energies of a
batch can be left out; the reported diagnostics (``kl``, ``ess``) always use the raw energies.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from ..energy.base import Energy
from ..errors import BoltzgenError
from ..samplers.weights import reverse_ess
from .objective import StepOutput

__all__ = ["ReverseKL", "soft_energy_cap"]


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
        if target.is_discrete:
            raise BoltzgenError(
                "reverse-kl uses the pathwise gradient and needs a continuous target; "
                "for discrete targets use the score-function objectives of "
                "boltzgen.trainers.discrete_kl"
            )
        if drop_top_k < 0:
            raise BoltzgenError(f"drop_top_k must be >= 0, got {drop_top_k}")
        self.target = target
        self.temperature = temperature
        self.energy_cap = energy_cap
        self.drop_top_k = int(drop_top_k)
        at_own_temperature = temperature is None or temperature == target.temperature
        self._log_z = target.log_z if at_own_temperature else None

    def loss(self, model: torch.nn.Module, batch_size: int) -> StepOutput:
        """Surrogate loss mean(log q + capped u) over the kept samples of one model batch."""
        if self.drop_top_k >= batch_size:
            raise BoltzgenError(
                f"drop_top_k ({self.drop_top_k}) must be smaller than the batch size "
                f"({batch_size})"
            )
        x, log_q = model.sample_and_log_prob(batch_size)
        u = self.target.energy(x, self.temperature)
        per_sample = log_q + soft_energy_cap(u, self.energy_cap)
        keep = torch.isfinite(per_sample)
        if self.drop_top_k:
            ranked = torch.nan_to_num(u.detach(), nan=math.inf)
            worst = torch.topk(ranked, self.drop_top_k).indices
            keep = keep.index_fill(0, worst, False)
        kept = torch.where(keep, per_sample, torch.zeros_like(per_sample))
        loss = kept.sum() / keep.sum().clamp(min=1)
        raw = (log_q + u).detach()
        diagnostics = {
            "kl_minus_log_z": raw.mean(),
            "ess": reverse_ess(-raw, clip_fraction=0.0),
            "energy": u.detach().mean(),
        }
        if self._log_z is not None:
            diagnostics["kl"] = raw.mean() + self._log_z
        return loss, diagnostics

    def energy_evaluations(self, batch_size: int) -> int:
        """One target energy per model sample."""
        return batch_size

    def state_dict(self) -> dict[str, Any]:
        """Stateless."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Stateless."""

r"""The energy-informed Rényi objective: the cumulant GAN with its optimal discriminator inserted.

When the target energy u is known (log p~ = -u), the cumulant GAN's optimal discriminator is
known up to a constant, D* = (log p~ - log q)/(beta + gamma). Substituting it into the generator
loss -(1/gamma) log E_q[exp(gamma D)] gives, with a = gamma/(beta + gamma) and w = p~/q, a
data-free objective on model samples. We scale it by 1/a instead of 1/gamma (the same up to the
factor beta + gamma):

    J_a(q) = -(1/a) log E_q[w^a] = R_{1-a}(Q || P) - log Z,

where R_s is the Rényi divergence of order s (using R_a(P||Q) = a/(1-a) R_{1-a}(Q||P)). Hence:

* a -> 0: R_1(Q||P) = KL(Q||P), the reverse KL (``alpha = 0`` *is* reverse KL, exactly);
* a = 0.5: R_0.5(Q||P) = 2 x the Bhattacharyya distance, symmetric in P and Q;
* a -> 1: R_0(Q||P) = -log P(supp Q): ever more mass-covering (and ever heavier-tailed weights).

FAB (Midgley et al. 2023) minimises the other side of the family, D_2(P||Q) = log E_q[w^2]
(order 2 > 1), which q alone estimates with too large a variance; FAB uses AIS for it. Orders
a in [0, 1) need only model samples, with weights w^a that are *tempered* importance weights.

Gradients. Flows (reparameterized): pathwise, through the self-normalised weights
softmax(a log w); exact normalized discrete models (MADE, PixelCNN): score function,
grad J_a = -((1-a)/a) E_q[w^a grad log q] / E_q[w^a] with the leave-one-out baseline of
:func:`~boltzgen.trainers.cumulant.score_coefficients` (at a = 0: the VAN estimator of reverse
KL). As for reverse KL, the soft energy cap and top-k dropping act in the loss only.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..energy.base import Energy
from ..errors import BoltzgenError
from ..parallel import world
from .cumulant import log_mean_exp, score_coefficients
from .objective import StepOutput
from .reverse_kl import ReverseKL, soft_energy_cap

__all__ = ["Renyi"]


class Renyi(ReverseKL):
    """Rényi objective J_a = -(1/a) log E_q[(p~/q)^a] (module docstring), pathwise or
    score-function according to the model.

    Arguments:
        target: The target energy (continuous or discrete).
        alpha: The order a in [0, 1); 0 is reverse KL.
        temperature: Train at this temperature (target units; ``None``: the target's own).
        energy_cap: Threshold of the smooth logarithmic energy cap (reduced units), or ``None``.
        drop_top_k: Leave the k highest energies of each batch out of the loss.

    Diagnostics add ``renyi`` (the plug-in estimate of J_a with the raw energies; with an exact
    log Z also ``renyi_divergence`` = R_{1-a}(Q||P)).
    """

    name = "renyi"
    min_batch_size = 2

    def __init__(
        self,
        target: Energy,
        alpha: float = 0.5,
        temperature: float | None = None,
        energy_cap: float | None = None,
        drop_top_k: int = 0,
    ) -> None:
        if not (math.isfinite(alpha) and 0.0 <= alpha < 1.0):
            raise BoltzgenError(f"renyi alpha = {alpha!r} must be in [0, 1) (0 is reverse KL)")
        if alpha > 0 and world().size > 1:
            raise BoltzgenError(
                "renyi with alpha > 0 trains on one process (its self-normalised weights span "
                "the whole batch): run it without --nproc / torchrun"
            )
        super().__init__(target, temperature, energy_cap, drop_top_k)
        self.alpha = float(alpha)

    @staticmethod
    def _check_target(target: Energy) -> None:
        """Both continuous and discrete targets are fine."""

    def _reduce(self, per_sample: Tensor, keep: Tensor) -> tuple[Tensor, Tensor]:
        finite = torch.isfinite(per_sample)
        if self.alpha == 0.0:
            return super()._reduce(per_sample, keep)
        kept = keep & finite
        return -log_mean_exp(-self.alpha * per_sample, kept) / self.alpha, (~finite).sum().to(
            torch.float64
        )

    def _estimate(self, log_w: Tensor, keep: Tensor) -> Tensor:
        """J_a from log-weights ``log_w = -u - log q`` ``(B,)`` over ``keep``."""
        if self.alpha == 0.0:
            return -torch.where(keep, log_w, torch.zeros_like(log_w)).sum() / keep.sum()
        return -log_mean_exp(self.alpha * log_w, keep) / self.alpha

    def loss(self, model: torch.nn.Module, batch_size: int) -> StepOutput:
        """Surrogate loss of one model batch: pathwise for flows, score-function otherwise."""
        if getattr(model, "reparameterized", False):
            return super().loss(model, batch_size)
        if not getattr(model, "normalized", False):
            raise BoltzgenError(
                "renyi needs a flow or a normalized model with exact samples (made, pixelcnn); "
                f"{type(model).__name__} is neither"
            )
        y = model.sample(batch_size)
        log_q = model.log_prob(y)
        u = self.target.energy(y.to(log_q.dtype), self.temperature)
        log_w = (-soft_energy_cap(u, self.energy_cap) - log_q).detach()
        keep = torch.isfinite(log_w)
        if self.drop_top_k:
            worst = torch.topk(torch.nan_to_num(u.detach(), nan=math.inf), self.drop_top_k).indices
            keep = keep.index_fill(0, worst, False)
        c = -(1.0 - self.alpha) * score_coefficients(log_w, self.alpha, keep)
        loss = torch.where(keep, c * log_q, torch.zeros_like(log_q)).sum() / keep.sum()
        nonfinite = (~torch.isfinite(log_w)).sum().to(torch.float64)
        return loss, self._diagnostics(log_q.detach(), u.detach(), nonfinite)

    def _diagnostics(self, log_q: Tensor, u: Tensor, nonfinite: Tensor) -> dict[str, Tensor]:
        diagnostics = super()._diagnostics(log_q, u, nonfinite)
        log_w = -(log_q + u)
        renyi = self._estimate(log_w, torch.isfinite(log_w))
        diagnostics["renyi"] = renyi
        if self._log_z is not None:
            diagnostics["renyi_divergence"] = renyi + self._log_z
        return diagnostics

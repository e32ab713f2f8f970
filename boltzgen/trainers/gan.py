r"""The cumulant-GAN trainer: a generator (any model of the package) against a discriminator.

Per generator step, ``d_steps`` discriminator updates maximise (:mod:`.cumulant`)

    L(beta, gamma) = -(1/beta) log E_P[exp(-beta D)] - (1/gamma) log E_Q[exp(gamma D)]

on a data minibatch (P) and fresh model samples (Q); then the generator minimises
-(1/gamma) log E_Q[exp(gamma D)] at the updated, frozen D. At the optimum over D,
L = (1/gamma) R_a(P||Q) with a = gamma/(beta + gamma); special points: (beta, gamma) = (0, 1)
KL(P||Q), (1, 0) KL(Q||P), (0.5, 0.5) 4 x the Bhattacharyya distance -4 log int sqrt(pq) (a
monotone function of the Hellinger distance, -4 log(1 - H^2)), and (0, 0) the Wasserstein-1
dual, unbounded without a Lipschitz constraint (``lipschitz = "clip"`` or ``"gp"``, refused
otherwise).

Generator gradients: pathwise for reparameterized models (flows); for exact normalized
discrete models (MADE, PixelCNN) the score-function estimator with the leave-one-out baseline
(:func:`~.cumulant.score_coefficients`). Unnormalized models (RBMs) have no exact samples and
are refused.

Lipschitz constraints: ``"clip"`` clamps every discriminator parameter to
``[-clip_value, clip_value]`` after each update (WGAN); ``"gp"`` adds the two-sided gradient
penalty ``gp_weight * (|grad_z D(z)| - 1)^2`` at random interpolates of data and model features
z (WGAN-GP). The discriminator's update is skipped on the device when its loss or gradient is
not finite, like the generator's; ``d_skipped_steps`` counts those. The discriminator, its
optimiser state and the step ratio are checkpointed with the objective.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from ..errors import BoltzgenError
from ..parallel import world
from .cumulant import cumulant_term, score_coefficients
from .discriminator import Discriminator
from .forward_kl import check_data
from .objective import NONFINITE_SAMPLES, StepOutput, finite_mean
from .optim import MaskedAdam

__all__ = ["CumulantGAN", "LIPSCHITZ", "generator_surrogate"]

#: ``lipschitz`` values.
LIPSCHITZ = ("none", "clip", "gp")


def generator_surrogate(
    model: torch.nn.Module, discriminator: Discriminator, gamma: float, n: int
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The generator's surrogate loss on ``n`` model samples at a frozen discriminator.

    Its gradient estimates grad_theta of -(1/gamma) log E_q[exp(gamma D)]: pathwise for
    reparameterized models, score-function (:func:`~.cumulant.score_coefficients`) for
    normalized models with exact samples.

    Returns:
        ``(loss, value, scores, keep)``: the surrogate (0-d), the estimate of
        -(1/gamma) log E_q[exp(gamma D)] (0-d, detached), D of the samples ``(n,)`` and the mask
        of the finite ones ``(n,)``.
    """
    if getattr(model, "reparameterized", False):
        y, _ = model.sample_and_log_prob(n)
        scores = discriminator.score(discriminator.features(y), frozen=True)
        keep = torch.isfinite(scores)
        loss = -cumulant_term(scores, gamma, keep)
        return loss, loss.detach(), scores.detach(), keep
    if not getattr(model, "normalized", False):
        raise BoltzgenError(
            "cumulant-gan needs a generator with exact samples: a flow or a normalized "
            f"discrete model (made, pixelcnn); {type(model).__name__} is neither"
        )
    y = model.sample(n)
    log_q = model.log_prob(y)
    with torch.no_grad():
        scores = discriminator(y.to(log_q.dtype))
    keep = torch.isfinite(scores) & torch.isfinite(log_q.detach())
    c = -score_coefficients(scores, gamma, keep)
    loss = torch.where(keep, c * log_q, torch.zeros_like(log_q)).sum() / keep.sum()
    return loss, -cumulant_term(scores, gamma, keep), scores, keep


class CumulantGAN:
    """Cumulant-GAN objective (module docstring).

    Arguments:
        samples: Target samples (the data), shape ``(n, *event_shape)`` (moved to D's device
            and dtype).
        discriminator: The discriminator D (trained here), on the model's device and dtype.
        beta: The cumulant order of the data term (>= 0).
        gamma: The cumulant order of the model term (>= 0).
        d_steps: Discriminator updates per generator step.
        lipschitz: ``"none"``, ``"clip"`` or ``"gp"``.
        clip_value: Weight-clipping bound for ``lipschitz = "clip"``.
        gp_weight: Weight of the gradient penalty for ``lipschitz = "gp"``.
        d_lr: Learning rate of the discriminator's Adam (betas 0.5, 0.999; constant).
        likelihood_weight: lambda of the optional term lambda * NLL(data) for models with a
            normalized log-density (0 turns it off).
    """

    name = "cumulant-gan"
    #: The data fix the temperature: the target's own.
    temperature: float | None = None
    min_batch_size = 2

    def __init__(
        self,
        samples: Tensor,
        discriminator: Discriminator,
        beta: float = 0.5,
        gamma: float = 0.5,
        d_steps: int = 1,
        lipschitz: str = "none",
        clip_value: float = 0.01,
        gp_weight: float = 10.0,
        d_lr: float = 1e-3,
        likelihood_weight: float = 0.0,
    ) -> None:
        if not all(math.isfinite(v) and v >= 0 for v in (beta, gamma)):
            raise BoltzgenError(f"cumulant-gan beta = {beta}, gamma = {gamma}: both must be >= 0")
        if lipschitz not in LIPSCHITZ:
            raise BoltzgenError(
                f"cumulant-gan lipschitz = {lipschitz!r}; choose one of: {', '.join(LIPSCHITZ)}"
            )
        if beta == 0 and gamma == 0 and lipschitz == "none":
            raise BoltzgenError(
                "cumulant-gan at beta = gamma = 0 is the Wasserstein dual, unbounded without a "
                'Lipschitz constraint: set lipschitz = "clip" or "gp"'
            )
        if d_steps < 1:
            raise BoltzgenError(f"cumulant-gan d_steps = {d_steps} must be >= 1")
        if world().size > 1:
            raise BoltzgenError(
                "cumulant-gan trains on one process: run it without --nproc / torchrun"
            )
        parameter = next(discriminator.parameters())
        self.data = check_data(samples, self.name).to(parameter.device, parameter.dtype)
        self.discriminator = discriminator
        self.beta, self.gamma = float(beta), float(gamma)
        self.d_steps = int(d_steps)
        self.lipschitz, self.clip_value, self.gp_weight = lipschitz, clip_value, gp_weight
        self.likelihood_weight = float(likelihood_weight)
        self.optimizer = MaskedAdam(discriminator.parameters(), lr=d_lr, betas=(0.5, 0.999))
        self.d_updates = 0  # discriminator updates attempted (a Python counter)

    def _data_batch(self, n: int) -> Tensor:
        return self.data[torch.randint(self.data.shape[0], (n,), device=self.data.device)]

    def _discriminator_step(self, model: torch.nn.Module, n: int) -> Tensor:
        """One masked update of D on n data and n model samples; returns L (detached)."""
        d = self.discriminator
        with torch.no_grad():
            z_q = d.features(model.sample(n))
            z_p = d.features(self._data_batch(n))
        keep = torch.isfinite(z_q).all(dim=1)
        z_q = torch.where(keep[:, None], z_q, torch.zeros_like(z_q))
        objective = -cumulant_term(-d.score(z_p), self.beta) - cumulant_term(
            d.score(z_q), self.gamma, keep
        )
        loss = -objective
        if self.lipschitz == "gp":
            mix = torch.rand(n, 1, device=z_p.device, dtype=z_p.dtype)
            z = (mix * z_p + (1 - mix) * z_q).requires_grad_(True)
            (grad,) = torch.autograd.grad(d.score(z).sum(), z, create_graph=True)
            loss = loss + self.gp_weight * ((grad.norm(dim=1) - 1) ** 2).mean()
        params = self.optimizer.params
        grads = torch.autograd.grad(loss, params)
        for p, g in zip(params, grads):
            p.grad = g
        ok = torch.isfinite(loss) & torch.stack([torch.isfinite(g).all() for g in grads]).all()
        self.optimizer.step(ok)
        self.optimizer.zero_grad()
        if self.lipschitz == "clip":
            with torch.no_grad():
                for p in params:
                    p.clamp_(-self.clip_value, self.clip_value)
        self.d_updates += 1
        return objective.detach()

    def loss(self, model: torch.nn.Module, batch_size: int) -> StepOutput:
        """``d_steps`` discriminator updates, then the generator's surrogate loss."""
        for _ in range(self.d_steps):
            objective = self._discriminator_step(model, batch_size)
        loss, value, scores, keep = generator_surrogate(
            model, self.discriminator, self.gamma, batch_size
        )
        diagnostics = {
            "gan_objective": objective,
            "generator_loss": value,
            "d_model": torch.where(keep, scores, torch.zeros_like(scores)).sum() / keep.sum(),
            "d_skipped_steps": self.d_updates - self.optimizer.accepted,
            NONFINITE_SAMPLES: (~keep).sum().to(torch.float64),
        }
        if self.likelihood_weight:
            log_likelihood, _ = finite_mean(model.log_prob(self._data_batch(batch_size)))
            loss = loss - self.likelihood_weight * log_likelihood
            diagnostics["nll"] = -log_likelihood.detach()
        return loss, diagnostics

    def energy_evaluations(self, batch_size: int) -> int:
        """The GAN learns from data: no target energy."""
        return 0

    def state_dict(self) -> dict[str, Any]:
        """The discriminator, its optimiser moments, the step ratio and the update count."""
        return {
            "discriminator": self.discriminator.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "d_steps": self.d_steps,
            "d_updates": self.d_updates,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`; a checkpoint of another step ratio is refused."""
        if int(state["d_steps"]) != self.d_steps:
            raise ValueError(
                f"the checkpoint was trained with d_steps = {state['d_steps']}, the config says "
                f"{self.d_steps}: resume with the same d_steps"
            )
        self.discriminator.load_state_dict(state["discriminator"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.d_updates = int(state["d_updates"])

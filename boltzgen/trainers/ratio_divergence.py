r"""Ratio divergence (RD) learning for unnormalised discrete models (Ishida et al. 2024).

With the normaliser-free log-ratio l(x) = log p~(x) - log q~(x) = -u(x) + F_theta(x) (target
reduced energy u, model free energy F_theta), RD compares l at a data point x ~ p and at a model
sample y ~ q_theta:

    RD(theta) = E_{x~p} E_{y~q_theta} [ (l(x) - l(y))^2 ]
              = Var_p(l) + Var_q(l) + (KL(p||q) + KL(q||p))^2 .

Z and Z_theta cancel in l(x) - l(y); RD >= 0 with equality iff q = p on the support. Its gradient
has a pathwise part (through l) and a score part (through the sampling distribution q_theta):

    grad RD = E_p E_q[2 (l(x) - l(y)) (grad F(x) - grad F(y))] - Cov_q(g(y), grad F(y)),
    g(y) = E_p[(l(x) - l(y))^2].

Estimator on a batch x_1..x_B (data) and y_1..y_M (model samples, detached):
pathwise part = autograd of mean_{i,j} (l(x_i) - l(y_j))^2, computed in O(B + M) as
mean(l_x^2) - 2 mean(l_x) mean(l_y) + mean(l_y^2); score part = autograd of
-mean_j (g_j - b_j) F(y_j) with g_j = mean_i (l(x_i) - l(y_j))^2 detached and the leave-one-out
baseline b_j = mean_{k != j} g_k. Both parts are unbiased. The data's target energies are
computed once, when the objective is built.

With a normalized model (autoregressive: log q~ = log q, F = -log q) the same estimator applies
with exact model samples instead of persistent chains: l(x) = -u(x) - log q(x) needs no free
energy, and the score part is the gradient through the sampling distribution q_theta.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..energy.base import Energy
from .discrete_kl import FreeEnergyModel, PersistentChainObjective
from .objective import NONFINITE_SAMPLES

__all__ = ["ratio_divergence_surrogate", "RatioDivergence"]


def ratio_divergence_surrogate(
    model: FreeEnergyModel, data: Tensor, data_log_p: Tensor, target: Energy, model_samples: Tensor
) -> tuple[Tensor, dict[str, Tensor]]:
    """RD surrogate whose gradient is an unbiased estimate of grad RD.

    Arguments:
        model: The model (free energy F, differentiable).
        data: Target samples x ~ p, shape ``(B, V)``.
        data_log_p: log p~(x) = -u(x) of those samples, shape ``(B,)``.
        target: The target energy (evaluated on the model samples).
        model_samples: y ~ q (detached), shape ``(M, V)``, M >= 2.

    Returns:
        ``(loss, diagnostics)``; ``"ratio_divergence"`` is an unbiased estimate of RD (no
        constant dropped), ``"log_ratio_std_data"`` / ``"log_ratio_std_model"`` the spread of l
        over each batch (the energy-fitting errors; 0 when q = p), ``"nonfinite_samples"``.
        Data points or model samples with a non-finite log-ratio (a NaN or infinite target
        energy) are left out of every mean, the baseline and the diagnostics; fewer than two
        finite model samples or no finite data point give a NaN loss (the step is skipped).
    """
    f_y = -model.log_prob(
        model_samples
    )  # F = -log q~ (an RBM's free energy; -log q if normalized)
    l_x = data_log_p.to(f_y.dtype) - model.log_prob(data)
    l_y = -target.energy(model_samples.to(f_y.dtype)) + f_y
    valid_x, valid_y = torch.isfinite(l_x.detach()), torch.isfinite(l_y.detach())
    n_x, n_y = valid_x.sum(), valid_y.sum()
    z_x = torch.where(valid_x, l_x, torch.zeros_like(l_x))
    z_y = torch.where(valid_y, l_y, torch.zeros_like(l_y))
    mean_x, mean_x2 = z_x.sum() / n_x, (z_x**2).sum() / n_x
    mean_y, mean_y2 = z_y.sum() / n_y, (z_y**2).sum() / n_y
    pathwise = mean_x2 - 2 * mean_x * mean_y + mean_y2
    with torch.no_grad():
        g = torch.where(valid_y, mean_x2 - 2 * z_y * mean_x + z_y**2, torch.zeros_like(z_y))
        advantage = torch.where(valid_y, g - (g.sum() - g) / (n_y - 1), torch.zeros_like(g))
    score = torch.where(valid_y, advantage * f_y, torch.zeros_like(f_y)).sum() / n_y
    loss = pathwise - score
    return loss, {
        "ratio_divergence": pathwise.detach(),
        "log_ratio_std_data": _masked_std(z_x.detach(), valid_x, mean_x.detach()),
        "log_ratio_std_model": _masked_std(z_y.detach(), valid_y, mean_y.detach()),
        NONFINITE_SAMPLES: ((~valid_x).sum() + (~valid_y).sum()).to(torch.float64),
    }


def _masked_std(values: Tensor, valid: Tensor, mean: Tensor) -> Tensor:
    """Sample standard deviation (n - 1) of the ``valid`` entries of ``values`` with their
    ``mean``, without selecting them (no host synchronisation)."""
    squares = torch.where(valid, (values - mean) ** 2, torch.zeros_like(values))
    return (squares.sum() / (valid.sum() - 1)).sqrt()


class RatioDivergence(PersistentChainObjective):
    """Ratio-divergence objective: target data plus the tractable target energy.

    Arguments:
        target: Target energy u (discrete; log p~ = -u).
        data: Target samples, shape ``(n_data, V)`` (exact samples or long MCMC).
        k_steps: Gibbs sweeps of the persistent model chains per step (PCD-k).
        generator: Random generator on the data's device.

    Each ``loss(model, batch_size)`` uses ``batch_size`` data rows and ``batch_size`` model
    samples and evaluates the target energy on the model samples only (the data's energies are
    cached: ``n_data`` evaluations once, at construction).
    """

    name = "ratio-divergence"
    energy_calls_per_sample = 1

    def __init__(
        self,
        target: Energy,
        data: Tensor,
        k_steps: int = 1,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(k_steps, generator)
        self.target = target
        self.data = data
        with torch.no_grad():
            self.data_log_p = -target.energy(data)
        self.generator = generator

    def loss(self, model: FreeEnergyModel, batch_size: int) -> tuple[Tensor, dict[str, Tensor]]:
        index = torch.randint(
            self.data.shape[0], (batch_size,), generator=self.generator, device=self.data.device
        )
        y = self.model_samples(model, batch_size)
        return ratio_divergence_surrogate(
            model, self.data[index], self.data_log_p[index], self.target, y
        )

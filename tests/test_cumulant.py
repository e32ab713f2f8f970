"""Cumulant-GAN objective: stability, special points, and L(D*) = (1/gamma) R_a for Gaussians."""

import math

import pytest
import torch

from boltzgen.trainers.cumulant import cumulant_objective, log_mean_exp


def test_log_mean_exp_stable_at_1e3():
    x = torch.tensor([1000.0, -1000.0, 999.0])
    out = log_mean_exp(x)
    ref = 1000.0 + math.log((1 + math.exp(-1.0)) / 3)
    assert torch.isfinite(out) and abs(float(out) - ref) < 1e-4
    assert torch.isfinite(log_mean_exp(-x))


def test_special_points_are_plain_means():
    d_p, d_q = torch.randn(50), torch.randn(40)
    assert torch.allclose(cumulant_objective(d_p, d_q, 0.0, 0.0), d_p.mean() - d_q.mean())


@pytest.mark.parametrize(
    "beta,gamma", [(0.0, 1.0), (1.0, 0.5), (0.5, 0.5), (0.3, 1.0), (1.0, 2.0), (2.0, 0.5)]
)
def test_optimal_discriminator_gives_renyi(beta, gamma):
    # P = N(1, 1), Q = N(0, 1); R_a(P||Q) = a (mu_p - mu_q)^2 / 2 for equal unit variances.
    torch.manual_seed(0)
    n = 400_000
    x_p, x_q = torch.randn(n, dtype=torch.float64) + 1.0, torch.randn(n, dtype=torch.float64)

    def d(x):
        return (x - 0.5) / (beta + gamma)  # log(p/q) = x - 1/2

    a = gamma / (beta + gamma)
    ref = a * 0.5 / gamma
    got = float(cumulant_objective(d(x_p), d(x_q), beta, gamma))
    assert abs(got - ref) < 0.02 * max(ref, 0.1)  # Monte Carlo, 4e5 samples

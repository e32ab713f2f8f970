"""Cumulant GAN against closed forms: for Gaussians P, Q the supremum of L(beta, gamma) over
quadratic discriminators (which contain the optimum) is (1/gamma) R_a(P||Q), a = gamma/(beta +
gamma), at seven (beta, gamma) points in 1-D and 2-D; the generator gradient at the optimal D is
the gradient of (1/gamma) R_a (envelope theorem), exactly and by the trainer's pathwise estimator.

Every expectation below is an exact Gaussian integral: for x ~ N(mu, S) and D(x) = x'Ax + b'x + c,
log E exp(t D) = t c - 1/2 log|S| - 1/2 log|S^-1 - 2tA| + 1/2 h'(S^-1 - 2tA)^-1 h - 1/2 mu'S^-1 mu
with h = S^-1 mu + t b. The Rényi divergence is Gil et al.'s closed form, itself checked against
quadrature in 1-D.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from boltzgen.trainers.cumulant import cumulant_term

F64 = torch.float64


def _tensor(values) -> torch.Tensor:
    return torch.tensor(values, dtype=F64)


POINTS = [(0.0, 1.0), (1.0, 0.0), (0.5, 0.5), (0.3, 1.0), (1.0, 2.0), (2.0, 0.5), (0.0, 0.5)]


def _gaussians(dim: int) -> tuple[torch.Tensor, ...]:
    if dim == 1:
        return (
            _tensor([0.7]),
            _tensor([[1.3**2]]),
            _tensor([-0.2]),
            _tensor([[0.9**2]]),
        )
    return (
        _tensor([0.5, -0.3]),
        _tensor([[1.2, 0.3], [0.3, 0.8]]),
        _tensor([-0.1, 0.4]),
        _tensor([[0.9, -0.2], [-0.2, 1.1]]),
    )


def log_mgf(mu, cov, a, b, c, t):
    """log E_{N(mu, cov)} exp(t (x'Ax + b'x + c)); t = 0 gives t * E[D] = 0, so callers use
    :func:`mean_d` there."""
    precision = torch.linalg.inv(cov)
    shifted = precision - 2 * t * a
    h = precision @ mu + t * b
    return (
        t * c
        - 0.5 * torch.logdet(cov)
        - 0.5 * torch.logdet(shifted)
        + 0.5 * h @ torch.linalg.solve(shifted, h)
        - 0.5 * mu @ precision @ mu
    )


def mean_d(mu, cov, a, b, c):
    return torch.trace(a @ cov) + mu @ a @ mu + b @ mu + c


def term(mu, cov, a, b, c, t):
    """(1/t) log E exp(t D), the mean at t = 0."""
    return mean_d(mu, cov, a, b, c) if t == 0 else log_mgf(mu, cov, a, b, c, t) / t


def objective(p, q, a, b, c, beta, gamma):
    """L(beta, gamma) of the quadratic D exactly."""
    return -term(p[0], p[1], -a, -b, -c, beta) - term(q[0], q[1], a, b, c, gamma)


def log_ratio(p, q):
    """log p(x) - log q(x) = x'Ax + b'x + c."""
    (mp, sp), (mq, sq) = p, q
    ip, iq = torch.linalg.inv(sp), torch.linalg.inv(sq)
    a = -0.5 * (ip - iq)
    b = ip @ mp - iq @ mq
    c = -0.5 * (mp @ ip @ mp - mq @ iq @ mq) - 0.5 * (torch.logdet(sp) - torch.logdet(sq))
    return a, b, c


def renyi(p, q, order):
    """R_order(P||Q) for Gaussians (Gil, Alajaji & Linder 2013); order in (0, 1)."""
    (mp, sp), (mq, sq) = p, q
    mixed = order * sq + (1 - order) * sp
    diff = mp - mq
    return 0.5 * order * diff @ torch.linalg.solve(mixed, diff) - (
        torch.logdet(mixed) - (1 - order) * torch.logdet(sp) - order * torch.logdet(sq)
    ) / (2 * (order - 1))


def kl(p, q):
    """KL(P||Q) for Gaussians."""
    (mp, sp), (mq, sq) = p, q
    iq = torch.linalg.inv(sq)
    diff = mq - mp
    k = mp.shape[0]
    return 0.5 * (
        torch.trace(iq @ sp) + diff @ iq @ diff - k + torch.logdet(sq) - torch.logdet(sp)
    )


def expected_sup(p, q, beta, gamma):
    """(1/gamma) R_a(P||Q), with its limits KL(P||Q)/gamma at beta = 0, KL(Q||P)/beta at 0."""
    if beta == 0:
        return kl(p, q) / gamma
    if gamma == 0:
        return kl(q, p) / beta
    return renyi(p, q, gamma / (beta + gamma)) / gamma


def test_renyi_closed_form_against_quadrature():
    """The Gil et al. formula equals 1/(a-1) log int p^a q^(1-a) by quadrature (1-D)."""
    mp, sp, mq, sq = _gaussians(1)
    x = np.linspace(-15, 15, 200_001)

    def pdf(m, s):
        return np.exp(-0.5 * (x - m) ** 2 / s) / np.sqrt(2 * np.pi * s)

    for order in (0.1, 0.5, 0.9):
        integral = np.trapezoid(
            pdf(float(mp), float(sp)) ** order * pdf(float(mq), float(sq)) ** (1 - order), x
        )
        reference = math.log(integral) / (order - 1)
        assert abs(float(renyi((mp, sp), (mq, sq), order)) - reference) < 1e-9


@pytest.mark.parametrize("dim", [1, 2])
@pytest.mark.parametrize("beta,gamma", POINTS)
def test_sup_over_quadratic_discriminators_is_renyi(dim, beta, gamma):
    """L at D* = log(p/q)/(beta + gamma) equals (1/gamma) R_a to 1e-10; D* is a stationary point of
    L over the quadratic discriminators (gradient < 1e-9), and since L is concave in D, the
    supremum; random quadratic perturbations of D* only lower L."""
    mp, sp, mq, sq = _gaussians(dim)
    p, q = (mp, sp), (mq, sq)
    a0, b0, c0 = (t / (beta + gamma) for t in log_ratio(p, q))
    a = a0.clone().requires_grad_(True)
    b = b0.clone().requires_grad_(True)
    c = c0.clone().requires_grad_(True)
    value = objective(p, q, a, b, c, beta, gamma)
    assert abs(float(value.detach()) - float(expected_sup(p, q, beta, gamma))) < 1e-10
    grads = torch.autograd.grad(value, (a, b, c))
    assert max(float(g.abs().max()) for g in grads) < 1e-9
    generator = torch.Generator().manual_seed(dim)
    for _ in range(20):
        da = 0.05 * torch.randn(dim, dim, generator=generator, dtype=F64)
        db = 0.05 * torch.randn(dim, generator=generator, dtype=F64)
        perturbed = objective(p, q, a0 + 0.5 * (da + da.T), b0 + db, c0, beta, gamma)
        assert float(perturbed) < float(value)


@pytest.mark.parametrize("beta,gamma", [(0.5, 0.5), (0.0, 1.0), (1.0, 2.0)])
def test_sample_estimate_of_the_objective_at_the_optimum(beta, gamma):
    """The trainer's log-mean-exp estimate of L(D*) from 4e5 samples of each Gaussian is within
    1% (or 0.002) of (1/gamma) R_a(P||Q) (2-D)."""
    mp, sp, mq, sq = _gaussians(2)
    p, q = (mp, sp), (mq, sq)
    a, b, c = (t / (beta + gamma) for t in log_ratio(p, q))
    generator = torch.Generator().manual_seed(3)
    n = 400_000
    x_p = mp + torch.randn(n, 2, generator=generator, dtype=F64) @ torch.linalg.cholesky(sp).T
    x_q = mq + torch.randn(n, 2, generator=generator, dtype=F64) @ torch.linalg.cholesky(sq).T

    def d(x):
        return ((x @ a) * x).sum(1) + x @ b + c

    estimate = -cumulant_term(-d(x_p), beta) - cumulant_term(d(x_q), gamma)
    expected = float(expected_sup(p, q, beta, gamma))
    assert abs(float(estimate) - expected) < max(0.01 * expected, 0.002)


@pytest.mark.parametrize("beta,gamma", [(0.5, 0.5), (0.3, 1.0), (0.0, 1.0)])
def test_generator_gradient_at_the_optimal_discriminator(beta, gamma):
    """Q = N(m, s^2 I) in 2-D with theta = (m, log s): the gradient of the generator loss
    -(1/gamma) log E_Q[exp(gamma D*)] at a frozen D* equals the gradient of
    (1/gamma) R_a(P||Q_theta)
    (autograd of the closed form, to 1e-9: the envelope theorem), and the trainer's pathwise
    estimate (-cumulant_term on reparameterized samples, 40 batches of 20000) agrees with it within
    4 standard errors per component."""
    mp, sp, _, _ = _gaussians(2)
    m0, log_s0 = _tensor([-0.1, 0.4]), _tensor(0.1)
    q0 = (m0, torch.exp(2 * log_s0) * torch.eye(2, dtype=F64))
    a, b, c = (t / (beta + gamma) for t in log_ratio((mp, sp), q0))

    def theta():
        return m0.clone().requires_grad_(True), log_s0.clone().requires_grad_(True)

    m, log_s = theta()
    q = (m, torch.exp(2 * log_s) * torch.eye(2, dtype=F64))
    generator_loss = -term(q[0], q[1], a, b, c, gamma)
    exact = torch.cat([g.reshape(-1) for g in torch.autograd.grad(generator_loss, (m, log_s))])
    m, log_s = theta()
    closed = expected_sup(
        (mp, sp), (m, torch.exp(2 * log_s) * torch.eye(2, dtype=F64)), beta, gamma
    )
    reference = torch.cat([g.reshape(-1) for g in torch.autograd.grad(closed, (m, log_s))])
    assert torch.allclose(exact, reference, atol=1e-9, rtol=0)

    torch.manual_seed(11)
    estimates = []
    for _ in range(40):
        m, log_s = theta()
        y = m + torch.exp(log_s) * torch.randn(20_000, 2, dtype=F64)
        scores = ((y @ a) * y).sum(1) + y @ b + c
        loss = -cumulant_term(scores, gamma)
        estimates.append(torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, (m, log_s))]))
    stacked = torch.stack(estimates)
    mean, error = stacked.mean(0), stacked.std(0) / math.sqrt(len(estimates))
    assert bool(((mean - reference).abs() <= 4 * error + 1e-12).all()), (mean, reference, error)

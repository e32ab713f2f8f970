"""Tests of the nflows adapter: an nflows RQ coupling flow used through boltzgen's model API.

References: the flow's own exact ``log_prob``; the closed-form KL divergence between Gaussians
and the exact log-normaliser of a 2-D correlated Gaussian target.
"""

from __future__ import annotations

import math
import sys

import pytest
import torch

from boltzgen.errors import BoltzgenError
from boltzgen.flows import NflowsAdapter
from boltzgen.flows.nflows_adapter import nflows_rq_coupling_flow

# target: N(0, C) with unit variances and correlation 0.9; u(x) = x^T C^-1 x / 2,
# log Z = log(2 pi sqrt(det C)), so KL(q || p) = E_q[log q + u] + log Z
COVARIANCE = torch.tensor([[1.0, 0.9], [0.9, 1.0]], dtype=torch.float64)
LOG_Z = math.log(2 * math.pi) + 0.5 * math.log(torch.linalg.det(COVARIANCE).item())


def reduced_energy(x: torch.Tensor) -> torch.Tensor:
    precision = torch.linalg.inv(COVARIANCE).to(x)
    return 0.5 * torch.einsum("ni,ij,nj->n", x, precision, x)


def kl_estimate(model: NflowsAdapter, n: int) -> tuple[float, float]:
    """Monte Carlo KL(q || p) on n fresh samples and its standard error."""
    with torch.no_grad():
        x, log_q = model.sample_and_log_prob(n)
        terms = (log_q + reduced_energy(x)).double() + LOG_Z
    return terms.mean().item(), terms.std().item() / math.sqrt(n)


def test_sample_and_log_prob_matches_log_prob(device) -> None:
    torch.manual_seed(0)
    model = nflows_rq_coupling_flow(6, n_layers=4, hidden=32, n_blocks=2, bins=8).to(device)
    assert model.dim == 6
    assert (
        sum(p.numel() for p in model.parameters())
        == sum(p.numel() for p in model.flow.parameters())
        > 0
    )
    x, log_q = model.sample_and_log_prob(1000)
    assert x.shape == (1000, 6) and log_q.shape == (1000,)
    # float32: the sampling pass inverts the splines, log_prob evaluates them forward
    torch.testing.assert_close(model.log_prob(x.detach()), log_q.detach(), rtol=1e-5, atol=1e-4)
    assert not model.sample(5).requires_grad


def test_reverse_kl_training_lowers_kl(device) -> None:
    """200 Adam steps (lr 5e-3, batch 256) of reverse KL on the correlated Gaussian lower the
    KL estimate (20k samples) from its random start (measured 4.22 +- 0.06 nats; the closed
    form for q = N(0, I) would be 3.43) to below 0.05 (measured 0.008 +- 0.001)."""
    torch.manual_seed(0)
    model = nflows_rq_coupling_flow(2, n_layers=4, hidden=32, n_blocks=2, bins=8).to(device)
    before, se_before = kl_estimate(model, 20_000)
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-3)
    for _ in range(200):
        optimizer.zero_grad()
        x, log_q = model.sample_and_log_prob(256)
        loss = (log_q + reduced_energy(x)).mean()
        loss.backward()
        optimizer.step()
    after, se_after = kl_estimate(model, 20_000)
    assert after < 0.05 and after < before - 4 * (se_before + se_after)
    assert after > -4 * se_after  # a KL is non-negative up to Monte Carlo error


def test_adapter_errors(monkeypatch) -> None:
    with pytest.raises(BoltzgenError):
        NflowsAdapter(torch.nn.Linear(2, 2))
    # nflows missing: an import of it fails (sys.modules entry None), the adapter says what to do
    monkeypatch.setitem(sys.modules, "nflows", None)
    with pytest.raises(BoltzgenError, match="pip install 'boltzgen\\[nflows\\]'"):
        nflows_rq_coupling_flow(2)

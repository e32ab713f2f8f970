"""Toy targets: temperature scaling, shapes/dtypes, gradients, exact log Z and exact samples."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import integrate

from boltzgen import BoltzgenError, Energy
from boltzgen.energy.logprob import LogProbEnergy
from boltzgen.energy.toy import DoubleWell, GaussianMixture2D, ManyWell

TARGETS = {
    "mixture-uniform": lambda: GaussianMixture2D(),
    "mixture-skewed": lambda: GaussianMixture2D(weights=GaussianMixture2D.skewed_weights(8)),
    "double-well-5d": lambda: DoubleWell(dim=5, n_wells=2),
    "many-well-32": lambda: ManyWell(),
    "teacher": lambda: LogProbEnergy(
        torch.distributions.MultivariateNormal(
            torch.zeros(3, dtype=torch.float64), torch.eye(3, dtype=torch.float64) * 2.0
        ).log_prob,
        (3,),
    ),
}


@pytest.fixture(params=sorted(TARGETS))
def target(request: pytest.FixtureRequest, device: torch.device) -> Energy:
    return TARGETS[request.param]().to(device)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_shape_dtype_device(target: Energy, dtype: torch.dtype, device: torch.device) -> None:
    x = torch.randn(7, *target.event_shape, dtype=dtype, device=device)
    u = target.energy(x)
    assert u.shape == (7,) and u.dtype == dtype and u.device.type == device.type
    assert not target.is_discrete


def test_temperature_scaling(target: Energy) -> None:
    x = torch.randn(11, *target.event_shape, dtype=torch.float64)
    u = target.energy(x)
    for temperature in (0.5, 2.0, 7.3):
        torch.testing.assert_close(
            target.energy(x, temperature=temperature),
            u * target.temperature / temperature,
            rtol=1e-14,
            atol=0,
        )


def test_bad_shape_is_refused(target: Energy) -> None:
    with pytest.raises(BoltzgenError, match="expects states of shape"):
        target.energy(torch.zeros(3, target.dim + 1))
    with pytest.raises(BoltzgenError, match="temperature must be positive"):
        target.energy(torch.zeros(3, *target.event_shape), temperature=-1.0)


def test_gradient_matches_finite_differences(target: Energy) -> None:
    x = torch.randn(4, *target.event_shape, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda y: target.energy(y), (x,), eps=1e-6, atol=1e-5, rtol=1e-5
    )


def test_mixture_is_normalised_and_matches_its_density() -> None:
    target = GaussianMixture2D(weights=GaussianMixture2D.skewed_weights(8))
    grid = torch.linspace(-6, 6, 801, dtype=torch.float64)
    xx, yy = torch.meshgrid(grid, grid, indexing="ij")
    u = target.energy(torch.stack([xx.flatten(), yy.flatten()], 1)).reshape(xx.shape)
    area = (grid[1] - grid[0]) ** 2
    assert float(torch.exp(-u).sum() * area) == pytest.approx(1.0, abs=1e-8)  # log Z = 0
    # independent reference: torch.distributions mixture
    w = torch.tensor(GaussianMixture2D.skewed_weights(8), dtype=torch.float64)
    mix = torch.distributions.MixtureSameFamily(
        torch.distributions.Categorical(w / w.sum()),
        torch.distributions.Independent(torch.distributions.Normal(target.centers, 0.3), 1),
    )
    x = torch.randn(100, 2, dtype=torch.float64) * 3
    torch.testing.assert_close(target.energy(x), -mix.log_prob(x), rtol=1e-12, atol=1e-12)


def test_mixture_exact_samples_have_the_mode_weights() -> None:
    target = GaussianMixture2D(weights=GaussianMixture2D.skewed_weights(8))
    n = 200_000
    counts = torch.bincount(
        target.mode_index(target.sample(n, torch.Generator().manual_seed(0))), minlength=8
    ).double()
    p = target.log_weights.exp()
    se = torch.sqrt(p * (1 - p) / n)
    assert torch.all((counts / n - p).abs() < 4 * se)


def test_double_well_log_z_against_scipy_quadrature() -> None:
    target = DoubleWell(dim=3, n_wells=1)
    one_d, _ = integrate.quad(
        lambda x: math.exp(-(x**4 - 6 * x**2 - 0.5 * x)), -np.inf, np.inf, epsabs=0, epsrel=1e-13
    )
    expected = math.log(one_d) + math.log(2 * math.pi)
    assert target.log_z == pytest.approx(expected, abs=1e-10)


def test_many_well_is_sixteen_independent_pairs() -> None:
    target = ManyWell()
    assert target.dim == 32 and target.event_shape == (32,)
    one_d, _ = integrate.quad(
        lambda x: math.exp(-(x**4 - 6 * x**2 - 0.5 * x)), -np.inf, np.inf, epsabs=0, epsrel=1e-13
    )
    assert target.log_z == pytest.approx(
        16 * (math.log(one_d) + 0.5 * math.log(2 * math.pi)), abs=1e-9
    )
    x = torch.randn(5, 32, dtype=torch.float64)
    pairs = x.reshape(5, 16, 2)
    expected = (
        pairs[..., 0] ** 4
        - 6 * pairs[..., 0] ** 2
        - 0.5 * pairs[..., 0]
        + 0.5 * pairs[..., 1] ** 2
    ).sum(1)
    torch.testing.assert_close(target.energy(x), expected, rtol=1e-13, atol=1e-12)


def test_many_well_exact_samples_moments() -> None:
    """Exact samples: mean of the double-well coordinate and the well occupation vs quadrature."""
    target = ManyWell(n_pairs=2)
    x = target.sample(100_000, generator=torch.Generator().manual_seed(1))[:, 0].numpy()
    z, _ = integrate.quad(lambda t: math.exp(-(t**4 - 6 * t**2 - 0.5 * t)), -np.inf, np.inf)
    right, _ = integrate.quad(lambda t: math.exp(-(t**4 - 6 * t**2 - 0.5 * t)), 0, np.inf)
    mean, _ = integrate.quad(lambda t: t * math.exp(-(t**4 - 6 * t**2 - 0.5 * t)), -np.inf, np.inf)
    p_right = right / z
    assert abs((x > 0).mean() - p_right) < 4 * math.sqrt(p_right * (1 - p_right) / x.size)
    assert abs(x.mean() - mean / z) < 4 * x.std() / math.sqrt(x.size)


def test_bad_parameters_are_refused() -> None:
    with pytest.raises(BoltzgenError):
        DoubleWell(dim=2, n_wells=3)
    with pytest.raises(BoltzgenError):
        GaussianMixture2D(sigma=0.0)
    with pytest.raises(BoltzgenError):
        GaussianMixture2D(weights=[1.0, -1.0, 1, 1, 1, 1, 1, 1])

"""Tests of boltzgen.flows: domains, priors, and the RQ-spline coupling flow.

References: exact inverses and autograd Jacobians (float64), closed-form densities (scipy.stats),
numerical quadrature of densities, and the identity map at initialisation.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import pytest
import torch
from scipy import stats

from boltzgen.errors import BoltzgenError
from boltzgen.flows import CouplingFlow, Domain, circular, interval, make_prior, real

DOMAIN_SETS = {
    "real": [real()] * 5,
    "interval": [interval(0.1, 0.4), interval(-1.0, 2.0), interval(0.0, 1.0), interval(1.0, 3.0)],
    "circular": [circular(), circular(-math.pi, math.pi), circular(0.0, 1.0), circular()],
    "mixed": [
        real(),
        interval(0.1, 0.3),
        circular(),
        interval(0.0, 1.0),
        circular(-math.pi, math.pi),
        real(),
    ],
}
DTYPES = {torch.float64: 1e-10, torch.float32: 1e-4}


def make_flow(
    domains: list[Domain],
    dtype: torch.dtype,
    device: torch.device,
    mask: str = "alternating",
    n_layers: int = 4,
    seed: int = 0,
    perturbation: float | None = None,
) -> CouplingFlow:
    """A small flow (4 layers, hidden 32) with random non-identity parameters: every output
    layer weight perturbed by N(0, s^2), s = 0.3 in float64 and 0.1 in float32 (at 0.3 the
    maps reach log-dets of ~14 over 5 real features and float32 round trips lose ~3e-4 through
    conditioning alone)."""
    if perturbation is None:
        perturbation = 0.3 if dtype == torch.float64 else 0.1
    flow = CouplingFlow(
        domains, n_layers=n_layers, hidden=32, depth=2, bins=8, mask=mask, seed=seed
    )
    generator = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for layer in flow.layers:
            out = layer.conditioner.output_layer
            out.weight.add_(perturbation * torch.randn(out.weight.shape, generator=generator))
    return flow.to(device=device, dtype=dtype)


def random_points(
    domains: list[Domain], n: int, dtype: torch.dtype, device: torch.device, seed: int = 2
) -> torch.Tensor:
    """Points in each domain: N(0, 3^2) on real features (reaching the identity tails beyond
    B = 5), uniform on intervals and circles."""
    generator = torch.Generator().manual_seed(seed)
    columns = []
    for d in domains:
        if d.kind == "real":
            columns.append(3.0 * torch.randn(n, generator=generator, dtype=torch.float64))
        else:
            u = torch.rand(n, generator=generator, dtype=torch.float64)
            columns.append(d.low + d.width * u)
    return torch.stack(columns, dim=1).to(device=device, dtype=dtype)


def circular_aware_error(a: torch.Tensor, b: torch.Tensor, domains: list[Domain]) -> torch.Tensor:
    """Max |a - b|, measuring circular features by the distance on the circle."""
    diff = a - b
    for j, d in enumerate(domains):
        if d.kind == "circular":
            diff[:, j] = torch.remainder(diff[:, j] + d.width / 2, d.width) - d.width / 2
    return diff.abs().max()


# ---------------------------------------------------------------- domains


def test_domain_factories_and_errors() -> None:
    assert circular() == Domain("circular", 0.0, 2 * math.pi)
    assert interval(0, 1).width == 1.0 and real().width == math.inf
    for bad in (
        lambda: interval(1.0, 1.0),
        lambda: circular(0.0, math.inf),
        lambda: Domain("sphere"),
        lambda: Domain("real", 0.0, 1.0),
    ):
        with pytest.raises(BoltzgenError):
            bad()


# ---------------------------------------------------------------- priors

ONE_D_PRIORS = [
    ("normal", real(), 0.3, 1.5),
    ("uniform", interval(-1.0, 2.0), None, None),
    ("uniform", circular(), None, None),
    ("truncated-normal", interval(0.0, 1.0), 0.5, 0.1),
    ("truncated-normal", interval(0.0, 1.0), 0.9, 0.3),  # mode right of centre: flipped side
    ("truncated-normal", interval(0.0, 1.0), -0.5, 0.2),  # mode outside: only a tail remains
]


@contextlib.contextmanager
def default_dtype(dtype: torch.dtype) -> Iterator[None]:
    """Build modules with float64 buffers from the start (no float32 rounding of loc/scale)."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def scipy_reference(kind: str, domain: Domain, loc: float | None, scale: float | None):
    if kind == "normal":
        return stats.norm(loc, scale)
    if kind == "uniform":
        return stats.uniform(domain.low, domain.width)
    a, b = (domain.low - loc) / scale, (domain.high - loc) / scale
    return stats.truncnorm(a, b, loc=loc, scale=scale)


@pytest.mark.parametrize("kind,domain,loc,scale", ONE_D_PRIORS)
def test_prior_1d_density_and_moments(kind, domain, loc, scale, device) -> None:
    with default_dtype(torch.float64):
        prior = make_prior([domain], kind, loc, scale).to(device)
    reference = scipy_reference(kind, domain, loc, scale)
    # normalisation by trapezoid quadrature on 200k points (error << 1e-6 for these smooth
    # densities; the uniform's endpoint half-weights are exact)
    low, high = reference.support()
    low, high = max(low, reference.ppf(1e-15)), min(high, reference.isf(1e-15))
    grid = torch.linspace(low, high, 200_001, dtype=torch.float64, device=device)
    density = prior.log_prob(grid[:, None]).exp()
    assert abs(torch.trapezoid(density, grid).item() - 1.0) < 1e-6
    # log-density against scipy at points inside the support
    inside = grid[1:-1:997]
    expected = torch.as_tensor(reference.logpdf(inside.cpu().numpy()), device=device)
    torch.testing.assert_close(prior.log_prob(inside[:, None]), expected, rtol=1e-10, atol=1e-10)
    # mean and variance of 200k samples within 4 standard errors of the closed forms
    torch.manual_seed(0)
    n = 200_000
    x = prior.rsample(n)[:, 0].double()
    assert x.shape == (n,)
    mean, var = reference.mean(), reference.var()
    centred = x - x.mean()
    se_mean = math.sqrt(centred.var().item() / n)
    se_var = math.sqrt((centred.pow(4).mean() - centred.var() ** 2).item() / n)
    assert abs(x.mean().item() - mean) < 4 * se_mean
    assert abs(x.var().item() - var) < 4 * se_var
    if domain.kind != "real":
        assert x.min().item() >= domain.low and x.max().item() <= domain.high


def test_prior_outside_support_and_periodicity(device) -> None:
    prior = make_prior([interval(0.0, 1.0), circular()], "truncated-normal").to(device)
    x = torch.tensor([[1.5, 1.0], [0.5, 1.0], [0.5, 1.0 + 2 * math.pi]], device=device)
    log_p = prior.log_prob(x)
    assert log_p[0].item() == -math.inf
    assert torch.isfinite(log_p[1:]).all() and abs(log_p[1].item() - log_p[2].item()) < 1e-6


def test_make_prior_mixed_families_and_errors(device) -> None:
    domains = DOMAIN_SETS["mixed"]
    prior = make_prior(domains, "truncated-normal", loc=None, scale=None).to(device)
    assert prior.families == (
        "normal",
        "truncated-normal",
        "uniform",
        "truncated-normal",
        "uniform",
        "normal",
    )
    # defaults: midpoint and a tenth of the width (TA-BG's 0.5 / 0.1 on [0, 1])
    assert prior.loc[3].item() == pytest.approx(0.5) and prior.scale[3].item() == pytest.approx(
        0.1
    )
    torch.manual_seed(0)
    z = prior.rsample(1000)
    assert z.shape == (1000, 6) and torch.isfinite(prior.log_prob(z)).all()
    auto = make_prior(domains)
    assert auto.families == ("normal", "uniform", "uniform", "uniform", "uniform", "normal")
    for args in (
        ([real()], "uniform"),
        ([interval(0, 1)], "normal"),
        ([real()], "gamma"),
        ([real(), real()], "normal", [0.0, 1.0, 2.0]),
        ([real()], "normal", 0.0, -1.0),
    ):
        with pytest.raises(BoltzgenError):
            make_prior(*args)


# ---------------------------------------------------------------- coupling flow


@pytest.mark.parametrize("mask", ["alternating", "random"])
@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("name", list(DOMAIN_SETS))
def test_inverse_round_trips(name, dtype, mask, device) -> None:
    domains = DOMAIN_SETS[name]
    flow = make_flow(domains, dtype, device, mask)
    tolerance = DTYPES[dtype]
    with torch.no_grad():
        x = random_points(domains, 2000, dtype, device)
        z, log_det_inverse = flow.inverse(x)
        x_back, log_det_forward = flow.transform(z)
        assert circular_aware_error(x_back, x, domains) <= tolerance
        # the forward and inverse log-dets at matching points are negatives
        assert (log_det_inverse + log_det_forward).abs().max() <= 10 * tolerance
        # the parameters are far from the identity: the map moves points by O(0.1) or more
        assert circular_aware_error(z, x, domains) > 0.05
        z = random_points(domains, 2000, dtype, device, seed=3)
        x, _ = flow.transform(z)
        z_back, _ = flow.inverse(x)
        assert circular_aware_error(z_back, z, domains) <= tolerance


@pytest.mark.parametrize("mask", ["alternating", "random"])
def test_log_det_matches_autograd_jacobian(mask, device) -> None:
    domains = DOMAIN_SETS["mixed"]
    flow = make_flow(domains, torch.float64, device, mask)
    z = random_points(domains, 6, torch.float64, device, seed=4)
    _, log_det = flow.transform(z)
    x, _ = flow.transform(z)
    _, log_det_inv = flow.inverse(x)
    for i in range(z.shape[0]):
        jac = torch.autograd.functional.jacobian(lambda v: flow.transform(v[None])[0][0], z[i])
        assert abs(torch.linalg.slogdet(jac)[1].item() - log_det[i].item()) < 1e-10
        jac_inv = torch.autograd.functional.jacobian(lambda v: flow.inverse(v[None])[0][0], x[i])
        assert abs(torch.linalg.slogdet(jac_inv)[1].item() - log_det_inv[i].item()) < 1e-10
    torch.testing.assert_close(log_det_inv, -log_det, rtol=0, atol=1e-10)


@pytest.mark.parametrize(
    "pair", [("interval", "circular"), ("real", "circular"), ("real", "interval")]
)
def test_density_integrates_to_one(pair, device) -> None:
    """Midpoint quadrature of q on a 300 x 300 grid (real features: [-10, 10]) gives 1.
    The tolerance 2e-3 bounds the quadrature error of this C1 density (spline kinks)."""
    pick = {"real": real(), "interval": interval(-1.0, 2.0), "circular": circular()}
    domains = [pick[k] for k in pair]
    flow = make_flow(domains, torch.float64, device, n_layers=6)
    axes, cell = [], 1.0
    for d in domains:
        low, high = (-10.0, 10.0) if d.kind == "real" else (d.low, d.high)
        h = (high - low) / 300
        axes.append(low + h * (torch.arange(300, dtype=torch.float64, device=device) + 0.5))
        cell *= h
    grid = torch.cartesian_prod(*axes)
    with torch.no_grad():
        mass = flow.log_prob(grid).exp().sum().item() * cell
    assert abs(mass - 1.0) < 2e-3


def test_circular_features_are_periodic_and_stay_in_domain(device) -> None:
    domains = DOMAIN_SETS["mixed"]
    flow = make_flow(domains, torch.float64, device)
    base = random_points(domains, 200, torch.float64, device, seed=5)
    with torch.no_grad():
        for j, d in enumerate(domains):
            if d.kind != "circular":
                continue
            at_low, at_high, below_high, above_low = (base.clone() for _ in range(4))
            at_low[:, j], at_high[:, j] = d.low, d.high
            below_high[:, j], above_low[:, j] = d.high - 1e-7, d.low + 1e-7
            y_low, y_high = flow.transform(at_low)[0], flow.transform(at_high)[0]
            # f(low) == f(high) mod period, exactly the same point after wrapping
            assert circular_aware_error(y_low, y_high, domains) < 1e-12
            # continuity across the seam: points 1e-7 either side of it map 1e-7*f' apart,
            # and the density is continuous there (equal boundary derivatives)
            assert (
                circular_aware_error(
                    flow.transform(below_high)[0], flow.transform(above_low)[0], domains
                )
                < 1e-4
            )
            torch.testing.assert_close(
                flow.log_prob(below_high), flow.log_prob(above_low), rtol=0, atol=1e-4
            )
        # outputs stay in [low, high) for circles and [low, high] for intervals, both ways,
        # also for inputs on the boundaries and outside the domains (clamped / wrapped)
        x = random_points(domains, 4000, torch.float64, device, seed=6)
        x[:100] = torch.tensor([d.low for d in domains]).nan_to_num(neginf=-7.0)
        x[100:200] = torch.tensor([d.high for d in domains]).nan_to_num(posinf=7.0)
        x[200:300] += 10.0
        for y in (flow.transform(x)[0], flow.inverse(x)[0]):
            for j, d in enumerate(domains):
                if d.kind == "interval":
                    assert y[:, j].min() >= d.low and y[:, j].max() <= d.high
                if d.kind == "circular":
                    assert y[:, j].min() >= d.low and y[:, j].max() < d.high
            assert torch.isfinite(y).all()


@pytest.mark.parametrize("mask", ["alternating", "random"])
@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("name", list(DOMAIN_SETS))
def test_identity_at_initialisation(name, dtype, mask, device) -> None:
    domains = DOMAIN_SETS[name]
    flow = CouplingFlow(domains, n_layers=5, hidden=16, mask=mask).to(device=device, dtype=dtype)
    x = random_points(domains, 500, dtype, device)
    tolerance = 1e-12 if dtype == torch.float64 else 1e-5
    with torch.no_grad():
        for y, log_det in (flow.transform(x), flow.inverse(x)):
            assert circular_aware_error(y, x, domains) <= tolerance * 10
            assert log_det.abs().max() <= tolerance


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("name", ["real", "mixed"])
def test_sample_and_log_prob_and_gradients(name, dtype, device) -> None:
    domains = DOMAIN_SETS[name]
    flow = make_flow(domains, dtype, device, "random")
    torch.manual_seed(0)
    x, log_q = flow.sample_and_log_prob(1000)
    assert x.shape == (1000, len(domains)) and log_q.shape == (1000,)
    assert x.dtype == dtype and log_q.dtype == dtype
    tolerance = 1e-10 if dtype == torch.float64 else 1e-5
    scale = log_q.detach().abs().clamp_min(1.0)  # float32: 1e-5 relative to |log q| >= 1
    assert ((flow.log_prob(x.detach()) - log_q.detach()).abs() / scale).max() <= tolerance
    # a reverse-KL-like loss on the samples reaches every layer's parameters (pathwise)
    loss = (log_q + x.square().sum(dim=-1)).mean()
    loss.backward()
    for layer in flow.layers:
        grads = [p.grad for p in layer.parameters()]
        assert all(g is not None and torch.isfinite(g).all() for g in grads)
        assert layer.conditioner.output_layer.weight.grad.abs().sum() > 0
    samples = flow.sample(10)
    assert samples.shape == (10, len(domains)) and not samples.requires_grad


def test_masks_partition_features_and_are_seeded() -> None:
    domains = [real()] * 5 + [interval(0, 1)] * 4 + [circular()] * 7
    flow = CouplingFlow(domains, n_layers=8, hidden=8, mask="random", seed=3)
    sets = [set(layer.transformed.tolist()) for layer in flow.layers]
    for first, second in zip(sets[0::2], sets[1::2]):
        assert first.isdisjoint(second) and first | second == set(range(16))
        # each domain kind split 50/50 (odd counts differ by one)
        for members in (range(0, 5), range(5, 9), range(9, 16)):
            assert abs(len(first & set(members)) - len(second & set(members))) <= 1
    assert len({frozenset(s) for s in sets[0::2]}) > 1  # blocks draw different splits
    again = CouplingFlow(domains, n_layers=8, hidden=8, mask="random", seed=3)
    assert [set(layer.transformed.tolist()) for layer in again.layers] == sets
    assert torch.equal(again.shifts, flow.shifts)
    alternating = CouplingFlow(5, n_layers=2, hidden=8)
    assert [layer.transformed.tolist() for layer in alternating.layers] == [[1, 3], [0, 2, 4]]


def test_flow_configuration_errors() -> None:
    with pytest.raises(BoltzgenError):
        CouplingFlow(1)
    with pytest.raises(BoltzgenError):
        CouplingFlow(4, mask="checkerboard")
    with pytest.raises(BoltzgenError):
        CouplingFlow([interval(0, 1), interval(0, 1)], prior=make_prior([real(), real()]))
    with pytest.raises(BoltzgenError):
        CouplingFlow([interval(0, 1), real()], prior="uniform")
    with pytest.raises(BoltzgenError):
        CouplingFlow(4, activation="tanh")


def test_constants_keep_full_precision_through_dtype_changes(device) -> None:
    """A flow built in float32 and moved to float64 carries exact bounds and periods (2 pi,
    not its float32 rounding), and f(low) == f(high) on the circle to float64 precision."""
    flow = CouplingFlow([circular(), interval(0.1, 0.3)], n_layers=2, hidden=8)
    flow = flow.to(device=device, dtype=torch.float64)
    assert flow.period[0].item() == 2 * math.pi and flow.clamp_low[1].item() == 0.1
    assert flow.prior.high[0].item() == 2 * math.pi and flow.prior.loc.dtype == torch.float64
    x = torch.tensor([[0.0, 0.2], [2 * math.pi, 0.2]], dtype=torch.float64, device=device)
    y = flow.transform(x)[0]
    assert torch.equal(y[0], y[1])
    assert flow.to(torch.float32).period.dtype == torch.float32

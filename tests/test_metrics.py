"""Metrics of boltzgen.diagnostics.metrics against hand-computed values and exact identities."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from boltzgen.diagnostics.metrics import (
    nll,
    ramachandran_histogram,
    ramachandran_kl,
    ramachandran_metrics,
    ramachandran_tv,
    split_half_floor,
)
from boltzgen.errors import BoltzgenError
from boltzgen.samplers.weights import (
    clip_log_weights,
    forward_ess,
    importance_resample,
    log_importance_weights,
    log_z_estimate,
    reverse_ess,
    self_normalized_weights,
)

TWO_PI = 2 * math.pi


def test_log_importance_weights_is_minus_energy_minus_log_q() -> None:
    lw = log_importance_weights(torch.tensor([1.0, 2.0]), torch.tensor([-0.5, 0.25]))
    assert lw.dtype == torch.float64
    torch.testing.assert_close(
        lw, torch.tensor([-0.5, -2.25], dtype=torch.float64), rtol=0, atol=1e-15
    )


def test_reverse_ess_matches_hand_computation() -> None:
    # w = e^0, e^1, e^2, e^3: (sum w)^2 / (4 sum w^2), no clipping at N = 4.
    w = np.exp([0.0, 1.0, 2.0, 3.0])
    expected = w.sum() ** 2 / (4 * (w**2).sum())
    assert float(reverse_ess(torch.log(torch.tensor(w)))) == pytest.approx(expected, rel=1e-12)
    # Equal weights give 1 whatever the (huge) offset: computed stably in log space (rounding of
    # logsumexp at 2e4 is ~1e-12 absolute).
    assert float(reverse_ess(torch.full((10,), 1e4, dtype=torch.float64))) == pytest.approx(
        1.0, rel=1e-10
    )


def test_reverse_ess_drops_nan_and_keeps_minus_inf_as_zero_weight() -> None:
    # NaN dropped (N = 3); -inf is a zero weight that counts in N: (1+1)^2 / (3 * 2) = 2/3.
    lw = torch.tensor([0.0, 0.0, -math.inf, math.nan], dtype=torch.float64)
    assert float(reverse_ess(lw)) == pytest.approx(2 / 3, rel=1e-12)


def test_forward_ess_matches_hand_computation() -> None:
    w = np.array([0.5, 1.0, 4.0])
    expected = 9 / (w.sum() * (1 / w).sum())
    assert float(forward_ess(np.log(w))) == pytest.approx(expected, rel=1e-12)
    assert float(forward_ess(torch.tensor([0.0, -math.inf]))) == 0.0


def test_clipping_keeps_exactly_floor_fraction_n_at_kth_largest() -> None:
    lw = torch.randperm(1000, generator=torch.Generator().manual_seed(0)).double()
    clipped = clip_log_weights(lw, fraction=0.005)  # k = floor(5.0) = 5; k-th largest = 995
    assert int((clipped == 995.0).sum()) == 5
    assert float(clipped.max()) == 995.0
    untouched = lw < 995
    assert torch.equal(clipped[untouched], lw[untouched])
    # k = floor(1.5) = 1: no clipping.
    assert torch.equal(clip_log_weights(lw[:15], fraction=0.1), lw[:15])


def test_clipping_drops_nan_before_counting() -> None:
    # 20 finite + 80 NaN, fraction 0.1: k = floor(0.1 * 20) = 2, so the top two become the 2nd
    # largest.
    lw = torch.cat([torch.arange(20.0), torch.full((80,), math.nan)]).double()
    clipped = clip_log_weights(lw, fraction=0.1)
    assert torch.equal(
        clipped[:20], torch.cat([torch.arange(19.0), torch.tensor([18.0])]).double()
    )
    assert bool(torch.isneginf(clipped[20:]).all())


def test_reverse_ess_with_clipping_matches_hand_computation() -> None:
    lw = torch.tensor([0.0] * 97 + [5.0, 6.0, 7.0], dtype=torch.float64)
    # fraction 0.03: k = 3, all three largest become 5.
    w = np.array([1.0] * 97 + [math.e**5] * 3)
    assert float(reverse_ess(lw, clip_fraction=0.03)) == pytest.approx(
        w.sum() ** 2 / (100 * (w**2).sum()), rel=1e-12
    )


def test_self_normalized_weights_sum_to_one() -> None:
    weights = self_normalized_weights(
        torch.tensor([0.0, math.log(3.0), math.nan], dtype=torch.float64)
    )
    np.testing.assert_allclose(weights, [0.25, 0.75, 0.0], rtol=1e-12)


def test_nll_reports_frames_outside_support_separately() -> None:
    result = nll(np.array([-1.0, -3.0, -math.inf, math.nan]))
    assert result["nll"] == pytest.approx(2.0)
    assert result["nll_standard_error"] == pytest.approx(math.sqrt(2.0) / math.sqrt(2.0))
    assert (result["n_frames"], result["n_outside_support"], result["n_invalid"]) == (4, 1, 1)
    assert result["fraction_outside_support"] == 0.25


def test_importance_resample_frequencies_follow_weights() -> None:
    # p = (0.1, 0.0, 0.6, 0.3); 200,000 draws: standard error of each frequency <= 0.0012.
    lw = torch.log(torch.tensor([0.1, 0.0, 0.6, 0.3], dtype=torch.float64))
    n = 200_000
    idx = importance_resample(lw, n, torch.Generator().manual_seed(1))
    freq = torch.bincount(idx, minlength=4).double() / n
    p = torch.tensor([0.1, 0.0, 0.6, 0.3], dtype=torch.float64)
    tolerance = 4 * torch.sqrt(p * (1 - p) / n) + 1e-12
    assert bool((torch.abs(freq - p) <= tolerance).all()), (freq, p)


def test_ramachandran_histogram_is_periodic_and_normalized() -> None:
    rng = np.random.default_rng(0)
    phi, psi = rng.uniform(-math.pi, math.pi, (2, 5000))
    h = ramachandran_histogram(phi, psi)
    assert h.shape == (100, 100)
    assert h.sum() * (TWO_PI / 100) ** 2 == pytest.approx(1.0, rel=1e-12)
    # Angles shifted by multiples of 2 pi land in the same bins (shift by one bin width / 3 avoids
    # edges).
    shifted = ramachandran_histogram(phi + 3 * TWO_PI, psi - 5 * TWO_PI)
    np.testing.assert_array_equal(
        h, ramachandran_histogram(np.mod(phi, TWO_PI), np.mod(psi, TWO_PI))
    )
    assert (
        np.abs(shifted - h).sum() * (TWO_PI / 100) ** 2 < 2 * 1e-3
    )  # at most a couple of edge samples move
    # -pi/2 is bin 75 of [0, 2 pi).
    single = ramachandran_histogram([-math.pi / 2 + 1e-3], [0.01])
    assert np.argwhere(single > 0).tolist() == [[75, 0]]


def test_ramachandran_kl_tv_identical_is_zero_and_known_values() -> None:
    rng = np.random.default_rng(1)
    h = ramachandran_histogram(*rng.uniform(0, TWO_PI, (2, 1000)))
    assert ramachandran_kl(h, h) == pytest.approx(0.0, abs=1e-12)
    assert ramachandran_tv(h, h) == 0.0
    # p: all mass in bin (0, 0); q: half in (0, 0), half in (1, 1). Bin area a = (2 pi/100)^2.
    area = (TWO_PI / 100) ** 2
    p = np.zeros((100, 100))
    p[0, 0] = 1 / area
    q = np.zeros((100, 100))
    q[0, 0] = q[1, 1] = 0.5 / area
    assert ramachandran_tv(p, q) == pytest.approx(0.5, rel=1e-12)
    assert ramachandran_kl(p, q) == pytest.approx(
        math.log((1 / area + 1e-10) / (0.5 / area + 1e-10)), rel=1e-12
    )
    assert ramachandran_kl(p, q) == pytest.approx(math.log(2), rel=1e-8)


def test_ramachandran_metrics_per_pair_and_split_half() -> None:
    rng = np.random.default_rng(2)
    n = 20_000
    reference = (rng.vonmises(-1.4, 4.0, (n, 2)), rng.vonmises(1.2, 4.0, (n, 2)))
    flow = (rng.vonmises(-1.4, 4.0, (n, 2)), rng.vonmises(1.2, 4.0, (n, 2)))
    # A flow equal to the reference gives exactly zero; reweighting by equal weights changes
    # nothing.
    same = ramachandran_metrics(reference, reference, np.zeros(n))
    np.testing.assert_allclose(same["tv"] + same["tv_reweighted"] + same["kl"], 0.0, atol=1e-12)
    result = ramachandran_metrics(reference, flow)
    assert len(result["tv"]) == 2 and "tv_reweighted" not in result
    floor = split_half_floor(reference)
    assert result["split_half"] == floor
    # Same distribution: flow-vs-MD TV (n per side) is at or below the split-half floor (n/2 per
    # side) within noise.
    assert max(result["tv"]) < 1.5 * min(floor["tv"])
    assert (result["n_reference"], result["n_flow"], result["bins"]) == (n, n, 100)
    with pytest.raises(BoltzgenError):
        ramachandran_metrics(reference, (flow[0][:, :1], flow[1][:, :1]))


def test_log_z_estimate_against_a_gaussian_integral_and_robust_to_clashes() -> None:
    """q = N(0, 1), p~ = exp(-x^2 / (2 * 1.2^2)): Z = sqrt(2 pi) 1.2. From 10^5 samples the
    estimate
    is within 4 s.e. of log Z and its s.e. matches the spread over 20 repetitions (factor 1.5);
    one sample with u = 1e30 (a clash) moves it by < 1e-4 while the plain mean of log q + u is
    ruined; NaN weights are left out."""
    torch.manual_seed(0)
    sigma, exact = 1.2, math.log(math.sqrt(2 * math.pi) * 1.2)
    estimates, errors = [], []
    for _ in range(20):
        x = torch.randn(100_000, dtype=torch.float64)
        log_q = -0.5 * x**2 - 0.5 * math.log(2 * math.pi)
        log_w = -0.5 * (x / sigma) ** 2 - log_q
        result = log_z_estimate(log_w)
        estimates.append(float(result["log_z_estimate"]))
        errors.append(float(result["log_z_standard_error"]))
    assert abs(estimates[0] - exact) < 4 * errors[0]
    assert np.std(estimates, ddof=1) == pytest.approx(np.mean(errors), rel=0.5)
    clashed = log_w.clone()
    clashed[0] = -1e30
    assert float(log_z_estimate(clashed)["log_z_estimate"]) == pytest.approx(
        estimates[-1], abs=1e-4
    )
    assert float(-clashed.mean()) > 1e24
    clashed[1] = math.nan
    assert math.isfinite(float(log_z_estimate(clashed)["log_z_standard_error"]))

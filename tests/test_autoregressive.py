"""The autoregressive models (MADE, PixelCNN): normalization by enumeration, exact sampling
(chi-square), the autoregressive property, the cached samplers against the naive one, Z2."""

from __future__ import annotations

import math

import pytest
import torch
from scipy.stats import chi2

from boltzgen.energy.exact import enumerate_states, states_from_indices
from boltzgen.models import MADE, PixelCNN
from boltzgen.models.autoregressive import sample_site_mixture
from boltzgen.models.base import Model


def _perturbed(model: torch.nn.Module, seed: int, scale: float = 0.5) -> torch.nn.Module:
    """The model in float64 with N(0, scale^2) added to every parameter (a far from uniform q)."""
    model = model.double()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(scale * torch.randn(parameter.shape, generator=generator).double())
    return model


MODELS = {
    "made": lambda: MADE(12, depth=2, width=24),
    "made-linear": lambda: MADE(10, depth=0),
    "made-residual-z2": lambda: MADE(12, depth=3, width=16, residual=True, z2=True),
    "made-binary-z2": lambda: MADE(9, depth=1, width=8, z2=True, visible="binary"),
    "pixelcnn-4x4": lambda: PixelCNN(4, depth=3, width=4, half_kernel_size=2),
    "pixelcnn-4x4-z2": lambda: PixelCNN(4, depth=2, width=3, half_kernel_size=3, z2=True),
    "pixelcnn-3x3-open": lambda: PixelCNN(
        3, depth=3, width=4, half_kernel_size=1, residual=False, periodic=False
    ),
    "pixelcnn-binary": lambda: PixelCNN(3, depth=2, width=4, visible="binary"),
}


@pytest.mark.parametrize("name", list(MODELS))
def test_log_prob_sums_to_one(name: str) -> None:
    """sum over all 2^N states of exp(log q) = 1 within 1e-6 (float64), N = 9..16; the model is
    far from uniform (max q / min q > 50), so normalization is not trivially true."""
    model = _perturbed(MODELS[name](), seed=1)
    assert isinstance(model, Model) and model.normalized and model.discrete
    with torch.no_grad():
        log_q = torch.cat([model.log_prob(s) for s in enumerate_states(model.n_sites, model.spin)])
    assert abs(float(torch.logsumexp(log_q, 0).exp()) - 1.0) < 1e-6
    assert float(log_q.max() - log_q.min()) > math.log(50.0)
    assert torch.allclose(model.exact().log_prob, log_q, atol=1e-12)


@pytest.mark.parametrize("name", ["made", "made-residual-z2", "pixelcnn-4x4", "pixelcnn-binary"])
def test_autoregressive_property(name: str) -> None:
    """Changing site j leaves the logits of sites <= j unchanged (exactly) and changes some of
    the later ones (power)."""
    model = _perturbed(MODELS[name](), seed=2)
    n = model.n_sites
    x = model.sample(64, torch.Generator().manual_seed(0))
    base = model.conditional_logits(x).detach()
    assert base.shape == (64, n)
    for j in range(n):
        flipped = x.clone()
        flipped[:, j] = (1 - flipped[:, j]) if not model.spin else -flipped[:, j]
        changed = model.conditional_logits(flipped).detach()
        assert torch.equal(changed[:, : j + 1], base[:, : j + 1]), j
        if j < n - 1:
            assert float((changed[:, j + 1 :] - base[:, j + 1 :]).abs().max()) > 1e-6, j


@pytest.mark.parametrize("name", list(MODELS))
def test_cached_sampler_equals_naive_sampler(name: str) -> None:
    """Given the same generator, the cached sampler returns exactly the naive one's states."""
    model = _perturbed(MODELS[name](), seed=3)
    cached = model.sample(300, torch.Generator().manual_seed(5))
    naive = model.sample_naive(300, torch.Generator().manual_seed(5))
    assert torch.equal(cached, naive)
    values = {-1.0, 1.0} if model.spin else {0.0, 1.0}
    assert set(cached.unique().tolist()) <= values and cached.shape == (300, model.n_sites)


@pytest.mark.parametrize(
    ("first", "second"),
    [
        pytest.param(lambda: MADE(10, depth=2, width=24), MODELS["made-linear"], id="made"),
        pytest.param(MODELS["pixelcnn-4x4"], MODELS["pixelcnn-4x4-z2"], id="pixelcnn"),
        pytest.param(MODELS["pixelcnn-binary"], MODELS["pixelcnn-3x3-open"], id="binary-open"),
    ],
)
def test_site_mixture_sampler_equals_the_naive_mixture(first, second) -> None:
    """The cached lockstep sampler of alpha p_i + (1 - alpha) q_i (MiniLLM's teacher-mixed
    sampling) returns exactly the states of a naive reference (full passes of both networks per
    site, the same uniforms), for MADE/MADE of different depths and PixelCNNs with and without
    periodic padding; the second model's value convention (binary vs spin) is kept."""
    p, q = _perturbed(first(), seed=6), _perturbed(second(), seed=7)
    alpha, n = 0.3, 400
    torch.manual_seed(11)
    cached = sample_site_mixture(p, q, alpha, n)
    torch.manual_seed(11)
    uniforms = torch.rand(n, q.n_sites, dtype=torch.float64)
    s = torch.zeros(n, q.n_sites, dtype=torch.float64)
    with torch.no_grad():
        for i in range(q.n_sites):
            p_i = p.site_probabilities(p._logits(p._site_features(s))[:, i])
            q_i = q.site_probabilities(q._logits(q._site_features(s))[:, i])
            s[:, i] = q.draw_site(alpha * p_i + (1 - alpha) * q_i, uniforms[:, i])
    assert torch.equal(cached, q._values(s))
    assert 0.2 < float((s > 0).double().mean()) < 0.8  # both values occur


@pytest.mark.parametrize(
    "model",
    [
        pytest.param(lambda: MADE(8, depth=2, width=16), id="made"),
        pytest.param(lambda: MADE(8, depth=2, width=16, z2=True), id="made-z2"),
        pytest.param(
            lambda: PixelCNN(3, depth=2, width=4, half_kernel_size=2, z2=True), id="pixelcnn-z2"
        ),
    ],
)
def test_samples_match_log_prob_chi_square(model) -> None:
    """2e5 samples (MADE, N = 8) or 6e4 (PixelCNN, N = 9) against exp(log q) of every state:
    Pearson chi-square over the states with expected count >= 5 (the rest pooled in one cell);
    the test fails if the statistic exceeds the 1 - 1e-4 quantile of chi-square(cells - 1)."""
    model = _perturbed(model(), seed=4, scale=0.7)
    n = model.n_sites
    n_samples = 200_000 if isinstance(model, MADE) else 60_000
    probs = model.exact().probs
    x = model.sample(n_samples, torch.Generator().manual_seed(11))
    bits = ((x + 1) / 2).long()
    indices = (bits * (1 << torch.arange(n - 1, -1, -1))).sum(1)
    assert torch.equal(states_from_indices(indices[:5], n), x[:5])
    counts = torch.bincount(indices, minlength=1 << n).double()
    expected = n_samples * probs
    large = expected >= 5
    observed_cells = torch.cat([counts[large], counts[~large].sum().reshape(1)])
    expected_cells = torch.cat([expected[large], expected[~large].sum().reshape(1)])
    keep = expected_cells > 0
    statistic = float(((observed_cells - expected_cells)[keep] ** 2 / expected_cells[keep]).sum())
    dof = int(keep.sum()) - 1
    assert dof > 50  # enough cells: q is spread over many states
    assert statistic < chi2.ppf(1 - 1e-4, dof), (statistic, dof)
    # power: the same samples against a q whose first conditional is shifted are rejected
    wrong = probs.view(2, -1) * torch.tensor([[0.9], [1.1]], dtype=torch.float64)
    wrong_cells = n_samples * wrong.reshape(-1) / wrong.sum()
    wrong_statistic = float(((counts - wrong_cells) ** 2 / wrong_cells)[wrong_cells >= 5].sum())
    assert wrong_statistic > chi2.ppf(1 - 1e-4, dof)


def test_z2_symmetry() -> None:
    """With z2, log q(s) = log q(-s), equal to logsumexp of the unsymmetrised log q at s and -s
    minus log 2; the mean spin of its samples is 0 (4 s.e.)."""
    model = _perturbed(MADE(10, depth=2, width=16, z2=True), seed=6)
    plain = MADE(10, depth=2, width=16).double()
    plain.load_state_dict(model.state_dict())
    x = model.sample(20_000, torch.Generator().manual_seed(1))
    assert torch.allclose(model.log_prob(x), model.log_prob(-x), atol=1e-12)
    reference = torch.logsumexp(torch.stack([plain.log_prob(x), plain.log_prob(-x)]), 0)
    assert torch.allclose(model.log_prob(x), reference - math.log(2), atol=1e-12)
    # the symmetric model's samples have mean spin 0 within 4 s.e.
    magnetisation = x.mean(1)
    assert abs(float(magnetisation.mean())) < 4 * float(magnetisation.std()) / math.sqrt(20_000)


def test_sample_and_log_prob_is_differentiable() -> None:
    """Samples are detached, log q carries gradients to every parameter."""
    model = PixelCNN(4, depth=2, width=4)
    x, log_q = model.sample_and_log_prob(32)
    assert not x.requires_grad and log_q.shape == (32,)
    log_q.sum().backward()
    assert all(p.grad is not None for p in model.parameters())

"""K-state units: the q-state Potts target against brute-force NumPy sums and the Ising mapping,
base-K enumeration, categorical MADE / PixelCNN (normalization, exact samples, the autoregressive
property), the reverse-KL score estimator against autograd of the exact objective, the objectives
from the van-potts template end to end, and the refusals of two-state settings (the data
objectives on a Potts target from configs are in ``test_van_configs.py``)."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from boltzgen.diagnostics.discrete import exact_reverse_kl
from boltzgen.energy.exact import ExactDistribution, enumerate_states, states_from_indices
from boltzgen.energy.lattice import IsingModel2D, PottsModel2D
from boltzgen.errors import BoltzgenError
from boltzgen.models import MADE, PixelCNN
from boltzgen.trainers.discrete_kl import reverse_kl_surrogate
from boltzgen.workflow.config import apply_overrides, parse_config_text
from boltzgen.workflow.runs import train_run
from boltzgen.workflow.templates import template_text


def _numpy_potts_energy(states: np.ndarray, L: int, J: float) -> np.ndarray:
    grid = states.reshape(-1, L, L)
    right = grid == np.roll(grid, -1, axis=2)
    down = grid == np.roll(grid, -1, axis=1)
    return -J * (right.sum((1, 2)) + down.sum((1, 2)))


def _numpy_log_z(L: int, q: int, beta: float, J: float = 1.0) -> float:
    states = np.array(list(itertools.product(range(q), repeat=L * L)), dtype=np.float64)
    log_w = -beta * _numpy_potts_energy(states, L, J)
    top = log_w.max()
    return float(top + np.log(np.exp(log_w - top).sum()))


def test_potts_energy_against_numpy() -> None:
    """E = -J (bonds with equal ends) over the 2 L^2 torus bonds, on random states of L = 3, 5."""
    rng = np.random.default_rng(0)
    for L, q, J in ((3, 3, 1.0), (5, 4, -0.7)):
        states = rng.integers(0, q, size=(200, L * L)).astype(np.float64)
        target = PottsModel2D(L, q, 0.8, J=J).double()
        expected = 0.8 * _numpy_potts_energy(states, L, J)
        got = target.energy(torch.from_numpy(states)).numpy()
        np.testing.assert_allclose(got, expected, atol=1e-12)
        # the all-equal state has every bond satisfied
        assert float(target.coupling_energy(torch.zeros(1, L * L, dtype=torch.float64))) == (
            pytest.approx(-J * 2 * L * L)
        )


def test_potts_log_z_by_enumeration_and_ising_mapping() -> None:
    """q = 3, L = 3: log Z by enumeration of 3^9 states equals a NumPy sum (1e-10); q = 2: the
    Kaufman formula through delta = (1 + sigma sigma') / 2 equals enumeration at L = 4 and the
    Ising model's log Z at J / 2 plus beta J L^2 at L = 16 (1e-10)."""
    target = PottsModel2D(3, 3, 1.1)
    assert target.log_z_method == "enumeration"
    assert target.log_z == pytest.approx(_numpy_log_z(3, 3, 1.1), abs=1e-10)
    assert target.with_beta(0.4).log_z == pytest.approx(_numpy_log_z(3, 3, 0.4), abs=1e-10)
    two = PottsModel2D(4, 2, 0.9)
    assert two.log_z_method == "kaufman"
    assert two.log_z == pytest.approx(float(two.exact().log_z), abs=1e-10)
    big = PottsModel2D(16, 2, 0.7, J=1.5)
    ising = IsingModel2D(16, 0.7 * 1.5 / 2)
    assert big.log_z == pytest.approx(0.7 * 1.5 * 256 + ising.log_z, abs=1e-10)
    assert PottsModel2D(5, 3, 1.0).log_z is None  # 3^25 states, no closed form


def test_base_k_enumeration_order() -> None:
    """State i is i written in base K, the first unit most significant (itertools.product order);
    an ExactDistribution of K^n weights knows n and samples values 0 .. K-1."""
    expected = np.array(list(itertools.product(range(3), repeat=4)), dtype=np.float64)
    states = torch.cat(list(enumerate_states(4, levels=3, chunk=10)))
    np.testing.assert_array_equal(states.numpy(), expected)
    indices = torch.tensor([0, 5, 80])
    np.testing.assert_array_equal(
        states_from_indices(indices, 4, levels=3).numpy(), expected[[0, 5, 80]]
    )
    exact = ExactDistribution(torch.zeros(81, dtype=torch.float64), levels=3)
    assert exact.n_units == 4 and exact.levels == 3 and not exact.spin
    drawn = exact.sample(1000, torch.Generator().manual_seed(0))
    assert set(drawn.unique().tolist()) == {0.0, 1.0, 2.0}
    with pytest.raises(BoltzgenError, match="3\\*\\*n entries"):
        ExactDistribution(torch.zeros(80, dtype=torch.float64), levels=3)
    with pytest.raises(BoltzgenError, match="at most 2\\*\\*24 states, got 3\\*\\*16"):
        PottsModel2D(4, 3, 1.0).exact()


def _randomised(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = model.double()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0.0, 0.7)
    return model


MODELS = {
    "made": lambda: MADE(6, depth=2, width=10, visible="categorical", n_states=3),
    "made-residual": lambda: MADE(
        6, depth=3, width=10, residual=True, visible="categorical", n_states=3
    ),
    "made-linear": lambda: MADE(5, depth=0, visible="categorical", n_states=4),
    "pixelcnn": lambda: PixelCNN(
        3, depth=2, width=5, half_kernel_size=2, visible="categorical", n_states=3
    ),
    "pixelcnn-open": lambda: PixelCNN(
        3, depth=2, width=5, half_kernel_size=1, periodic=False, visible="categorical", n_states=3
    ),
}


@pytest.mark.parametrize("name", list(MODELS))
def test_categorical_models_are_exact_autoregressive_distributions(name: str) -> None:
    """float64, random weights: sum over all K^N states of q = 1 to 1e-10; the cached sampler
    returns the naive sampler's states for the same generator; logits of site i do not move when
    a later site changes; 40 000 samples of the N = 5..9 model pass a chi-square test against
    exact q over the states (pooled below 5 expected counts; p > 1e-3)."""
    model = _randomised(MODELS[name](), 1)
    exact = model.exact()
    assert float(exact.probs.sum()) == pytest.approx(1.0, abs=1e-10)
    first = model.sample(3000, torch.Generator().manual_seed(5))
    naive = model.sample_naive(3000, torch.Generator().manual_seed(5))
    assert torch.equal(first, naive)
    assert set(first.unique().tolist()) <= set(range(model.n_states))
    x = first[:50].clone()
    logits = model.conditional_logits(x)
    assert logits.shape == (50, model.n_sites, model.n_states)
    for j in range(model.n_sites):
        changed = x.clone()
        changed[:, j] = (changed[:, j] + 1) % model.n_states
        moved = (model.conditional_logits(changed) - logits).abs().amax((0, 2))
        assert float(moved[: j + 1].max().detach()) == 0.0, (j, moved)
    samples = model.sample(40_000, torch.Generator().manual_seed(9))
    powers = model.n_states ** torch.arange(model.n_sites - 1, -1, -1, dtype=torch.float64)
    index = (samples @ powers).long()
    counts = torch.bincount(index, minlength=exact.probs.numel()).double()
    expected = exact.probs * samples.shape[0]
    small = expected < 5
    observed = torch.cat([counts[~small], counts[small].sum()[None]])
    wanted = torch.cat([expected[~small], expected[small].sum()[None]])
    chi2 = float(((observed - wanted) ** 2 / wanted).sum())
    dof = observed.numel() - 1
    # Wilson-Hilferty normal approximation of the chi-square tail: z < 3.1 is p > 1e-3
    z = ((chi2 / dof) ** (1 / 3) - (1 - 2 / (9 * dof))) / math.sqrt(2 / (9 * dof))
    assert z < 3.1, (chi2, dof)


def test_reverse_kl_score_estimator_on_potts_matches_enumeration() -> None:
    """Potts L = 3, q = 3 at beta = 1 with a random categorical MADE: the leave-one-out
    score-function gradient over 40 batches of 2000 model samples matches autograd of the exact
    KL(q||p) (enumeration of 3^9 states) within 4 s.e. in every component; the exact gradient
    exceeds 10 s.e. (the test has power)."""
    target = PottsModel2D(3, 3, 1.0).double()
    model = _randomised(MADE(9, depth=1, width=8, visible="categorical", n_states=3), 2)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.mul_(0.5)
    log_q = torch.cat([model.log_prob(s) for s in enumerate_states(9, levels=3, spin=False)])
    exact = exact_reverse_kl(target.exact().log_prob, log_q)
    parameters = list(model.parameters())
    exact_grad = torch.cat([g.reshape(-1) for g in torch.autograd.grad(exact, parameters)])
    torch.manual_seed(3)
    estimates = []
    for _ in range(40):
        loss = reverse_kl_surrogate(model, target, model.sample(2000))[0]
        estimates.append(torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, parameters)]))
    stacked = torch.stack(estimates)
    mean, error = stacked.mean(0), stacked.std(0) / math.sqrt(len(estimates))
    assert bool(((mean - exact_grad).abs() <= 4 * error + 1e-12).all())
    assert float(exact_grad.abs().max()) > 10 * float(error.max())


def test_van_potts_template_trains_to_the_exact_free_energy(tmp_path: Path) -> None:
    """The van-potts template (3 x 3, q = 3, beta_c), 150 steps: the summary's exact F is
    -log Z / (beta N) with the NumPy log Z (1e-5: float32), F_q lies above F - 4 s.e. and within
    1 % of it, and the ESS exceeds 0.5."""
    config = parse_config_text(template_text("van-potts"))
    config = apply_overrides(
        config,
        ["trainer.steps=150", "sample.n=2000", "device='cpu'", "trainer.progress=false"],
    )
    summary = train_run(config, tmp_path / "run", progress=False)
    beta = 1.0050525
    log_z = _numpy_log_z(3, 3, beta)
    assert summary["log_z"] == pytest.approx(log_z, abs=1e-5)
    exact_f = -log_z / (beta * 9)
    assert summary["exact_free_energy_per_site"] == pytest.approx(exact_f, abs=1e-6)
    f_q, error = summary["free_energy_per_site"], summary["free_energy_standard_error"]
    assert f_q > exact_f - 4 * error
    assert summary["free_energy_relative_error"] < 1e-2
    assert summary["ess"] > 0.5


def test_k_state_models_refuse_two_state_settings() -> None:
    """One-line errors: z2 and n_states on the wrong units, a Potts model with one state."""
    with pytest.raises(BoltzgenError, match="no such symmetry"):
        MADE(4, z2=True, visible="categorical", n_states=3)
    with pytest.raises(BoltzgenError, match='use visible = "categorical"'):
        MADE(4, n_states=3)
    with pytest.raises(BoltzgenError, match="q >= 2"):
        PottsModel2D(3, 1, 1.0)

"""Discrete targets: exact log Z (Kaufman, Curie-Weiss sum, enumeration), energies, MCMC, `boltzgen
exact`."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from boltzgen.cli.main import main
from boltzgen.energy.exact import curie_weiss_log_z, ising_log_z_kaufman
from boltzgen.energy.lattice import (
    ISING_CRITICAL_BETA,
    CurieWeiss,
    EdwardsAnderson2D,
    IsingModel2D,
    SherringtonKirkpatrick,
)
from boltzgen.errors import BoltzgenError
from boltzgen.samplers.mcmc import random_spins, sample_parallel_tempering, swendsen_wang_step


@pytest.mark.parametrize("L", [3, 4])
@pytest.mark.parametrize("beta", [0.1, 0.3, ISING_CRITICAL_BETA, 0.6, 1.0, 2.0])
def test_kaufman_matches_enumeration(L: int, beta: float) -> None:
    # Enumeration in float64 of all 2**(L*L) states is the independent reference (1e-12 abs).
    assert abs(ising_log_z_kaufman(L, beta) - IsingModel2D(L, beta).exact().log_z.item()) < 1e-12


def test_ising_reference_values() -> None:
    # Kaufman (1949), published values given to 12 (log Z) and 10 (F/N) decimals.
    assert abs(IsingModel2D(4, 0.4406868).log_z - 15.521915621335) < 1e-11
    assert abs(IsingModel2D(4, 1.0).log_z - 32.698721401879) < 1e-11
    for beta, reference in [
        (0.1, -7.0323124229),
        (0.4406868, -2.1153261782),
        (1.0, -2.0030558899),
    ]:
        assert abs(-ising_log_z_kaufman(16, beta) / (beta * 256) - reference) < 1e-9


def test_curie_weiss_log_z() -> None:
    assert abs(CurieWeiss(20, 1.5).log_z - 17.1900607409) < 1e-9
    for n, beta, h in [(12, 1.5, 0.0), (9, 0.7, 0.3)]:
        assert (
            abs(curie_weiss_log_z(n, beta, h) - CurieWeiss(n, beta, h).exact().log_z.item())
            < 1e-12
        )


def _random_spins(n: int, batch: int = 64) -> torch.Tensor:
    return torch.where(
        torch.rand(batch, n, generator=torch.Generator().manual_seed(1)) < 0.5, -1.0, 1.0
    ).double()


def test_energies_match_direct_formulas() -> None:
    # Independent references: lattice rolls for the torus models, dense quadratic forms for SK /
    # CW.
    L = 5
    s = _random_spins(L * L)
    grid = s.reshape(-1, L, L)
    right, down = grid * grid.roll(-1, 2), grid * grid.roll(-1, 1)
    ising = IsingModel2D(L, 0.7, J=1.3, h=0.2)
    expected = 0.7 * (-1.3 * (right + down).sum((1, 2)) - 0.2 * s.sum(1))
    torch.testing.assert_close(ising.energy(s), expected, rtol=0, atol=1e-12)

    ea = EdwardsAnderson2D(L, 0.9, seed=3)
    rng = np.random.default_rng(3)
    j_right, j_down = (torch.from_numpy(rng.choice([-1.0, 1.0], size=(L, L))) for _ in range(2))
    expected = -0.9 * (j_right * right + j_down * down).sum((1, 2))
    torch.testing.assert_close(ea.energy(s), expected, rtol=0, atol=1e-12)

    n = 11
    s = _random_spins(n)
    sk = SherringtonKirkpatrick(n, 1.2, seed=5)
    rng = np.random.default_rng(5)
    upper = np.triu(rng.standard_normal((n, n)) / math.sqrt(n), k=1)
    J = torch.from_numpy(upper + upper.T)
    torch.testing.assert_close(
        sk.energy(s), -1.2 * 0.5 * torch.einsum("bi,ij,bj->b", s, J, s), rtol=0, atol=1e-12
    )
    torch.testing.assert_close(
        CurieWeiss(n, 1.5).energy(s), -1.5 * s.sum(1) ** 2 / (2 * n), rtol=0, atol=1e-12
    )
    torch.testing.assert_close(
        CurieWeiss(n, 1.5).energy(s.float()).double(),
        -1.5 * s.sum(1) ** 2 / (2 * n),
        rtol=1e-6,
        atol=1e-5,
    )


def test_ising_with_field_enumerates_or_refuses() -> None:
    model = IsingModel2D(3, 0.5, h=0.3)
    reference = torch.logsumexp(
        torch.tensor([-model.energy(s).item() for s in _all_states(9)], dtype=torch.float64), 0
    )
    assert model.log_z_method == "enumeration" and abs(model.log_z - float(reference)) < 1e-12
    large = IsingModel2D(6, 0.5, h=0.3)
    assert large.log_z is None and large.log_z_method is None
    with pytest.raises(BoltzgenError, match="enumerat"):
        large.exact()


def _all_states(n: int):
    for i in range(2**n):
        yield torch.tensor(
            [[1.0 if (i >> (n - 1 - k)) & 1 else -1.0 for k in range(n)]], dtype=torch.float64
        )


def test_exact_samples_match_probabilities() -> None:
    # 2e5 exact samples of a 3x3 Ising model: the mean energy agrees with the exact mean within 4
    # s.e.
    model = IsingModel2D(3, 0.5)
    exact = model.exact()
    samples = exact.sample(200_000, torch.Generator().manual_seed(0))
    u = model.energy(samples)
    assert abs(float(u.mean() - exact.expectation(model.energy))) < 4 * float(u.std()) / math.sqrt(
        len(u)
    )


def test_swendsen_wang_matches_enumeration() -> None:
    # 4x4 Ising at beta_c: 4000 independent chains, 30 burn-in steps, then 5 records 3 steps apart.
    # Standard errors from the spread of the 4000 per-chain means (chains are independent).
    model = IsingModel2D(4, ISING_CRITICAL_BETA)
    exact = model.exact()
    generator = torch.Generator().manual_seed(0)
    s = random_spins(4000, 16, generator)
    for _ in range(30):
        s = swendsen_wang_step(model, s, generator)
    energies, abs_m = [], []
    for _ in range(5):
        for _ in range(3):
            s = swendsen_wang_step(model, s, generator)
        energies.append(model.coupling_energy(s))
        abs_m.append(s.mean(1).abs())
    for records, observable in [
        (energies, model.coupling_energy),
        (abs_m, lambda x: x.mean(1).abs()),
    ]:
        chain_means = torch.stack(records).mean(0)
        error = float(chain_means.std()) / math.sqrt(len(chain_means))
        assert abs(float(chain_means.mean() - exact.expectation(observable))) < 4 * error


def test_parallel_tempering_on_sk_matches_enumeration() -> None:
    # SK N=10 at beta=2 (glassy); 500 chains x 8 replicas, 100 burn-in rounds, 10 records.
    model = SherringtonKirkpatrick(10, 2.0, seed=1)
    samples = sample_parallel_tempering(
        model,
        5000,
        n_chains=500,
        n_burn_in=100,
        thin=2,
        n_replicas=8,
        generator=torch.Generator().manual_seed(0),
    )
    e = model.coupling_energy(samples).reshape(10, 500).mean(0)  # per-chain means
    error = float(e.std()) / math.sqrt(500)
    assert abs(float(e.mean() - model.exact().expectation(model.coupling_energy))) < 4 * error


def test_exact_cli_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["exact", "ising", "--L", "16", "--beta", "0.4406868", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert (
        result["method"] == "kaufman" and abs(result["free_energy_per_spin"] + 2.1153261782) < 1e-9
    )
    assert main(["exact", "curie-weiss", "--n", "20", "--beta", "1.5", "--json"]) == 0
    assert abs(json.loads(capsys.readouterr().out)["log_z"] - 17.1900607409) < 1e-9
    assert main(["exact", "sk", "--n", "8", "--seed", "2", "--beta", "1.0", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert (
        abs(result["log_z"] - SherringtonKirkpatrick(8, 1.0, seed=2).exact().log_z.item()) < 1e-12
    )
    assert set(result) >= {"log_z", "free_energy_per_spin", "method"}
    assert main(["exact", "ea", "--L", "3", "--seed", "1", "--beta", "0.5", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["method"] == "enumeration"


def test_exact_cli_refuses_large_enumeration(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["exact", "sk", "--n", "40", "--beta", "1.0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "N <= 24" in err and "N=40" in err


@pytest.mark.parametrize("model", ["ising", "sk", "edwards-anderson"])
def test_energies_and_exact_distribution_on_the_device_in_each_dtype(
    model: str, device: torch.device, dtype: torch.dtype
) -> None:
    """Moved to ``--device`` and ``dtype``, a spin model gives the float64 CPU energies (1e-5
    relative in float32, 1e-12 in float64) and its enumeration normalizes on that device."""
    build = {
        "ising": lambda: IsingModel2D(3, 0.7, J=1.3, h=0.2),
        "sk": lambda: SherringtonKirkpatrick(9, 1.5, seed=4),
        "edwards-anderson": lambda: EdwardsAnderson2D(3, 1.0, seed=2),
    }[model]
    reference, moved = build(), build().to(device, dtype)
    s = _random_spins(9)
    expected = reference.energy(s)
    u = moved.energy(s.to(device, dtype))
    assert u.device.type == device.type and u.dtype == dtype
    rtol = 1e-5 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(u.cpu().double(), expected, rtol=rtol, atol=rtol)
    exact = moved.exact()
    assert exact.log_prob.device.type == device.type
    assert abs(float(exact.log_prob.double().exp().sum()) - 1.0) < 1e-10
    assert abs(float(exact.log_z) - reference.log_z) < 1e-4 * abs(reference.log_z)

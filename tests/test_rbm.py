"""RBM: free energy, exact and AIS log Z, block-Gibbs sampling, the RBM target adapter."""

from __future__ import annotations

import itertools

import pytest
import torch

from boltzgen.energy.exact import states_from_indices
from boltzgen.models import RBM, RBMEnergy


def _rbm(n_visible: int, n_hidden: int, visible: str, seed: int = 0, scale: float = 1.0) -> RBM:
    rbm = RBM(n_visible, n_hidden, visible, init_std=scale, seed=seed, dtype=torch.float64)
    generator = torch.Generator().manual_seed(seed + 100)
    with torch.no_grad():
        rbm.visible_bias.copy_(
            0.5 * torch.randn(n_visible, generator=generator, dtype=torch.float64)
        )
        rbm.hidden_bias.copy_(
            0.5 * torch.randn(n_hidden, generator=generator, dtype=torch.float64)
        )
    return rbm


def _joint_log_weights(rbm: RBM) -> torch.Tensor:
    """Brute force: log sum_h exp(-E(v, h)) for every visible state, E = -a.v - b.h - v W h."""
    vis = states_from_indices(torch.arange(2**rbm.n_visible), rbm.n_visible, rbm.spin)
    rows = []
    for h in itertools.product([0.0, 1.0], repeat=rbm.n_hidden):
        h = torch.tensor(h, dtype=torch.float64)
        rows.append(vis @ rbm.visible_bias + h @ rbm.hidden_bias + vis @ rbm.weight @ h)
    return torch.logsumexp(torch.stack(rows), 0).detach()


@pytest.mark.parametrize("visible", ["spin", "binary"])
@pytest.mark.parametrize("shape", [(5, 3), (3, 6)])
def test_free_energy_and_exact_log_z(visible: str, shape: tuple[int, int]) -> None:
    # Reference: explicit sums over the joint states (v, h); 1e-12 in float64. Both enumeration
    # branches of log_z_exact are used (hidden layer smaller, visible layer smaller).
    rbm = _rbm(*shape, visible)
    joint = _joint_log_weights(rbm)
    vis = states_from_indices(torch.arange(2**rbm.n_visible), rbm.n_visible, rbm.spin)
    torch.testing.assert_close(-rbm.free_energy(vis).detach(), joint, rtol=0, atol=1e-12)
    assert abs(float(rbm.log_z_exact().detach()) - float(torch.logsumexp(joint, 0))) < 1e-12
    assert abs(float(rbm.exact().log_z) - float(torch.logsumexp(joint, 0))) < 1e-12
    target = RBMEnergy(rbm)
    torch.testing.assert_close(
        target.energy(vis), rbm.free_energy(vis).detach(), rtol=0, atol=1e-12
    )


@pytest.mark.parametrize("visible", ["spin", "binary"])
def test_ais_log_z_within_error(visible: str) -> None:
    # AIS (2000 chains, 1000 rungs) vs exact log Z: within 4 reported standard errors + 0.002.
    rbm = _rbm(8, 6, visible, seed=3)
    estimate, error = rbm.log_z_ais(2000, 1000, torch.Generator().manual_seed(0))
    assert abs(float(estimate - rbm.log_z_exact().detach())) < 4 * float(error) + 2e-3


def _total_variation(counts: torch.Tensor, probs: torch.Tensor) -> float:
    return 0.5 * float((counts / counts.sum() - probs).abs().sum())


@pytest.mark.parametrize("visible", ["spin", "binary"])
def test_gibbs_chains_match_exact_marginal(visible: str) -> None:
    # 20000 parallel chains, 30 burn-in sweeps, then 50 records 2 sweeps apart (1e6 samples) of a
    # 7-visible RBM. The noise floor is the TV of an equally large exact multinomial sample.
    rbm = _rbm(7, 4, visible, seed=1)
    probs = rbm.exact().probs
    generator = torch.Generator().manual_seed(0)
    v = rbm.sample(20_000, 30, generator)
    weights = 2 ** torch.arange(6, -1, -1, dtype=torch.float64)
    counts = torch.zeros(2**7, dtype=torch.float64)
    for _ in range(50):
        v = rbm.gibbs_step(rbm.gibbs_step(v, generator), generator)
        index = ((v > 0).double() @ weights).long()
        counts += torch.bincount(index, minlength=2**7)
    floor_counts = torch.bincount(
        torch.multinomial(probs, int(counts.sum()), True, generator=generator), minlength=2**7
    )
    floor = _total_variation(floor_counts.double(), probs)
    assert _total_variation(counts, probs) < 4 * floor


def test_rbm_energy_is_a_frozen_copy() -> None:
    rbm = _rbm(4, 3, "spin")
    target = RBMEnergy(rbm)
    with torch.no_grad():
        rbm.weight.add_(1.0)
    assert not any(p.requires_grad for p in target.parameters())
    assert abs(target.log_z - float(_rbm(4, 3, "spin").log_z_exact().detach())) < 1e-12


@pytest.mark.parametrize("visible", ["spin", "binary"])
def test_free_energy_log_z_and_sampling_on_the_device_in_each_dtype(
    visible: str, device: torch.device, dtype: torch.dtype
) -> None:
    """An RBM on ``--device`` in ``dtype``: free energies and exact log Z_theta equal the float64
    CPU values (1e-5 relative in float32), and its samples are valid states on that device."""
    reference = _rbm(6, 4, visible)
    moved = _rbm(6, 4, visible).to(device, dtype)
    states = states_from_indices(torch.arange(64), 6, visible == "spin", torch.float64)
    rtol = 1e-5 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(
        moved.free_energy(states.to(device, dtype)).cpu().double(),
        reference.free_energy(states),
        rtol=rtol,
        atol=rtol,
    )
    log_z, expected = moved.log_z_exact().detach(), reference.log_z_exact().detach()
    assert abs(float(log_z) - float(expected)) < 10 * rtol
    v = moved.sample(100)
    assert v.device.type == device.type and v.dtype == dtype and v.shape == (100, 6)
    allowed = torch.tensor([-1.0, 1.0] if visible == "spin" else [0.0, 1.0], device=device)
    assert bool(torch.isin(v, allowed.to(dtype)).all())

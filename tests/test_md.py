"""Batched Langevin MD, SHAKE/RATTLE, replica exchange, checked against closed forms and OpenMM."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from scipy import integrate

from boltzgen.cli.main import main
from boltzgen.energy.base import Energy
from boltzgen.md import (
    MDState,
    ReplicaExchange,
    ReplicaExchangeMD,
    exchange_log_acceptance,
    integrated_autocorrelation_time,
)
from boltzgen.md.openmm_langevin import openmm_langevin_energies
from boltzgen.molecule.molecule import Molecule

torch.set_num_threads(1)


class DoubleWell(Energy):
    """U = a (x0^2 - 1)^2 + (x1^2 + x2^2)/2 for one particle in 3-D, k_B = 1, T0 = 1."""

    def __init__(self, barrier: float) -> None:
        super().__init__((1, 3), 1.0)
        self.barrier = barrier

    def _energy(self, x: torch.Tensor) -> torch.Tensor:
        x0, rest = x[:, 0, 0], x[:, 0, 1:]
        return self.barrier * (x0 * x0 - 1.0) ** 2 + 0.5 * (rest * rest).sum(-1)

    def exact_mean_energy(self, temperature: float) -> float:
        """<U> at T by quadrature in x0 plus T for the two harmonic directions."""
        well = lambda x: self.barrier * (x * x - 1.0) ** 2  # noqa: E731
        weight = lambda x: math.exp(-well(x) / temperature)  # noqa: E731
        z = integrate.quad(weight, -4, 4, points=[-1, 1])[0]
        return (
            integrate.quad(lambda x: well(x) * weight(x), -4, 4, points=[-1, 1])[0] / z
            + temperature
        )


def test_exchange_log_acceptance_is_the_metropolis_formula() -> None:
    u_i, u_j = torch.tensor([10.0, -3.0]), torch.tensor([12.0, -1.0])
    t0, t_i, t_j = 300.0, 320.0, 400.0
    # (beta_i - beta_j)(U_i - U_j) with U = u k_B T0 (k_B cancels)
    expected = (1 / t_i - 1 / t_j) * (u_i - u_j) * t0
    assert torch.allclose(exchange_log_acceptance(u_i, u_j, t_i, t_j, t0), expected, rtol=1e-12)


def test_exchange_swaps_with_the_metropolis_probability_and_rescales_velocities() -> None:
    temperatures, chains = [1.0, 2.0, 4.0], 40_000
    exchange = ReplicaExchange(temperatures, chains, energy_temperature=1.0)
    r = len(temperatures) * chains
    # hand-made energies: rung 0 holds u=3, rung 1 u=1 (p = exp((1 - 1/2)(3 - 1)) > 1: always),
    # rung 2 u=3 against rung 1 u=1 at the odd attempt (p = exp((1/2 - 1/4)(1 - 3)) < 1)
    u = torch.tensor([3.0, 1.0, 3.0], dtype=torch.float64).repeat_interleave(chains)
    identity = torch.arange(r, dtype=torch.float64)[:, None, None].expand(r, 1, 3).clone()
    state = MDState(identity, torch.ones(r, 1, 3, dtype=torch.float64), identity.clone(), u, 0)
    generator = torch.Generator().manual_seed(0)

    even = exchange.exchange(state, 0, generator)
    assert torch.equal(
        even.reduced_energies[:chains], u[chains : 2 * chains]
    )  # p = 1: all swapped
    assert torch.allclose(
        even.velocities[:chains],
        torch.full((chains, 1, 3), math.sqrt(1.0 / 2.0), dtype=torch.float64),
    )
    assert torch.equal(
        even.positions[2 * chains :], identity[2 * chains :]
    )  # rung 2 had no partner

    odd = exchange.exchange(state, 1, generator)
    p = math.exp((1.0 / 2.0 - 1.0 / 4.0) * (1.0 - 3.0))
    swapped = (odd.reduced_energies[chains : 2 * chains] == 3.0).double()
    se = math.sqrt(p * (1 - p) / chains)
    assert abs(swapped.mean().item() - p) < 4 * se
    moved = odd.positions[chains : 2 * chains, 0, 0] != identity[chains : 2 * chains, 0, 0]
    assert torch.equal(moved, swapped.bool())  # positions travel with their energies
    rates = exchange.acceptance_rates()
    assert rates[0].item() == 1.0 and abs(rates[1].item() - p) < 4 * se


def test_replica_exchange_keeps_each_temperature_distribution(
    device: torch.device, dtype: torch.dtype
) -> None:
    """Double well (barrier 8 kT at the lowest rung): exact <U>(T) and equal well populations,
    on ``--device`` in float32 and float64."""
    energy = DoubleWell(barrier=2.0)
    temperatures, chains = [0.25, 0.5, 1.0, 2.0], 128
    md = ReplicaExchangeMD(
        energy,
        torch.ones(1),
        temperatures,
        chains,
        timestep=0.02,
        friction=2.0,
        exchange_every=5,
        seed=1,
        device=device,
        dtype=dtype,
        boltzmann_constant=1.0,
    )
    md.start(np.array([[1.0, 0.0, 0.0]]))  # every replica starts in the right-hand well
    md.advance(1000)
    energies, right = [], []
    for _ in range(150):
        md.advance(10)
        energies.append(md.observe()["potential_energies"].reshape(len(temperatures), chains))
        right.append((md.state.positions[:chains, 0, 0] > 0).double().cpu().numpy())
    energies_t = np.array(energies)  # (reports, K, C): chains independent
    for k, temperature in enumerate(temperatures):
        chain_means = energies_t[:, k].mean(0)
        se = chain_means.std(ddof=1) / math.sqrt(chains)
        assert abs(chain_means.mean() - energy.exact_mean_energy(temperature)) < 4 * se, (
            temperature,
            chain_means.mean(),
            se,
        )
    occupation = np.array(right).mean(0)
    se = occupation.std(ddof=1) / math.sqrt(chains)
    assert abs(occupation.mean() - 0.5) < 4 * se + 1e-12
    assert 0.2 < occupation.mean() < 0.8  # the ladder carried replicas over the barrier


def test_kinetic_temperature_and_constraints_for_hbond_constrained_peptide() -> None:
    """ala3 in vacuum, 22 H-bond constraints: T_kin uses 3N - N_constraints degrees of freedom."""
    molecule = Molecule.from_catalog("ala3-vacuum")
    assert molecule.n_constraints > 0
    chains = 32
    md = ReplicaExchangeMD.for_molecule(
        molecule, [300.0], chains, friction=10.0, seed=2, dtype=torch.float64
    )
    assert md.integrator.n_dof == 3 * molecule.n_atoms - molecule.n_constraints
    md.start(molecule.positions)
    md.advance(300)
    kinetic = []
    for _ in range(20):
        md.advance(10)
        kinetic.append(md.observe()["kinetic_temperatures"])
    replica_means = np.array(kinetic).mean(0)  # independent replicas
    se = replica_means.std(ddof=1) / math.sqrt(chains)
    assert abs(replica_means.mean() - 300.0) < 4 * se, (replica_means.mean(), se)
    assert (
        md.integrator.constraints.violation(md.state.positions).max().item() < 1e-10
    )  # nm, float64
    lengths = torch.tensor([d for _, _, d in molecule.constrained_bonds()], dtype=torch.float64)
    c = md.integrator.constraints
    r = md.state.positions[:, c.atom_i] - md.state.positions[:, c.atom_j]
    assert torch.allclose(r.norm(dim=-1), lengths.expand_as(r[..., 0]), atol=1e-10)
    # velocities are tangent to the constraint surface (RATTLE)
    rate = (r * (md.state.velocities[:, c.atom_i] - md.state.velocities[:, c.atom_j])).sum(-1)
    assert rate.abs().max().item() < 1e-8  # nm^2/ps


def test_constraint_drift_in_float32_stays_below_1e6_nm() -> None:
    molecule = Molecule.from_catalog("ala3-vacuum")
    md = ReplicaExchangeMD.for_molecule(molecule, [300.0], 8, seed=3, dtype=torch.float32)
    md.start(molecule.positions)
    md.advance(200)
    assert md.integrator.constraints.violation(md.state.positions).max().item() < 1e-6


@pytest.mark.parametrize(
    ("name", "timestep", "chains"),
    [
        ("alanine-dipeptide-vacuum", 0.001, 64),
        ("ala3-vacuum", 0.002, 32),
    ],  # ala3: H-bond constraints (SHAKE/RATTLE)
)
def test_potential_energy_distribution_matches_openmm_langevin_middle(
    name: str, timestep: float, chains: int
) -> None:
    """<U> and Var(U) at 300 K vs OpenMM's LangevinMiddle integrator with the same time step.

    Both sides start from the catalog structure with Maxwell-Boltzmann velocities and record the
    same window (steps 1000-2000), so even an incompletely relaxed start is compared like for like.
    ala3-vacuum constrains bonds to hydrogen on both sides (OpenMM: its own constraint solver).
    """
    molecule = Molecule.from_catalog(name)
    reference, _ = openmm_langevin_energies(
        molecule.system,
        molecule.positions,
        300.0,
        n_runs=8,
        equilibration_steps=1000,
        n_reports=50,
        report_every=20,
        timestep=timestep,
    )
    md = ReplicaExchangeMD.for_molecule(
        molecule, [300.0], chains, timestep=timestep, seed=4, dtype=torch.float64
    )
    md.start(molecule.positions)
    md.advance(1000)
    ours = []
    for _ in range(50):
        md.advance(20)
        ours.append(md.observe()["potential_energies"])
    ours_t = np.array(ours)
    for statistic in (lambda e: e, lambda e: (e - e.mean()) ** 2):  # <U>, Var(U)
        # runs and chains are independent: standard errors from their window means
        a, b = statistic(ours_t).mean(0), statistic(reference).mean(0)
        se = math.hypot(a.std(ddof=1) / math.sqrt(len(a)), b.std(ddof=1) / math.sqrt(len(b)))
        assert abs(a.mean() - b.mean()) < 4 * se, (a.mean(), b.mean(), se)


def test_autocorrelation_time_of_an_ar1_process() -> None:
    """AR(1) with coefficient rho has tau = (1 + rho) / (1 - rho) exactly."""
    rho, n, chains = 0.8, 4000, 16
    rng = np.random.default_rng(0)
    x = np.zeros((n, chains))
    noise = rng.normal(size=(n, chains))
    for t in range(1, n):
        x[t] = rho * x[t - 1] + noise[t]
    tau = integrated_autocorrelation_time(x)
    assert (
        abs(tau - (1 + rho) / (1 - rho)) < 0.1 * 9.0
    )  # 10 %: the estimator's spread at this size


def test_md_command_runs_resumes_and_reports(tmp_path) -> None:
    out = tmp_path / "run"
    common = [
        "md",
        "alanine-dipeptide-vacuum",
        "--replicas",
        "8",
        "--t-max",
        "400",
        "--rungs",
        "2",
        "--report-every",
        "10",
        "--checkpoint-every",
        "20",
        "--device",
        "cpu",
        "--seed",
        "5",
        "--no-progress",
        "-o",
        str(out),
        "--json",
    ]
    assert main(common + ["--steps", "40"]) == 0
    assert main(common + ["--steps", "60"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["resumed"] and summary["steps"] == 60 and summary["frames"] == 6 * 4
    assert 0.0 <= summary["exchange_acceptance"][0] <= 1.0
    frames = np.load(out / "chunks" / "frames-000000000060.npz")
    # a straight 60-step run with the same seed reaches the same state (bit-for-bit resume)
    straight = tmp_path / "straight"
    assert main([*common[:-3], "-o", str(straight), "--json", "--steps", "60"]) == 0
    again = np.load(straight / "chunks" / "frames-000000000060.npz")
    np.testing.assert_array_equal(frames["positions"], again["positions"])
    assert (
        main(common[:-3] + ["--friction", "2.0", "-o", str(out), "--steps", "80"]) == 2
    )  # other settings: refused

"""MolecularFlow: a coupling flow on normalised internal coordinates, over Cartesian positions.

References: scipy's truncated normal (the identity-initialised flow's density in closed form),
mdtraj's phi/psi, OpenMM's ``HBonds`` constraint lengths, binomial standard errors.
"""

from __future__ import annotations

import math

import mdtraj as md
import numpy as np
import openmm
import pytest
import torch
from openmm import app, unit
from scipy import stats

from boltzgen.energy.forcefield.compile import compile_system
from boltzgen.errors import BoltzgenError
from boltzgen.flows.molecular import ANGLE_SIGMA, BOND_SIGMA, MolecularFlow
from boltzgen.md.openmm_langevin import langevin_context
from boltzgen.molecule.molecule import Molecule
from boltzgen.molecule.units import BOLTZMANN_CONSTANT

SMALL = dict(n_layers=4, hidden=32, depth=1)


@pytest.fixture(scope="module")
def dipeptide() -> tuple[app.Topology, np.ndarray]:
    molecule = Molecule.from_catalog("alanine-dipeptide")
    return molecule.topology, molecule.positions


def _flow(molecule: object, chirality: str = "constrain", perturb: float = 0.0) -> MolecularFlow:
    """A small float64 flow; ``perturb`` > 0 randomizes its weights (a non-identity flow)."""
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # float64 prior constants, not float32 ones cast up
    try:
        flow = MolecularFlow(molecule, chirality=chirality, seed=1, **SMALL)
    finally:
        torch.set_default_dtype(default)
    generator = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for parameter in flow.parameters():
            parameter.add_(
                perturb * torch.randn(parameter.shape, generator=generator, dtype=parameter.dtype)
            )
    return flow


@pytest.mark.parametrize("chirality", ["constrain", "report"])
def test_sample_and_log_prob_matches_log_prob(dipeptide, chirality: str) -> None:
    """The fused path's log q equals log_prob of its own samples (float64, random weights)."""
    torch.manual_seed(0)
    flow = _flow(dipeptide, chirality, perturb=0.1)
    x, log_q = flow.sample_and_log_prob(256)
    assert x.shape == (256, 22, 3) and log_q.shape == (256,)
    assert torch.isfinite(log_q).all()
    torch.testing.assert_close(flow.log_prob(x), log_q, rtol=0, atol=1e-9)
    log_q.mean().backward()  # reparameterized: gradients reach the flow's weights
    gradients = [p.grad for p in flow.parameters() if p.grad is not None]
    assert gradients and sum(g.abs().sum() for g in gradients) > 0


def test_identity_flow_density_is_the_prior_in_closed_form(dipeptide) -> None:
    """At initialisation log q(x) = sum of scipy truncated-normal/uniform log-densities of the
    normalised features - sum log(widths) + the Cartesian -> internal log-det."""
    torch.manual_seed(1)
    flow = _flow(dipeptide)
    x = flow.sample(64)
    features, log_det = flow.coordinates(x)
    u = ((features - flow.low) / flow.width).numpy()
    expected = log_det.numpy() - np.log(flow.width.numpy()).sum()
    for f, kind in enumerate(flow.coordinates.feature_kinds):
        sigma = {"bond": BOND_SIGMA, "angle": ANGLE_SIGMA}.get(kind)
        if sigma is None:
            continue  # uniform on [0, 1]: log-density 0
        domain = flow.domains[f]
        reference = flow.coordinates.reference_features[f].item()
        loc, scale = (reference - domain.low) / domain.width, sigma / domain.width
        expected += stats.truncnorm.logpdf(u[:, f], -loc / scale, (1 - loc) / scale, loc, scale)
    torch.testing.assert_close(flow.log_prob(x), torch.as_tensor(expected), rtol=0, atol=1e-8)
    bonds = [d for d, k in zip(flow.domains, flow.coordinates.feature_kinds) if k == "bond"]
    assert all(abs(d.width - 10 * BOND_SIGMA) < 1e-12 for d in bonds)  # TA-BG: 0.1 <-> 0.007 nm


def test_chirality_constraint_makes_every_sample_correct(dipeptide) -> None:
    """Constrained: all 2000 samples keep the L chirality and the methyl hydrogen order, also
    for a randomized flow. Free ("report"): the identity flow's torsions are uniform, so half of
    the samples are D (binomial, 4 standard errors)."""
    torch.manual_seed(2)
    n = 2000
    for perturb in (0.0, 0.3):
        flow = _flow(dipeptide, "constrain", perturb)
        x = flow.sample(n)
        assert flow.chirality_ok(x).all() and flow.hydrogen_order_ok(x).all()
    free = _flow(dipeptide, "report")
    x = free.sample(n)
    wrong = (~free.chirality_ok(x)).double().mean().item()
    assert abs(wrong - 0.5) <= 4 * math.sqrt(wrong * (1 - wrong) / n)
    wrong_order = (~free.hydrogen_order_ok(x)).double().mean().item()  # six free signs
    assert abs(wrong_order - (1 - 0.5**6)) <= 4 * math.sqrt(wrong_order * (1 - wrong_order) / n)


def test_log_prob_is_minus_inf_outside_the_support(dipeptide) -> None:
    """A mirrored frame has no density under the constraint but has one without it; a bond
    stretched by 0.1 nm (beyond its 0.035 nm half-width) has none."""
    topology, positions = dipeptide
    x = torch.as_tensor(positions)[None]
    mirrored = x * torch.tensor([-1.0, 1.0, 1.0], dtype=torch.float64)
    assert torch.isfinite(_flow(dipeptide).log_prob(x)).all()
    assert _flow(dipeptide).log_prob(mirrored).item() == -math.inf
    assert torch.isfinite(_flow(dipeptide, "report").log_prob(mirrored)).all()
    stretched = x.clone()
    i, j = _flow(dipeptide).coordinates.zmatrix.bonds[0]
    direction = stretched[0, i] - stretched[0, j]
    stretched[0, i] += 0.1 * direction / direction.norm()
    assert _flow(dipeptide).log_prob(stretched).item() == -math.inf


def test_dihedrals_equal_mdtraj(dipeptide) -> None:
    """phi/psi of flow samples equal mdtraj's (float32 inside mdtraj: 1e-5 rad)."""
    torch.manual_seed(3)
    flow = _flow(dipeptide, perturb=0.1)
    x = flow.sample(32)
    phi, psi = flow.dihedrals(x)
    trajectory = md.Trajectory(x.numpy(), md.Topology.from_openmm(dipeptide[0]))
    for ours, (_, reference) in (
        (phi, md.compute_phi(trajectory)),
        (psi, md.compute_psi(trajectory)),
    ):
        assert ours.shape == (32, 1)
        assert np.abs(np.angle(np.exp(1j * (ours.numpy() - reference)))).max() <= 1e-5


def test_constrained_bonds_stay_at_their_length() -> None:
    """Ala3 with HBonds: samples' X-H distances equal the System's constraint lengths to
    1e-12 nm and the density lives on 3N-6-n_constraints dimensions."""
    molecule = Molecule.from_catalog("ala3")
    system = molecule.system
    constraints = [system.getConstraintParameters(c) for c in range(system.getNumConstraints())]
    lengths_nm = torch.tensor(
        [d.value_in_unit(unit.nanometer) for _, _, d in constraints], dtype=torch.float64
    )
    pairs = torch.tensor([(i, j) for i, j, _ in constraints])
    assert len(constraints) > 0
    torch.manual_seed(4)
    flow = _flow(molecule, perturb=0.1)
    assert flow.dim == 3 * molecule.topology.getNumAtoms() - 6 - len(constraints)
    x, log_q = flow.sample_and_log_prob(64)
    lengths = (x[:, pairs[:, 0]] - x[:, pairs[:, 1]]).norm(dim=-1)
    torch.testing.assert_close(lengths, lengths_nm.expand(64, -1), rtol=0, atol=1e-12)
    torch.testing.assert_close(flow.log_prob(x), log_q.detach(), rtol=0, atol=1e-9)


def test_float32_on_device(dipeptide, device: torch.device) -> None:
    """In float32 on the test device: samples are finite, keep their chirality, and the fused
    log q agrees with log_prob to float32 precision (1e-5 relative of |log q| ~ 200)."""
    torch.manual_seed(5)
    flow = MolecularFlow(dipeptide, seed=1, **SMALL).to(device=device, dtype=torch.float32)
    x, log_q = flow.sample_and_log_prob(128)
    assert x.dtype == log_q.dtype == torch.float32 and x.device.type == device.type
    assert torch.isfinite(log_q).all() and flow.chirality_ok(x).all()
    torch.testing.assert_close(flow.log_prob(x.detach()), log_q.detach(), rtol=1e-5, atol=1e-3)


def test_bad_arguments_raise_boltzgen_error(dipeptide) -> None:
    with pytest.raises(BoltzgenError, match="chirality"):
        MolecularFlow(dipeptide, chirality="ignore")
    with pytest.raises(BoltzgenError, match="not a molecule"):
        MolecularFlow("alanine-dipeptide")  # type: ignore[arg-type]
    with pytest.raises(BoltzgenError, match="tuple"):
        MolecularFlow((dipeptide[0],))


TRIATOMIC_BOND, TRIATOMIC_ANGLE = 0.1, 2.3  # nm, rad
TRIATOMIC_SIGMA_BOND, TRIATOMIC_SIGMA_ANGLE = 0.006, 0.15  # nm, rad (at kT = 1)


def _triatomic() -> tuple[app.Topology, np.ndarray]:
    """An O-H-H triatomic (two bonds to O) at its harmonic minimum, positions in nm."""
    topology = app.Topology()
    residue = topology.addResidue("TRI", topology.addChain())
    oxygen = topology.addAtom("O", app.element.oxygen, residue)
    for name in ("H1", "H2"):
        topology.addBond(oxygen, topology.addAtom(name, app.element.hydrogen, residue))
    r, a = TRIATOMIC_BOND, TRIATOMIC_ANGLE
    return topology, np.array([[0, 0, 0], [r, 0, 0], [r * math.cos(a), r * math.sin(a), 0]])


def _exact_moments(density, low: float, high: float) -> tuple[float, float]:
    """Mean and variance of the (unnormalized) density on [low, high] by 200001-point
    trapezoid quadrature (relative error far below 1e-9 for these smooth integrands)."""
    grid = np.linspace(low, high, 200001)
    weights = density(grid)
    mass = np.trapezoid(weights, grid)
    mean = np.trapezoid(grid * weights, grid) / mass
    return mean, np.trapezoid((grid - mean) ** 2 * weights, grid) / mass


def _reweighted_moments(values: np.ndarray, weights: np.ndarray) -> tuple[float, ...]:
    """Self-normalized mean and variance and their delta-method standard errors."""
    w = weights / weights.sum()
    mean = float(w @ values)
    squared = (values - mean) ** 2
    variance = float(w @ squared)
    return (
        mean,
        variance,
        float(np.sqrt(w**2 @ (values - mean) ** 2)),
        float(np.sqrt(w**2 @ (squared - variance) ** 2)),
    )


@pytest.fixture(scope="module")
def triatomic_samples() -> tuple[MolecularFlow, torch.Tensor, torch.Tensor, torch.Tensor]:
    """A randomized triatomic flow and 200000 of its samples: ``(flow, x (B, 3, 3) nm,
    features (B, 3), log_q (B,))``."""
    torch.manual_seed(11)
    flow = _flow(_triatomic(), perturb=0.05)
    with torch.no_grad():
        x, log_q = flow.sample_and_log_prob(200_000)
        features, _ = flow.coordinates(x)
    return flow, x, features, log_q


def _orbit_log_volume(features: torch.Tensor) -> torch.Tensor:
    """log(b_2^2 b_3 sin a_3) of triatomic features ``(B, 3)``: what the canonical frame omits."""
    return 2 * features[:, 0].log() + features[:, 1].log() + features[:, 2].sin().log()


def _normalized(log_w: torch.Tensor) -> np.ndarray:
    return torch.exp(log_w - log_w.max()).numpy()


def test_reweighted_triatomic_reproduces_the_rotation_averaged_marginals(
    triatomic_samples: tuple[MolecularFlow, torch.Tensor, torch.Tensor, torch.Tensor],
) -> None:
    """A harmonic triatomic, u = sum (b - r0)^2 / 2 s_b^2 + (a - a0)^2 / 2 s_a^2 (kT units), is
    invariant under rigid motions, so its marginals of the internal coordinates carry the orbit
    volume: p(b) ~ b^2 exp(-u_b) for both bonds and p(a) ~ sin(a) exp(-u_a), on the flow's
    support. Importance-reweighted samples of a randomized flow reproduce the means and
    variances of all three within 4 standard errors; without the orbit factor b_2^2 b_3 sin a_3
    in the weights (the canonical-frame measure) the means miss by more than 8."""
    flow, _, features, log_q = triatomic_samples
    bonds, angle = features[:, :2], features[:, 2]
    energy = ((bonds - TRIATOMIC_BOND) ** 2).sum(1) / (2 * TRIATOMIC_SIGMA_BOND**2) + (
        angle - TRIATOMIC_ANGLE
    ) ** 2 / (2 * TRIATOMIC_SIGMA_ANGLE**2)
    log_w = -energy - log_q
    weights = _normalized(log_w)
    canonical_weights = _normalized(log_w - _orbit_log_volume(features))
    assert weights.sum() ** 2 / (weights**2).sum() > 50_000  # Kish ESS of 200000

    def bond_density(b: np.ndarray) -> np.ndarray:
        return b**2 * np.exp(-((b - TRIATOMIC_BOND) ** 2) / (2 * TRIATOMIC_SIGMA_BOND**2))

    def angle_density(a: np.ndarray) -> np.ndarray:
        return np.sin(a) * np.exp(-((a - TRIATOMIC_ANGLE) ** 2) / (2 * TRIATOMIC_SIGMA_ANGLE**2))

    columns = [(bonds[:, 0], bond_density), (bonds[:, 1], bond_density), (angle, angle_density)]
    for f, (values, density) in enumerate(columns):
        exact_mean, exact_variance = _exact_moments(
            density, flow.domains[f].low, flow.domains[f].high
        )
        mean, variance, mean_se, variance_se = _reweighted_moments(values.numpy(), weights)
        assert abs(mean - exact_mean) <= 4 * mean_se, flow.coordinates.feature_names[f]
        assert abs(variance - exact_variance) <= 4 * variance_se, flow.coordinates.feature_names[f]
        wrong_mean, _, wrong_se, _ = _reweighted_moments(values.numpy(), canonical_weights)
        assert abs(wrong_mean - exact_mean) > 8 * wrong_se, flow.coordinates.feature_names[f]


def _triatomic_system(copies: int) -> tuple[openmm.System, np.ndarray]:
    """``copies`` non-interacting harmonic triatomics (the flow test's u, as OpenMM forces at
    300 K) 1 nm apart, and their minimum-energy positions ``(3 copies, 3)`` nm."""
    kt = BOLTZMANN_CONSTANT * 300.0
    system = openmm.System()
    bonds, angles = openmm.HarmonicBondForce(), openmm.HarmonicAngleForce()
    _, single = _triatomic()
    for copy in range(copies):
        o = 3 * copy
        for _ in range(3):
            system.addParticle(16.0)
        for h in (o + 1, o + 2):
            bonds.addBond(o, h, TRIATOMIC_BOND, kt / TRIATOMIC_SIGMA_BOND**2)
        angles.addAngle(o + 1, o, o + 2, TRIATOMIC_ANGLE, kt / TRIATOMIC_SIGMA_ANGLE**2)
    system.addForce(bonds)
    system.addForce(angles)
    positions = np.concatenate([single + [copy, 0.0, 0.0] for copy in range(copies)])
    return system, positions


def _chain_moments(values: np.ndarray) -> tuple[float, float, float, float]:
    """Mean and variance of MD frames ``(n_frames, n_chains)`` (NaN outside the support) and
    their standard errors from the spread over the independent chains."""
    mean = float(np.nanmean(values))
    variance = float(np.nanmean((values - mean) ** 2))
    per_chain_mean = np.nanmean(values, axis=0)
    per_chain_variance = np.nanmean((values - mean) ** 2, axis=0)
    root_chains = math.sqrt(values.shape[1])
    return (
        mean,
        variance,
        float(per_chain_mean.std(ddof=1) / root_chains),
        float(per_chain_variance.std(ddof=1) / root_chains),
    )


def test_reweighted_triatomic_matches_openmm_langevin_md(
    triatomic_samples: tuple[MolecularFlow, torch.Tensor, torch.Tensor, torch.Tensor],
) -> None:
    """OpenMM Langevin MD (256 independent triatomics, 200 frames each, 0.1 ps apart; the
    autocorrelation time of every feature is about one frame) and the flow's samples weighted by
    the energy compiled from the same System give the same mean and variance of b_2, b_3 and
    a_3 within 4 combined standard errors, on the flow's support. With the canonical-frame
    measure the means differ by more than 8: the MD run sees the rotation orbit, as it must."""
    flow, x, features, log_q = triatomic_samples
    copies, n_frames = 256, 200
    system, positions = _triatomic_system(copies)
    context, integrator = langevin_context(system, positions, 300.0, 0.002, 20.0, seed=5)
    integrator.step(500)
    frames = []
    for _ in range(n_frames):
        integrator.step(50)
        state = context.getState(getPositions=True)
        frames.append(state.getPositions(asNumpy=True).value_in_unit(unit.nanometer))
    md_x = torch.tensor(np.array(frames)).reshape(n_frames * copies, 3, 3)
    md_features, _ = flow.coordinates(md_x)
    inside = torch.stack(
        [
            (d.low <= md_features[:, f]) & (md_features[:, f] <= d.high)
            for f, d in enumerate(flow.domains)
        ]
    ).all(0)
    md_features = md_features.masked_fill(~inside[:, None], float("nan"))
    md_features = md_features.reshape(n_frames, copies, 3).numpy()

    energy = compile_system(_triatomic_system(1)[0], 300.0)
    log_w = -energy.energy(x) - log_q
    weights = _normalized(log_w)
    canonical_weights = _normalized(log_w - _orbit_log_volume(features))
    for f, name in enumerate(flow.coordinates.feature_names):
        md_mean, md_variance, md_mean_se, md_variance_se = _chain_moments(md_features[..., f])
        mean, variance, mean_se, variance_se = _reweighted_moments(features[:, f].numpy(), weights)
        assert abs(mean - md_mean) <= 4 * math.hypot(mean_se, md_mean_se), name
        assert abs(variance - md_variance) <= 4 * math.hypot(variance_se, md_variance_se), name
        wrong_mean, _, wrong_se, _ = _reweighted_moments(features[:, f].numpy(), canonical_weights)
        assert abs(wrong_mean - md_mean) > 8 * math.hypot(wrong_se, md_mean_se), name

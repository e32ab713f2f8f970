"""MolecularFlow: a coupling flow on normalised internal coordinates, over Cartesian positions.

References: scipy's truncated normal (the identity-initialised flow's density in closed form),
mdtraj's phi/psi, OpenMM's ``HBonds`` constraint lengths, binomial standard errors.
"""

from __future__ import annotations

import math

import mdtraj as md
import numpy as np
import pytest
import torch
from openmm import app, unit
from scipy import stats

from boltzgen.errors import BoltzgenError
from boltzgen.flows.molecular import ANGLE_SIGMA, BOND_SIGMA, MolecularFlow
from boltzgen.molecule.molecule import Molecule

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

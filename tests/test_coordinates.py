"""Z-matrix construction and Cartesian <-> internal coordinates.

References: the topology's bond graph, Kabsch-aligned positions (numpy SVD), autograd Jacobians
in float64, mdtraj's phi/psi, and the constraint lengths of OpenMM's ``HBonds`` system.
"""

from __future__ import annotations

import mdtraj as md
import numpy as np
import pytest
import torch
from openmm import app, unit

from boltzgen.errors import BoltzgenError
from boltzgen.molecule.coordinates import (
    InternalCoordinates,
    backbone_dihedral_indices,
    dihedral_angles,
)
from boltzgen.molecule.molecule import Molecule
from boltzgen.molecule.openmm_setup import create_system, load_forcefield
from boltzgen.molecule.peptide import build_peptide
from boltzgen.molecule.zmatrix import build_zmatrix, equivalent_hydrogen_groups


def _hbond_constraints(topology: app.Topology, forcefield: tuple[str, ...]) -> list:
    system = create_system(topology, load_forcefield(forcefield), "hbonds")
    constraints = []
    for c in range(system.getNumConstraints()):
        i, j, length = system.getConstraintParameters(c)
        constraints.append((i, j, length.value_in_unit(unit.nanometer)))
    return constraints


@pytest.fixture(scope="module")
def molecules() -> dict[str, tuple[app.Topology, np.ndarray]]:
    """Alanine dipeptide from the catalog and a sequence-built KFW peptide."""
    dipeptide = Molecule.from_catalog("alanine-dipeptide")
    return {
        "alanine-dipeptide": (dipeptide.topology, dipeptide.positions),
        "KFW": build_peptide("KFW"),
    }


@pytest.fixture(scope="module")
def coordinates(molecules) -> dict[str, InternalCoordinates]:
    return {name: InternalCoordinates(top, pos) for name, (top, pos) in molecules.items()}


def _kabsch(mobile: np.ndarray, target: np.ndarray) -> np.ndarray:
    """``mobile (N, 3)`` rigidly moved onto ``target`` (least squares, proper rotation)."""
    p, q = mobile - mobile.mean(0), target - target.mean(0)
    u, _, vt = np.linalg.svd(p.T @ q)
    d = np.sign(np.linalg.det(u @ vt))
    rotation = u @ np.diag([1.0, 1.0, d]) @ vt
    return p @ rotation + target.mean(0)


def _noisy(positions: np.ndarray, sigma: float, n: int, seed: int) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    return torch.as_tensor(positions[None] + sigma * rng.standard_normal((n, *positions.shape)))


@pytest.mark.parametrize("name", ["alanine-dipeptide", "KFW"])
def test_zmatrix_follows_the_bond_graph(molecules, name: str) -> None:
    """Every bond/angle/torsion of the Z-matrix is made of bonded atoms placed earlier."""
    topology, positions = molecules[name]
    zm = build_zmatrix(topology, positions)
    n = topology.getNumAtoms()
    bonds = {frozenset((b[0].index, b[1].index)) for b in topology.bonds()}
    assert sorted(zm.order.tolist()) == list(range(n))
    assert zm.bonds.shape == (n - 1, 2) and zm.angles.shape == (n - 2, 3)
    assert zm.torsions.shape == (n - 3, 4)  # 3N-6 coordinates
    assert zm.collinear == ()  # near-collinear reference triples: none in peptides
    position = {a: p for p, a in enumerate(zm.order.tolist())}
    for i, j, k, l in zm.torsions:
        assert (
            position[j] < position[i] and position[k] < position[i] and position[l] < position[i]
        )
        assert frozenset((i, j)) in bonds and frozenset((j, k)) in bonds
        assert frozenset((k, l)) in bonds or frozenset((j, l)) in bonds  # chain or sibling
    hydrogen = [a.element.symbol == "H" for a in topology.atoms()]
    placed_h = [hydrogen[a] for a in zm.order]
    assert placed_h == sorted(placed_h)  # all heavy atoms before any hydrogen
    # backbone phi is a proper chain torsion of the Z-matrix (heavy-atom backbone first)
    phi, _ = backbone_dihedral_indices(topology)
    chains = {frozenset(map(int, t)) for t in zm.torsions}
    assert all(frozenset(map(int, q)) in chains for q in phi)


@pytest.mark.parametrize("name", ["alanine-dipeptide", "KFW"])
@pytest.mark.parametrize("sigma", [0.005, 0.03])
def test_round_trip_cartesian_internal_cartesian(molecules, coordinates, name, sigma) -> None:
    """x -> internal -> x reproduces x up to a rigid motion to 1e-8 nm (float64).

    sigma 0.005 nm is MD-like noise on the minimized structure; 0.03 nm with random torsions
    (uniform on the circle, placed by the inverse map first) is strongly perturbed.
    """
    topology, positions = molecules[name]
    ic = coordinates[name]
    x = _noisy(positions, 0.005, 16, seed=1)
    if sigma > 0.005:
        features, _ = ic(x)
        generator = torch.Generator().manual_seed(2)
        n_torsions = ic.n_atoms - 3
        features[:, -n_torsions:] = (
            torch.rand(16, n_torsions, generator=generator, dtype=torch.float64) * 2 - 1
        ) * torch.pi
        x = ic.inverse(features)[0] + sigma * torch.randn(
            x.shape, generator=generator, dtype=torch.float64
        )
    features, log_det = ic(x)
    assert features.shape == (16, 3 * ic.n_atoms - 6)
    placed, log_det_inverse = ic.inverse(features)
    first = ic.zmatrix.order[:3]
    assert placed[:, first[0]].abs().max() == 0  # canonical frame
    assert placed[:, first[1], 1:].abs().max() == 0 and placed[:, first[2], 2].abs().max() == 0
    assert (placed[:, first[2], 1] > 0).all()
    for original, rebuilt in zip(x.numpy(), placed.numpy()):
        assert np.abs(_kabsch(original, rebuilt) - rebuilt).max() <= 1e-8
    torch.testing.assert_close(log_det, -log_det_inverse, rtol=0, atol=1e-10)


def _euler_zyz(angles: torch.Tensor) -> torch.Tensor:
    """Rotation matrix ``Rz(alpha) Ry(beta) Rz(gamma)``; its Haar density is ``sin beta``."""

    def about(axis: int, angle: torch.Tensor) -> torch.Tensor:
        c, s = angle.cos(), angle.sin()
        one, zero = torch.ones_like(angle), torch.zeros_like(angle)
        if axis == 2:
            rows = [[c, -s, zero], [s, c, zero], [zero, zero, one]]
        else:
            rows = [[c, zero, s], [zero, one, zero], [-s, zero, c]]
        return torch.stack([torch.stack(row) for row in rows])

    return about(2, angles[0]) @ about(1, angles[1]) @ about(2, angles[2])


@pytest.mark.parametrize("name", ["alanine-dipeptide", "KFW"])
def test_log_det_is_the_full_cartesian_jacobian_less_the_haar_density(
    molecules, coordinates, name: str
) -> None:
    """The reference measure: log|det| of the full 3N map (translation, ZYZ Euler angles,
    internal coordinates) -> Cartesian equals log sin(beta) + the inverse's log-det, to 1e-9
    by float64 autograd and to 1e-6 by float64 central differences (step 1e-6), so the
    rotation-orbit factor b_2^2 b_3 sin a_3 is in it."""
    ic = coordinates[name]
    features, log_det_forward = ic(_noisy(molecules[name][1], 0.01, 1, seed=3))
    _, log_det_inverse = ic.inverse(features)
    rigid = torch.tensor([0.3, -0.2, 0.5, 0.7, 1.1, -2.0], dtype=torch.float64)

    def cartesian(parameters: torch.Tensor) -> torch.Tensor:
        translation, euler, internal = parameters[:3], parameters[3:6], parameters[6:]
        placed = ic.inverse(internal[None])[0][0]
        return (placed @ _euler_zyz(euler).T + translation).reshape(-1)

    point = torch.cat([rigid, features[0]])
    jacobian = torch.autograd.functional.jacobian(cartesian, point, vectorize=True)
    assert jacobian.shape == (3 * ic.n_atoms, 3 * ic.n_atoms)
    expected = torch.linalg.slogdet(jacobian)[1] - rigid[4].sin().log()
    torch.testing.assert_close(log_det_inverse[0], expected, rtol=0, atol=1e-9)
    torch.testing.assert_close(log_det_forward[0], -expected, rtol=0, atol=1e-9)
    step = 1e-6 * torch.eye(point.numel(), dtype=torch.float64)
    differences = torch.stack(
        [(cartesian(point + h) - cartesian(point - h)) / 2e-6 for h in step], dim=1
    )
    numerical = torch.linalg.slogdet(differences)[1] - rigid[4].sin().log()
    torch.testing.assert_close(log_det_inverse[0], numerical, rtol=0, atol=1e-6)


def test_constrained_bonds_are_restored_exactly(molecules) -> None:
    """Under HBonds, X-H bonds leave the features and come back at their constraint length."""
    topology, positions = molecules["KFW"]
    constraints = _hbond_constraints(topology, ("amber99sbildn.xml",))
    ic = InternalCoordinates(topology, positions, constraints)
    free = InternalCoordinates(topology, positions)
    n = topology.getNumAtoms()
    assert ic.n_constraints == len(constraints) > 0
    assert ic.dim == 3 * n - 6 - len(constraints) == len(ic.feature_names)
    features, _ = ic(_noisy(positions, 0.02, 8, seed=4))
    x, log_det = ic.inverse(features)
    pairs = torch.tensor([c[:2] for c in constraints])
    lengths = (x[:, pairs[:, 0]] - x[:, pairs[:, 1]]).norm(dim=-1)
    torch.testing.assert_close(
        lengths,
        torch.tensor([c[2] for c in constraints], dtype=torch.float64).expand(8, -1),
        rtol=0,
        atol=1e-12,
    )
    # density convention: the unconstrained log-det at the constrained lengths
    all_features, _ = free(x)
    torch.testing.assert_close(log_det, free.inverse(all_features)[1], rtol=0, atol=1e-10)
    with pytest.raises(BoltzgenError, match="not a Z-matrix bond"):
        InternalCoordinates(topology, positions, [(0, n - 1, 0.1)])


@pytest.mark.parametrize("name", ["alanine-dipeptide", "KFW"])
def test_backbone_dihedrals_match_mdtraj(molecules, coordinates, name: str) -> None:
    """phi/psi atoms equal mdtraj's, values agree to 1e-5 rad (mdtraj computes in float32)."""
    topology, positions = molecules[name]
    features, _ = coordinates[name](_noisy(positions, 0.005, 4, seed=5))
    n_torsions = topology.getNumAtoms() - 3
    features[:, -n_torsions:] = torch.linspace(
        -3.1, 3.1, 4 * n_torsions, dtype=torch.float64
    ).reshape(4, -1)
    x = coordinates[name].inverse(features)[0]
    trajectory = md.Trajectory(x.numpy(), md.Topology.from_openmm(topology))
    phi, psi = backbone_dihedral_indices(topology)
    (md_phi_atoms, _), (md_psi_atoms, _) = (
        md.compute_phi(trajectory[:1]),
        md.compute_psi(trajectory[:1]),
    )
    np.testing.assert_array_equal(phi, md_phi_atoms)
    np.testing.assert_array_equal(psi, md_psi_atoms)
    for atoms, reference in (
        (phi, md.compute_phi(trajectory)[1]),
        (psi, md.compute_psi(trajectory)[1]),
    ):
        ours = dihedral_angles(x, torch.as_tensor(atoms)).numpy()
        difference = np.angle(np.exp(1j * (ours - reference)))
        assert np.abs(difference).max() <= 1e-5


def test_stereocentres_and_equivalent_hydrogens(molecules, coordinates) -> None:
    """CA of every non-glycine residue is a stereocentre; CH3 groups are found."""
    for name, (topology, _) in molecules.items():
        ca = tuple(a.index for a in topology.atoms() if a.name == "CA")
        assert coordinates[name].stereocentres == ca
        assert coordinates[name].unconstrained_stereocentres == ()
    topology = molecules["alanine-dipeptide"][0]
    atoms = list(topology.atoms())
    groups = {
        (atoms[c].residue.name, atoms[c].name): len(h)
        for c, h in equivalent_hydrogen_groups(topology)
    }
    assert groups == {("ACE", "CH3"): 3, ("ALA", "CB"): 3, ("NME", "C"): 3}


@pytest.mark.parametrize("name", ["alanine-dipeptide", "KFW"])
def test_chirality_detection_catches_mirror_and_swaps(molecules, coordinates, name) -> None:
    """A mirror image flips every stereocentre; swapping CB and HA flips one; swapping two
    methyl hydrogens breaks the hydrogen order but not the chirality."""
    topology, positions = molecules[name]
    ic = coordinates[name]
    x = _noisy(positions, 0.005, 4, seed=6)
    assert ic.chirality_ok(x).all() and ic.hydrogen_order_ok(x).all()
    mirrored = x * torch.tensor([-1.0, 1.0, 1.0], dtype=torch.float64)
    torch.testing.assert_close(ic.chirality_signs(mirrored), -ic.chirality_signs(x))
    assert not ic.chirality_ok(mirrored).any() and not ic.hydrogen_order_ok(mirrored).any()
    index = {(a.residue.index, a.name): a.index for a in topology.atoms()}
    ca_residue = next(a.residue.index for a in topology.atoms() if a.name == "CA")
    swapped = x.clone()
    cb, ha = index[(ca_residue, "CB")], index[(ca_residue, "HA")]
    swapped[:, [cb, ha]] = x[:, [ha, cb]]
    assert not ic.chirality_ok(swapped).any()
    methyl = next(h for _, h in equivalent_hydrogen_groups(topology) if len(h) == 3)
    swapped = x.clone()
    swapped[:, [methyl[0], methyl[1]]] = x[:, [methyl[1], methyl[0]]]
    assert ic.chirality_ok(swapped).all() and not ic.hydrogen_order_ok(swapped).any()


def test_near_collinear_triples_are_avoided_or_reported() -> None:
    """Acetonitrile H3C-C#N: the C-C-N angle is 180 degrees, so N (angle) and the first methyl
    hydrogen (reference plane C-C-N) are reported; the other hydrogens use a sibling plane."""
    topology = app.Topology()
    residue = topology.addResidue("ACN", topology.addChain())
    element = app.Element.getBySymbol
    methyl = topology.addAtom("C1", element("C"), residue)
    nitrile = topology.addAtom("C2", element("C"), residue)
    nitrogen = topology.addAtom("N", element("N"), residue)
    topology.addBond(methyl, nitrile)
    topology.addBond(nitrile, nitrogen)
    hydrogens = []
    for n in range(3):
        hydrogens.append(topology.addAtom(f"H{n + 1}", element("H"), residue))
        topology.addBond(methyl, hydrogens[-1])
    angle = np.radians([0.0, 120.0, 240.0])
    positions = np.array(
        [[0, 0, 0], [0.146, 0, 0], [0.146 + 0.116, 0, 0]]
        + [[-0.036, 0.103 * np.cos(a), 0.103 * np.sin(a)] for a in angle]
    )
    zm = build_zmatrix(topology, positions)
    assert zm.collinear == (nitrogen.index, hydrogens[0].index)
    assert zm.torsion_partner[-1] == hydrogens[0].index  # H3 relative to its sibling H1
    assert build_zmatrix(topology).collinear == ()  # no positions: nothing to judge

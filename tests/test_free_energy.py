"""Free-energy surfaces, profiles and basin differences against closed-form densities."""

from __future__ import annotations

import math
from pathlib import Path

import mdtraj
import numpy as np
import pytest

from boltzgen.diagnostics.free_energy import (
    basin_free_energy_difference,
    free_energy_profile_1d,
    free_energy_surface_2d,
)
from boltzgen.errors import BoltzgenError
from boltzgen.molecule.ramachandran import backbone_dihedrals

ALANINE_DIPEPTIDE = (
    Path(__file__).resolve().parents[1] / "systems" / "alanine-dipeptide" / "structure.pdb"
)
MU, KAPPA = (-1.3, 1.0), (2.0, 1.5)  # von Mises product: phi ~ VM(-1.3, 2), psi ~ VM(1.0, 1.5)


def _von_mises_bin_probabilities(edges: np.ndarray, mu: float, kappa: float) -> np.ndarray:
    """Exact probability of each bin of [-pi, pi) under VM(mu, kappa), by fine quadrature."""
    fine = np.linspace(-math.pi, math.pi, 200 * (edges.size - 1) + 1)
    density = np.exp(kappa * np.cos(fine - mu))
    cumulative = np.concatenate(
        [[0.0], np.cumsum(0.5 * (density[1:] + density[:-1]) * np.diff(fine))]
    )
    at_edges = np.interp(edges, fine, cumulative)
    return np.diff(at_edges) / cumulative[-1]


def _assert_within_sampling_error(deviation: np.ndarray) -> None:
    """Every bin within 4 s.e., and the mean squared deviation (a chi^2 / m) consistent with 1."""
    assert np.max(np.abs(deviation)) < 4.0, np.max(np.abs(deviation))
    chi2 = np.mean(deviation**2)
    assert abs(chi2 - 1.0) < 4.0 * math.sqrt(2.0 / deviation.size), chi2


def _aligned_deviation(
    free_energy: np.ndarray, exact: np.ndarray, standard_error: np.ndarray, mask: np.ndarray
) -> np.ndarray:
    """(F - F_exact - c) / s.e. on the masked bins, c the precision-weighted mean offset."""
    offset = np.sum((free_energy - exact)[mask] / standard_error[mask] ** 2) / np.sum(
        1 / standard_error[mask] ** 2
    )
    return (free_energy - exact - offset)[mask] / standard_error[mask]


def test_surface_of_von_mises_product_matches_analytic_within_sampling_error() -> None:
    rng = np.random.default_rng(0)
    n, bins = 200_000, 36
    phi, psi = rng.vonmises(MU[0], KAPPA[0], n), rng.vonmises(MU[1], KAPPA[1], n)
    free_energy, (x_edges, y_edges) = free_energy_surface_2d(
        phi + 2 * math.pi, psi, bins=bins
    )  # shifted: periodic
    assert free_energy.shape == (bins, bins) and free_energy.min() == 0.0
    p = np.outer(
        _von_mises_bin_probabilities(x_edges, MU[0], KAPPA[0]),
        _von_mises_bin_probabilities(y_edges, MU[1], KAPPA[1]),
    )
    exact = -np.log(p)
    expected_counts = n * p
    standard_error = np.sqrt((1 - p) / expected_counts)  # s.d. of log(count) of a multinomial bin
    well_populated = expected_counts >= 100
    assert well_populated.sum() > 300
    _assert_within_sampling_error(
        _aligned_deviation(free_energy, exact, standard_error, well_populated)
    )


def test_reweighted_uniform_samples_reproduce_target_surface() -> None:
    rng = np.random.default_rng(1)
    n, bins = 200_000, 24
    phi, psi = rng.uniform(-math.pi, math.pi, (2, n))
    weights = np.exp(
        KAPPA[0] * np.cos(phi - MU[0]) + KAPPA[1] * np.cos(psi - MU[1])
    )  # p / uniform, unnormalized
    free_energy, (x_edges, y_edges) = free_energy_surface_2d(phi, psi, weights, bins=bins)
    p = np.outer(
        _von_mises_bin_probabilities(x_edges, MU[0], KAPPA[0]),
        _von_mises_bin_probabilities(y_edges, MU[1], KAPPA[1]),
    )
    # s.e. of log(sum of weights in a bin) from the data: sqrt(sum w^2) / sum w.
    sum_w, _, _ = np.histogram2d(phi, psi, (x_edges, y_edges), weights=weights)
    sum_w2, _, _ = np.histogram2d(phi, psi, (x_edges, y_edges), weights=weights**2)
    standard_error = np.sqrt(sum_w2) / sum_w
    _assert_within_sampling_error(
        _aligned_deviation(free_energy, -np.log(p), standard_error, np.ones_like(p, dtype=bool))
    )


def test_profile_bootstrap_errors_match_counting_noise_and_shrink_like_inverse_sqrt_n() -> None:
    rng = np.random.default_rng(2)
    samples = rng.vonmises(MU[0], KAPPA[0], 80_000)
    errors = {}
    for n in (20_000, 80_000):
        centres, free_energy, error = free_energy_profile_1d(
            samples[:n], bins=36, n_bootstrap=200, seed=3
        )
        edges = np.linspace(-math.pi, math.pi, 37)
        np.testing.assert_allclose(centres, 0.5 * (edges[1:] + edges[:-1]), rtol=0, atol=1e-14)
        p = _von_mises_bin_probabilities(edges, MU[0], KAPPA[0])
        counting = np.sqrt((1 - p) / (n * p))
        _assert_within_sampling_error(
            _aligned_deviation(free_energy, -np.log(p), counting, np.ones(36, dtype=bool))
        )
        # 200 replicates: each bootstrap s.d. is within ~5% of the truth; averaged over 36 bins
        # much better.
        assert np.mean(error / counting) == pytest.approx(1.0, abs=0.05)
        errors[n] = error
    ratio = np.mean(errors[20_000] / errors[80_000])
    assert ratio == pytest.approx(2.0, abs=0.15), ratio


def test_weighted_profile_bootstrap_includes_weight_variance() -> None:
    # Uniform samples reweighted to VM: the bootstrap error must match sqrt(sum w^2)/sum w per bin.
    rng = np.random.default_rng(4)
    x = rng.uniform(-math.pi, math.pi, 50_000)
    w = np.exp(KAPPA[0] * np.cos(x - MU[0]))
    _, _, error = free_energy_profile_1d(x, w, bins=18, n_bootstrap=400, seed=5)
    edges = np.linspace(-math.pi, math.pi, 19)
    sum_w, _ = np.histogram(x, edges, weights=w)
    sum_w2, _ = np.histogram(x, edges, weights=w**2)
    # Delta method for log(S_bin / S_total) under resampling of frames (the 1/n terms cancel).
    total = sum_w.sum()
    expected = np.sqrt(sum_w2 / sum_w**2 - 2 * sum_w2 / (sum_w * total) + (w**2).sum() / total**2)
    assert np.mean(error / expected) == pytest.approx(1.0, abs=0.06)


def test_basin_difference_of_uniform_angles_with_wrapping_basin() -> None:
    rng = np.random.default_rng(6)
    n = 100_000
    phi, psi = rng.uniform(-math.pi, math.pi, (2, n)) + 4 * math.pi  # any range: wrapped
    basin_a = ((-1.0, 1.0), (-1.0, 1.0))  # 2 x 2 rad
    basin_b = ((2.5, -2.5), (-1.0, 1.0))  # wraps through +-pi: (2 pi - 5) x 2 rad
    p_a, p_b = 4 / (4 * math.pi**2), 2 * (2 * math.pi - 5) / (4 * math.pi**2)
    delta, error = basin_free_energy_difference(
        phi, psi, basin_a, basin_b, n_bootstrap=300, seed=7
    )
    # Delta method for log(n_a / n_b) of a multinomial.
    expected_error = math.sqrt((1 - p_a) / (n * p_a) + (1 - p_b) / (n * p_b) + 2 / n)
    assert error == pytest.approx(expected_error, rel=0.2)
    assert abs(delta - (-math.log(p_b / p_a))) < 4 * expected_error
    with pytest.raises(BoltzgenError):
        basin_free_energy_difference(phi, psi, ((0, 1),), basin_b)


def _dihedral(p0: np.ndarray, p1: np.ndarray, p2: np.ndarray, p3: np.ndarray) -> np.ndarray:
    """IUPAC dihedral angle of four points (..., 3), in radians."""
    b0, b1, b2 = p1 - p0, p2 - p1, p3 - p2
    n1, n2 = np.cross(b0, b1), np.cross(b1, b2)
    y = np.linalg.norm(b1, axis=-1) * np.sum(b0 * n2, -1)
    return np.arctan2(y, np.sum(n1 * n2, -1))  # Blondel & Karplus (1996)


def test_backbone_dihedrals_of_alanine_dipeptide_all_input_kinds() -> None:
    structure = mdtraj.load(str(ALANINE_DIPEPTIDE))
    rng = np.random.default_rng(8)
    xyz = structure.xyz + rng.normal(0.0, 0.02, (50, structure.n_atoms, 3)).astype(np.float32)
    trajectory = mdtraj.Trajectory(xyz, structure.topology)
    phi, psi = backbone_dihedrals(trajectory)
    assert phi.shape == psi.shape == (50, 1)
    atom = {(a.residue.name, a.name): a.index for a in structure.topology.atoms}
    x = xyz.astype(np.float64)
    phi_atoms = [atom["ACE", "C"], atom["ALA", "N"], atom["ALA", "CA"], atom["ALA", "C"]]
    psi_atoms = [atom["ALA", "N"], atom["ALA", "CA"], atom["ALA", "C"], atom["NME", "N"]]
    np.testing.assert_allclose(phi[:, 0], _dihedral(*(x[:, i] for i in phi_atoms)), atol=1e-5)
    np.testing.assert_allclose(psi[:, 0], _dihedral(*(x[:, i] for i in psi_atoms)), atol=1e-5)
    from_positions = backbone_dihedrals(xyz, structure.topology.to_openmm())
    np.testing.assert_array_equal(from_positions[0], phi)
    with pytest.raises(BoltzgenError):
        backbone_dihedrals(xyz)

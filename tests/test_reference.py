"""Reference datasets: format, dihedrals and energies against mdtraj/OpenMM, caching, basins."""

from __future__ import annotations

import json
import math

import mdtraj
import numpy as np
import openmm
import pytest
import torch
from openmm import unit

from boltzgen.cli.main import main
from boltzgen.diagnostics.report import load_reference as load_report_reference
from boltzgen.errors import BoltzgenError
from boltzgen.md.datasets import SPLITS, load_reference
from boltzgen.molecule.molecule import Molecule
from boltzgen.molecule.ramachandran import basin_populations, basin_standard_errors
from boltzgen.molecule.units import BOLTZMANN_CONSTANT

torch.set_num_threads(1)


def test_basins_partition_the_ramachandran_plane() -> None:
    degrees = np.array(
        [
            [-80, 150],
            [-150, -170],
            [-80, 70],
            [-70, -40],
            [-60, 20],
            [60, 40],
            [70, -70],
            [170, 170],
        ]
    )
    phi, psi = np.radians(degrees[:, 0]), np.radians(degrees[:, 1])
    populations = basin_populations(phi, psi)
    # C7eq/C5: (-80,150) (-150,-170) (-80,70) (170,170: phi outside 0..120); alphaR: 2; alphaL: 2
    assert populations == {"C7eq/C5": 4 / 8, "alphaR": 2 / 8, "alphaL": 2 / 8}
    weights = np.array([1, 1, 1, 1, 2, 2, 6, 6])  # unnormalized importance weights
    assert basin_populations(phi, psi, weights) == pytest.approx(
        {"C7eq/C5": 9 / 20, "alphaR": 3 / 20, "alphaL": 8 / 20}
    )


def test_basin_standard_errors_match_the_spread_of_reweighted_estimates() -> None:
    """Equal weights: sqrt(p (1 - p) / n) exactly. Importance weights (uniform proposal in phi,
    target ~ exp(2 cos phi)): over 400 replicates of 2000 samples the standard deviation of the
    reweighted alphaL population equals the mean delta-method error within 10%, and the mean
    estimate is the exact population within 4 standard errors of the mean."""
    rng = np.random.default_rng(0)
    phi = rng.uniform(-np.pi, np.pi, 1000)
    psi = np.zeros_like(phi)
    p = basin_populations(phi, psi)["alphaL"]
    assert basin_standard_errors(phi, psi)["alphaL"] == pytest.approx(np.sqrt(p * (1 - p) / 1000))
    grid = np.linspace(-np.pi, np.pi, 200_001)
    density = np.exp(2 * np.cos(grid))
    exact = density[(grid > 0) & (grid < np.radians(120))].sum() / density.sum()
    estimates, errors = [], []
    for _ in range(400):
        phi = rng.uniform(-np.pi, np.pi, 2000)
        weights = np.exp(2 * np.cos(phi))
        estimates.append(basin_populations(phi, np.zeros_like(phi), weights)["alphaL"])
        errors.append(basin_standard_errors(phi, np.zeros_like(phi), weights)["alphaL"])
    assert np.std(estimates, ddof=1) == pytest.approx(np.mean(errors), rel=0.1)
    assert abs(np.mean(estimates) - exact) < 4 * np.mean(errors) / np.sqrt(400)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("reference") / "ala2"
    arguments = [
        "reference",
        "alanine-dipeptide-vacuum",
        "--frames",
        "80",
        "--replicas",
        "8",
        "--rungs",
        "2",
        "--t-max",
        "450",
        "--report-every",
        "10",
        "--equilibration",
        "50",
        "--device",
        "cpu",
        "--seed",
        "7",
        "--no-progress",
        "-o",
        str(folder),
        "--json",
    ]
    assert main(arguments) == 0
    return folder, arguments


def test_dataset_format_and_metadata(dataset) -> None:
    folder, _ = dataset
    metadata = json.loads((folder / "metadata.json").read_text())
    assert metadata["temperature_K"] == 300.0 and metadata["seed"] == 7
    assert metadata["frames"] == {
        "train": 64,
        "val": 8,
        "test": 8,
    }  # 20 reports x 4 chains, 80/10/10 in time
    assert metadata["tau_frames"] >= 1.0
    assert math.isclose(metadata["effective_frames"], 80 / metadata["tau_frames"])
    train = load_reference(folder, "train")
    phi, psi = (
        np.concatenate([load_reference(folder, s)["phi"] for s in SPLITS]),
        np.concatenate([load_reference(folder, s)["psi"] for s in SPLITS]),
    )
    assert metadata["basin_populations"] == pytest.approx(
        basin_populations(phi[:, 0], psi[:, 0]), abs=1e-12
    )
    assert train["positions"].shape == (64, 22, 3) and train["positions"].dtype == np.float32
    assert (train["step"] > 50).all()  # equilibration discarded
    with pytest.raises(BoltzgenError, match="unknown split"):
        load_reference(folder, "validation")


def test_dihedrals_and_energies_match_mdtraj_and_openmm(dataset) -> None:
    folder, _ = dataset
    split = load_reference(folder, "test")
    trajectory = mdtraj.Trajectory(
        split["positions"], mdtraj.load_pdb(str(folder / "topology.pdb")).topology
    )
    np.testing.assert_allclose(
        split["phi"][:, 0], mdtraj.compute_phi(trajectory)[1][:, 0], atol=1e-5
    )
    np.testing.assert_allclose(
        split["psi"][:, 0], mdtraj.compute_psi(trajectory)[1][:, 0], atol=1e-5
    )
    molecule = Molecule.from_catalog("alanine-dipeptide-vacuum")
    context = openmm.Context(
        molecule.system,
        openmm.VerletIntegrator(0.001),
        openmm.Platform.getPlatformByName("Reference"),
    )
    kT = BOLTZMANN_CONSTANT * 300.0
    for positions, reduced in zip(split["positions"], split["reduced_energies"]):
        context.setPositions(positions.astype(np.float64))
        energy = (
            context.getState(getEnergy=True)
            .getPotentialEnergy()
            .value_in_unit(unit.kilojoule_per_mole)
        )
        assert abs(energy / kT - reduced) < 1e-3  # float32 MD positions vs float64 OpenMM
    report_view = load_report_reference(
        folder / "val.npz"
    )  # the diagnostics reader takes the same files
    assert report_view is not None


def test_rerun_reuses_and_other_settings_are_refused(dataset, capsys) -> None:
    folder, arguments = dataset
    capsys.readouterr()
    assert main(arguments) == 0
    assert json.loads(capsys.readouterr().out)["reused"] is True
    changed = [a if a != "7" else "8" for a in arguments]
    assert main(changed) == 2
    assert "other settings" in capsys.readouterr().err

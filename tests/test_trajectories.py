"""Sample sets as trajectories: mdtraj reloads the same coordinates; sidecars round-trip."""

from __future__ import annotations

import mdtraj
import numpy as np
import pytest
import torch

from boltzgen.errors import BoltzgenError
from boltzgen.molecule.molecule import Molecule
from boltzgen.molecule.trajectories import read_trajectory, write_trajectory


@pytest.fixture(scope="module")
def molecule() -> Molecule:
    return Molecule.from_catalog("alanine-dipeptide-vacuum")


@pytest.fixture(scope="module")
def positions(molecule) -> np.ndarray:
    noise = np.random.default_rng(0).normal(scale=0.02, size=(40, molecule.n_atoms, 3))
    return molecule.positions + noise


def test_dcd_xtc_h5_reload_to_the_same_coordinates(tmp_path, molecule, positions):
    prefix = tmp_path / "run" / "samples"
    paths = write_trajectory(prefix, positions, molecule.topology, formats=("dcd", "xtc", "h5"))
    assert [p.name for p in paths] == ["samples.pdb", "samples.dcd", "samples.xtc", "samples.h5"]
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == sorted(p.name for p in paths)
    top = str(prefix) + ".pdb"
    dcd = mdtraj.load(str(prefix) + ".dcd", top=top)
    xtc = mdtraj.load(str(prefix) + ".xtc", top=top)
    h5 = mdtraj.load(str(prefix) + ".h5")
    np.testing.assert_allclose(dcd.xyz, positions, atol=1e-3)  # float32
    np.testing.assert_allclose(h5.xyz, positions, atol=1e-6)
    np.testing.assert_allclose(xtc.xyz, positions, atol=1e-3)  # xtc keeps 1e-3 nm
    np.testing.assert_allclose(mdtraj.load(top).xyz[0], positions[0], atol=1e-4)  # PDB: 0.001 A
    assert [a.name for a in h5.topology.atoms] == [a.name for a in molecule.topology.atoms()]


def test_sidecar_round_trip_with_torch_inputs(tmp_path, molecule, positions):
    log_weights = torch.linspace(-3.0, 2.0, len(positions), dtype=torch.float64)
    reduced = torch.as_tensor(np.random.default_rng(1).normal(size=len(positions)))
    write_trajectory(
        tmp_path / "s",
        torch.as_tensor(positions),
        molecule.mdtraj_topology(),
        log_weights=log_weights,
        reduced_energies=reduced,
        temperature=300.0,
    )
    trajectory, sidecar = read_trajectory(tmp_path / "s")
    assert trajectory.n_frames == len(positions) and trajectory.n_atoms == molecule.n_atoms
    np.testing.assert_array_equal(sidecar["log_weights"], log_weights.numpy())
    np.testing.assert_array_equal(sidecar["reduced_energies"], reduced.numpy())
    assert float(sidecar["temperature"]) == 300.0


def test_dcd_only_reads_back_with_the_pdb_topology(tmp_path, molecule, positions):
    write_trajectory(tmp_path / "d", positions, molecule.topology, formats=("dcd",))
    trajectory, sidecar = read_trajectory(tmp_path / "d")
    np.testing.assert_allclose(trajectory.xyz, positions, atol=1e-3)
    assert sidecar == {}


def test_bad_inputs_are_user_errors(tmp_path, molecule, positions):
    with pytest.raises(BoltzgenError, match="shape"):
        write_trajectory(tmp_path / "x", positions[:, :5], molecule.topology)
    with pytest.raises(BoltzgenError, match="log_weights must have shape"):
        write_trajectory(tmp_path / "x", positions, molecule.topology, log_weights=np.zeros(3))
    bad = positions.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(BoltzgenError, match="NaN"):
        write_trajectory(tmp_path / "x", bad, molecule.topology)
    with pytest.raises(BoltzgenError, match="unknown trajectory formats"):
        write_trajectory(tmp_path / "x", positions, molecule.topology, formats=("trr",))
    with pytest.raises(BoltzgenError, match="no trajectory"):
        read_trajectory(tmp_path / "missing")
    assert not list(tmp_path.iterdir())  # nothing half-written

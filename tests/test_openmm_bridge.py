"""The OpenMM energy bridge: values, gradients, temperature, bad inputs, worker pool lifecycle."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import openmm
import pytest
import torch
from openmm import unit

from boltzgen.energy.openmm_bridge import PLATFORMS, OpenMMEnergy, ResultDeadline
from boltzgen.errors import BoltzgenError
from boltzgen.molecule.molecule import Molecule

KB = 0.00831446261815324  # kJ/mol/K, CODATA molar gas constant R


@pytest.fixture(scope="module")
def molecule() -> Molecule:
    return Molecule.from_catalog("alanine-dipeptide")


@pytest.fixture(scope="module")
def batch(molecule) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    noise = 0.005 * torch.randn(6, molecule.n_atoms, 3, generator=generator, dtype=torch.float64)
    return torch.as_tensor(molecule.positions) + noise


def _reference(system: openmm.System, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Energies (kJ/mol) and forces (kJ/mol/nm) from a fresh Reference-platform Context."""
    context = openmm.Context(
        system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference")
    )
    energies, forces = [], []
    for x in positions:
        context.setPositions(x * unit.nanometer)
        state = context.getState(getEnergy=True, getForces=True)
        energies.append(state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole))
        forces.append(
            state.getForces(asNumpy=True).value_in_unit(unit.kilojoule_per_mole / unit.nanometer)
        )
    return np.array(energies), np.array(forces)


@pytest.mark.parametrize("name", ["alanine-dipeptide", "ala3"])
def test_energies_and_forces_equal_openmm_reference(name):
    molecule = Molecule.from_catalog(name)
    x = torch.as_tensor(molecule.positions)[None].repeat(3, 1, 1)
    x = (
        x + 0.003 * torch.randn(x.shape, generator=torch.Generator().manual_seed(1), dtype=x.dtype)
    ).requires_grad_()
    energy = OpenMMEnergy.from_molecule(molecule, platform="Reference")
    u = energy.energy(x)
    (gradient,) = torch.autograd.grad(u.sum(), x)
    reference_u, reference_f = _reference(molecule.system, x.detach().numpy())
    kT = KB * molecule.temperature
    np.testing.assert_allclose(u.detach().numpy(), reference_u / kT, rtol=1e-10)
    np.testing.assert_allclose(-gradient.numpy() * kT, reference_f, rtol=1e-10, atol=1e-8)


def test_gradient_matches_finite_differences(molecule, batch):
    energy = OpenMMEnergy.from_molecule(molecule, platform="Reference")
    x = batch[:1].clone().requires_grad_()
    (gradient,) = torch.autograd.grad(energy.energy(x).sum(), x)
    h = 1e-5  # nm; central differences are exact to O(h^2) ~ 1e-10 relative here
    for atom, axis in [(0, 0), (4, 1), (8, 2), (14, 0), (21, 1)]:
        shift = torch.zeros_like(x.detach())
        shift[0, atom, axis] = h
        numeric = (energy.energy(x.detach() + shift) - energy.energy(x.detach() - shift)) / (2 * h)
        assert numeric.item() == pytest.approx(gradient[0, atom, axis].item(), rel=1e-5, abs=1e-4)


def test_temperature_scaling_and_dtype(molecule, batch):
    energy = OpenMMEnergy.from_molecule(molecule, platform="Reference")
    u300 = energy.energy(batch)
    kj = _reference(molecule.system, batch.numpy())[0]
    np.testing.assert_allclose(
        energy.energy(batch, temperature=600.0).numpy(), kj / (KB * 600.0), rtol=1e-10
    )
    np.testing.assert_allclose(u300.numpy(), kj / (KB * 300.0), rtol=1e-10)
    u32 = energy.energy(batch.float())
    assert u32.dtype == torch.float32
    np.testing.assert_allclose(u32.numpy(), u300.numpy(), rtol=1e-4)  # float32 input rounding


def test_non_finite_positions_give_inf_energy_and_zero_gradient(molecule, batch):
    energy = OpenMMEnergy.from_molecule(molecule)
    x = batch.clone()
    x[1, 3, 0] = float("nan")
    x[2, 0, 2] = float("inf")
    x.requires_grad_()
    u = energy.energy(x)
    (gradient,) = torch.autograd.grad(u.sum(), x)
    assert torch.isinf(u[1:3]).all() and (u[1:3] > 0).all()
    assert torch.isfinite(u[[0, 3, 4, 5]]).all()
    assert (gradient[1:3] == 0).all() and torch.isfinite(gradient).all()


def test_two_workers_give_the_same_numbers_as_one(molecule, batch):
    single = OpenMMEnergy.from_molecule(molecule, platform="Reference")
    x1, x2 = batch.clone().requires_grad_(), batch.clone().requires_grad_()
    u1 = single.energy(x1)
    (g1,) = torch.autograd.grad(u1.sum(), x1)
    with OpenMMEnergy.from_molecule(molecule, platform="Reference", n_workers=2) as pool:
        u2 = pool.energy(x2)
        (g2,) = torch.autograd.grad(u2.sum(), x2)
        u_odd = pool.energy(batch[:1])  # fewer configurations than workers
    assert torch.equal(u1, u2) and torch.equal(g1, g2) and torch.equal(u_odd, u1[:1].detach())
    with pytest.raises(BoltzgenError, match="pool is closed"):
        pool.energy(batch)
    pool.close()  # idempotent


def test_platforms_work_or_say_they_are_unavailable(molecule, batch):
    available = {
        openmm.Platform.getPlatform(i).getName() for i in range(openmm.Platform.getNumPlatforms())
    }
    reference = _reference(molecule.system, batch.numpy())[0] / (KB * molecule.temperature)
    for name in PLATFORMS:
        if name in available:
            u = OpenMMEnergy.from_molecule(molecule, platform=name).energy(batch)
            np.testing.assert_allclose(u.numpy(), reference, rtol=1e-5)  # mixed/single precision
        else:
            with pytest.raises(BoltzgenError, match=f"platform '{name}' is not available"):
                OpenMMEnergy.from_molecule(molecule, platform=name)
    with pytest.raises(BoltzgenError, match="unknown OpenMM platform"):
        OpenMMEnergy.from_molecule(molecule, platform="Metal")
    with pytest.raises(BoltzgenError, match="n_workers"):
        OpenMMEnergy.from_molecule(molecule, n_workers=0)


_SCRIPT_HEADER = """
import os, signal, sys, threading, time, torch
from boltzgen.energy.openmm_bridge import OpenMMEnergy
from boltzgen.errors import BoltzgenError
from boltzgen.molecule.molecule import Molecule
if __name__ == "__main__":
    molecule = Molecule.from_catalog("alanine-dipeptide")
    energy = OpenMMEnergy.from_molecule(molecule, platform="Reference", n_workers=2)
    x = torch.as_tensor(molecule.positions)[None].repeat(4, 1, 1)
"""


def _run_script(body: str) -> subprocess.CompletedProcess:
    script = _SCRIPT_HEADER + textwrap.indent(textwrap.dedent(body), "    ")
    return subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )


def test_killed_worker_raises_and_an_unclosed_pool_does_not_hang_at_exit():
    """One subprocess (torch imports are slow): a worker of a second pool is SIGKILLed
    mid-evaluation, which must raise the clear error; the first pool is left open at exit."""
    start = time.monotonic()
    result = _run_script("""
        print("ENERGY", float(energy.energy(x)[0]))
        doomed = OpenMMEnergy.from_molecule(molecule, platform="Reference", n_workers=2)
        big = x.repeat(20000, 1, 1)  # seconds of work per worker
        victim = doomed._evaluator._processes[1].pid
        threading.Timer(0.5, os.kill, (victim, signal.SIGKILL)).start()
        try:
            doomed.energy(big)
        except BoltzgenError as error:
            print("CLEAR:", error)
        sys.exit(0)  # `energy` is never closed: its workers must still go away
    """)
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - start < 60
    assert (
        "CLEAR: OpenMM worker process 1" in result.stdout
        and "died (exit code -9)" in result.stdout
    )
    assert float(result.stdout.split("ENERGY")[1].split()[0]) < 0  # a real energy came back


def test_frozen_worker_raises_at_its_deadline_and_leaves_no_process(molecule):
    """SIGSTOP on one worker in the middle of a batch: the call raises the one-line error within
    the deadline (floor 1 s + 4x the measured time per configuration) instead of waiting
    forever, and every worker process of the pool is gone afterwards."""
    deadline = ResultDeadline(factor=4.0, floor_s=1.0)
    x = torch.as_tensor(molecule.positions)[None]
    with OpenMMEnergy.from_molecule(
        molecule, platform="Reference", n_workers=2, deadline=deadline
    ) as energy:
        started = time.monotonic()
        energy.energy(x.repeat(400, 1, 1))
        per_configuration = (time.monotonic() - started) / 200  # per worker: 200 of 400
        per_worker = max(int(0.5 / per_configuration), 200)  # about 0.5 s of work each
        pids = [process.pid for process in energy._evaluator._processes]
        threading.Timer(0.1, os.kill, (pids[1], signal.SIGSTOP)).start()
        started = time.monotonic()
        with pytest.raises(BoltzgenError) as raised:
            energy.energy(x.repeat(2 * per_worker, 1, 1))
        elapsed = time.monotonic() - started
    message = str(raised.value)
    assert "\n" not in message and "the pool is closed" in message
    assert f"OpenMM worker process 1 (pid {pids[1]}) did not answer within" in message
    # worker 0 answers after ~0.5 s, so the deadline is ~1 s + 4 x 0.5 s; closing adds ~1 s
    assert elapsed < 15.0
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


@pytest.mark.parametrize("bad", [{"factor": 0.0}, {"floor_s": float("nan")}, {"factor": True}])
def test_result_deadline_refuses_unusable_values(bad):
    with pytest.raises(BoltzgenError, match="result deadline"):
        ResultDeadline(**bad)
    assert ResultDeadline(factor=2.0, floor_s=1.0).seconds(10, 0.5) == 11.0

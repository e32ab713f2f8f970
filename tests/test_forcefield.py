"""The torch force field against OpenMM's Reference platform (float64), term by term.

Reference: OpenMM Reference platform energies and forces per force group on minimised, MD-like
(Langevin 300-600 K) and perturbed (0.02 nm noise) configurations. Tolerances: relative energy
error 1e-6 and relative force error 1e-5 per force class in float64 (measured: ~1e-13); 1e-3 for
both in float32 (measured: energies <= 1e-4, forces <= 4e-5).
"""

from __future__ import annotations

import math
import os
import warnings

import numpy as np
import openmm
import openmm.unit as unit
import pytest
import torch
from openmm import app

from boltzgen.energy.forcefield import (
    TorchForceField,
    UnsupportedForceError,
    check_exactness,
    compile_system,
    energy_for_molecule,
    probe_configurations,
)
from boltzgen.energy.forcefield.exactness import reference_energies_and_forces
from boltzgen.energy.openmm_bridge import OpenMMEnergy
from boltzgen.errors import BoltzgenError
from boltzgen.molecule.molecule import Molecule
from boltzgen.molecule.peptide import build_peptide
from boltzgen.molecule.units import BOLTZMANN_CONSTANT

#: Catalog molecules (alanine dipeptide: amber96 + OBC1 CustomGBForce; ala3/ala5: amber99sbildn +
#: amber99_obc.xml GBSAOBCForce with H-bond constraints; vacuum variants) and sequence-built
#: peptides of other residues with the other implicit-solvent models: (sequence, force field,
#: solvent) -> OBC2, GBn2 (neck tables), HCT, GBn.
CATALOG = (
    "alanine-dipeptide",
    "alanine-dipeptide-vacuum",
    "ala3",
    "ala3-vacuum",
    "ala5",
    "ala5-vacuum",
)
PEPTIDES = {
    "DRSY-obc2": ("DRSY", ("amber99sbildn.xml",), "obc2"),
    "KFW-gbn2": ("KFW", ("amber14-all.xml",), "gbn2"),
    "CHP-hct": ("CHP", ("amber99sbildn.xml",), "implicit/hct.xml"),
    "A-gbn": ("A", ("amber99sbildn.xml",), "implicit/gbn.xml"),
}


def _molecule(key: str) -> Molecule:
    if key in PEPTIDES:
        sequence, forcefield, solvent = PEPTIDES[key]
        return Molecule.from_sequence(
            sequence, forcefield, solvent, minimize=False
        )  # probe_configurations minimises
    return Molecule.from_catalog(key)


@pytest.fixture(scope="module")
def alanine_obc1() -> tuple[openmm.System, np.ndarray]:
    molecule = Molecule.from_catalog("alanine-dipeptide")
    return molecule.system, molecule.positions


@pytest.fixture(scope="module")
def alanine_frames(alanine_obc1: tuple[openmm.System, np.ndarray]) -> np.ndarray:
    system, positions = alanine_obc1
    return probe_configurations(system, positions, n_md=3, md_steps=100, seed=1)


@pytest.mark.parametrize("key", [*CATALOG, *PEPTIDES])
def test_every_force_matches_openmm_reference_in_float64(key: str) -> None:
    molecule = _molecule(key)
    system = molecule.system
    frames = probe_configurations(
        system, molecule.positions, n_md=3, md_steps=100, seed=2, max_iterations=200
    )
    report = check_exactness(system, frames)
    expected = {type(f).__name__ for f in system.getForces()} - {"CMMotionRemover"}
    assert set(report.terms) == expected
    assert ("vacuum" in key) == (not {"CustomGBForce", "GBSAOBCForce"} & expected)
    assert report.n_configurations == 8
    for name, errors in report.terms.items():
        assert errors.max_rel_energy_error <= 1e-6, name
        assert errors.max_rel_force_error <= 1e-5, name
    assert report.total.max_rel_energy_error <= 1e-6
    assert report.total.max_rel_force_error <= 1e-5
    assert report.passed


def _villin_with_salt() -> tuple[openmm.System, np.ndarray]:
    """OpenMM's villin headpiece test structure (582 atoms, water and ions removed) with
    amber99sbildn + OBC2 and Debye screening (kappa 1/nm): System and positions in nm."""
    pdb = app.PDBFile(os.path.join(os.path.dirname(app.__file__), "data", "test.pdb"))
    modeller = app.Modeller(pdb.topology, pdb.positions)
    modeller.delete(
        [r for r in modeller.topology.residues() if r.name.upper() in ("HOH", "NA", "CL")]
    )
    forcefield = app.ForceField("amber99sbildn.xml", "implicit/obc2.xml")
    system = forcefield.createSystem(
        modeller.topology, nonbondedMethod=app.NoCutoff, implicitSolventKappa=1.0 / unit.nanometer
    )
    return system, np.asarray(modeller.positions.value_in_unit(unit.nanometer))


def test_villin_with_cmmotionremover_and_salt_matches_openmm() -> None:
    """Many residue types (villin headpiece, 582 atoms), OBC2 with Debye screening (kappa > 0),
    and OpenMM's default CMMotionRemover (ignored: no energy)."""
    system, x = _villin_with_salt()
    assert any(isinstance(f, openmm.CMMotionRemover) for f in system.getForces())
    gb = next(f for f in system.getForces() if isinstance(f, openmm.CustomGBForce))
    assert "exp(-kappa" in gb.getEnergyTermParameters(0)[0]
    frames = np.stack([x, x + np.random.default_rng(3).normal(scale=0.02, size=x.shape)])
    report = check_exactness(system, frames)
    assert report.passed, report.to_dict()
    assert report.max_rel_energy_error <= 1e-6 and report.max_rel_force_error <= 1e-5


def test_autograd_forces_and_reduced_energy_match_openmm(alanine_obc1, alanine_frames) -> None:
    system, _ = alanine_obc1
    forcefield = compile_system(system, temperature=300.0)
    energies, forces = reference_energies_and_forces(system, alanine_frames)
    x = torch.as_tensor(alanine_frames).requires_grad_(True)
    u = forcefield.energy(x)
    (gradient,) = torch.autograd.grad(u.sum(), x)
    kT = BOLTZMANN_CONSTANT * 300.0
    np.testing.assert_allclose(u.detach().numpy() * kT, energies["total"], rtol=1e-10)
    scale = np.abs(forces["total"]).max()
    assert np.abs(-gradient.numpy() * kT - forces["total"]).max() <= 1e-9 * scale


def test_temperature_scaling(alanine_obc1, alanine_frames) -> None:
    system, _ = alanine_obc1
    forcefield = compile_system(system, temperature=300.0)
    x = torch.as_tensor(alanine_frames)
    potential = forcefield.potential_energy(x)
    assert forcefield.kT == pytest.approx(8.314462618e-3 * 300.0, rel=1e-9)
    torch.testing.assert_close(
        forcefield.energy(x), potential / (BOLTZMANN_CONSTANT * 300.0), rtol=1e-13, atol=0
    )
    torch.testing.assert_close(
        forcefield.energy(x, temperature=600.0),
        potential / (BOLTZMANN_CONSTANT * 600.0),
        rtol=1e-13,
        atol=0,
    )
    with pytest.raises(BoltzgenError, match=r"\(batch, 22, 3\)"):
        forcefield.potential_energy(x[:, :21])
    hot = compile_system(system, temperature=450.0)
    torch.testing.assert_close(
        hot.energy(x), forcefield.energy(x, temperature=450.0), rtol=1e-13, atol=0
    )


def test_chunked_evaluation_equals_unchunked(alanine_obc1, alanine_frames) -> None:
    system, _ = alanine_obc1
    whole, chunked = compile_system(system, 300.0), compile_system(system, 300.0, max_batch=3)
    assert whole.cpu_chunk > 8 and chunked.cpu_chunk == 3
    x = torch.as_tensor(alanine_frames)
    assert x.shape[0] > 2 * chunked.max_batch
    xa, xb = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    ua, ub = whole.energy(xa), chunked.energy(xb)  # chunks are checkpointed under autograd
    (ga,), (gb,) = torch.autograd.grad(ua.sum(), xa), torch.autograd.grad(ub.sum(), xb)
    torch.testing.assert_close(ub, ua, rtol=1e-14, atol=0)
    torch.testing.assert_close(gb, ga, rtol=1e-12, atol=1e-12)
    for a, b in zip(whole.energy_and_forces(x), chunked.energy_and_forces(x)):
        torch.testing.assert_close(b, a, rtol=1e-12, atol=1e-12)
    cached = compile_system(system, 300.0)
    cached.cpu_chunk = 3  # cache-sized chunks below max_batch: split, not checkpointed
    xc = x.clone().requires_grad_(True)
    uc = cached.energy(xc)
    (gc,) = torch.autograd.grad(uc.sum(), xc)
    torch.testing.assert_close(uc, ua, rtol=1e-14, atol=0)
    torch.testing.assert_close(gc, ga, rtol=1e-12, atol=1e-12)
    for name, value in whole.energy_terms(x).items():
        torch.testing.assert_close(chunked.energy_terms(x)[name], value, rtol=1e-14, atol=1e-12)


def test_energy_terms_are_openmm_force_groups(alanine_obc1, alanine_frames) -> None:
    system, _ = alanine_obc1
    terms = compile_system(system, 300.0).energy_terms(torch.as_tensor(alanine_frames))
    energies, _ = reference_energies_and_forces(system, alanine_frames)
    assert set(terms) == set(energies) - {"total"}
    for name, value in terms.items():
        np.testing.assert_allclose(value.numpy(), energies[name], rtol=1e-9, atol=1e-9)


def test_float32_error_within_documented_bound(alanine_obc1, alanine_frames) -> None:
    system, _ = alanine_obc1
    report = check_exactness(system, alanine_frames, dtype=torch.float32)
    assert report.dtype == "float32"
    assert report.energy_tolerance == 1e-3 and report.force_tolerance == 1e-3
    assert report.passed, report.to_dict()
    # float32 inputs on a float64 module (parameters cast per call) give float32 outputs
    forcefield = compile_system(system, 300.0)
    u = forcefield.energy(torch.as_tensor(alanine_frames, dtype=torch.float32))
    assert u.dtype == torch.float32
    np.testing.assert_allclose(
        u.numpy(), forcefield.energy(torch.as_tensor(alanine_frames)).numpy(), rtol=1e-4
    )


def test_torsion_phase_and_sign_convention() -> None:
    """Non-symmetric phases expose the sign of the dihedral angle (Amber's 0/180 do not)."""
    rng = np.random.default_rng(4)
    system = openmm.System()
    for _ in range(6):
        system.addParticle(12.0)
    torsions = openmm.PeriodicTorsionForce()
    for quad, n, phase in [
        ((0, 1, 2, 3), 1, 0.7),
        ((1, 2, 3, 4), 2, -1.3),
        ((2, 3, 4, 5), 3, 2.9),
        ((5, 3, 1, 0), 4, 0.2),
    ]:
        torsions.addTorsion(*quad, n, phase, 3.0 + n)
    system.addForce(torsions)
    positions = rng.normal(scale=0.2, size=(10, 6, 3))
    report = check_exactness(system, positions)
    assert report.terms["PeriodicTorsionForce"].max_rel_energy_error <= 1e-10
    assert report.terms["PeriodicTorsionForce"].max_rel_force_error <= 1e-10


def test_a_system_without_energy_terms_gives_zero() -> None:
    system = openmm.System()
    for _ in range(3):
        system.addParticle(1.0)
    system.addForce(openmm.CMMotionRemover())
    forcefield = compile_system(system, 300.0)
    x = torch.randn(4, 3, 3, dtype=torch.float64, requires_grad=True)
    u = forcefield.energy(x)
    (gradient,) = torch.autograd.grad(u.sum(), x)
    assert forcefield.force_names == [] and forcefield.energy_terms(x) == {}
    assert torch.equal(u, torch.zeros(4, dtype=torch.float64)) and torch.equal(
        gradient, torch.zeros_like(x)
    )


def test_unsupported_forces_are_refused_with_their_name(alanine_obc1) -> None:
    system, _ = alanine_obc1
    extra = openmm.System()
    extra.__setstate__(system.__getstate__())
    extra.addForce(openmm.CustomBondForce("r^2"))
    with pytest.raises(UnsupportedForceError, match="CustomBondForce"):
        compile_system(extra, 300.0)
    topology, _ = build_peptide("A", ("amber96.xml",), minimize=False)
    for files, name in [
        (("amber96.xml",), "NonbondedForce"),
        (("amber96.xml", "implicit/obc2.xml"), "CustomGBForce"),
        (("amber99sbildn.xml", "amber99_obc.xml"), "GBSAOBCForce"),
    ]:
        cutoff = app.ForceField(*files).createSystem(
            topology, nonbondedMethod=app.CutoffNonPeriodic
        )
        force = next(f for f in cutoff.getForces() if type(f).__name__ == name)
        with pytest.raises(UnsupportedForceError, match=f"{name} uses a cutoff"):
            compile_system(_only(cutoff, force), 300.0)


def _only(system: openmm.System, force: openmm.Force) -> openmm.System:
    """A System with the particles of ``system`` and one copy of ``force``."""
    single = openmm.System()
    for a in range(system.getNumParticles()):
        single.addParticle(system.getParticleMass(a))
    single.addForce(openmm.XmlSerializer.deserialize(openmm.XmlSerializer.serialize(force)))
    return single


def test_modified_custom_gb_expression_is_refused(alanine_obc1) -> None:
    system, _ = alanine_obc1
    force = next(f for f in system.getForces() if isinstance(f, openmm.CustomGBForce))
    changed = openmm.XmlSerializer.deserialize(openmm.XmlSerializer.serialize(force))
    name, expression, kind = changed.getComputedValueParameters(1)
    changed.setComputedValueParameters(1, name, expression.replace("2.909125", "3.0"), kind)
    compile_system(_only(system, changed), 300.0)  # a different polynomial is still this model
    changed.setComputedValueParameters(1, name, expression.replace("tanh", "erf"), kind)
    with pytest.raises(UnsupportedForceError, match="CustomGBForce"):
        compile_system(_only(system, changed), 300.0)


def test_energy_for_molecule_prefers_the_torch_force_field(alanine_obc1) -> None:
    system, _ = alanine_obc1

    class Molecule:
        name, temperature = "ala2", 300.0

    Molecule.system = system
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        energy = energy_for_molecule(Molecule(), prefer="torch")
    assert isinstance(energy, TorchForceField)
    assert energy.event_shape == (22, 3) and math.isclose(energy.temperature, 300.0)


def test_torch_compile_choice_matches_the_plain_force_field(alanine_obc1, alanine_frames) -> None:
    system, _ = alanine_obc1

    class Molecule:
        name, temperature = "ala2", 300.0

    Molecule.system = system
    compiled = energy_for_molecule(Molecule(), prefer="torch-compile")
    plain = energy_for_molecule(Molecule(), prefer="torch")
    assert compiled._kernel is not compiled._total_energy and plain._kernel == plain._total_energy
    x = torch.as_tensor(alanine_frames, dtype=torch.float32)
    u_compiled, f_compiled = compiled.energy_and_forces(x)
    u_plain, f_plain = plain.energy_and_forces(x)
    # fused kernels reorder float32 sums: agreement to float32 rounding of ~1e3 kJ/mol terms
    torch.testing.assert_close(u_compiled, u_plain, rtol=1e-5, atol=1e-3)
    torch.testing.assert_close(f_compiled, f_plain, rtol=1e-4, atol=1e-2)
    with pytest.raises(BoltzgenError, match="torch, torch-autograd, torch-compile, openmm"):
        energy_for_molecule(Molecule(), prefer="fast")


@pytest.mark.parametrize("key", [*CATALOG, *PEPTIDES, "villin-salt"])
def test_analytic_pair_gradients_equal_autograd_in_float64(key: str) -> None:
    """The hand-written derivatives of the pair terms (Coulomb + LJ, every GB model: OBC1/OBC2 as
    CustomGBForce and GBSAOBCForce, HCT, GBn, GBn2 with its neck, Debye screening) against
    autograd of the reference path, on configurations spread wide enough to reach each branch of
    the descreening integral: energies and forces to 1e-12 relative (measured ~1e-16)."""
    if key == "villin-salt":
        system, positions = _villin_with_salt()
    else:
        molecule = _molecule(key)
        system, positions = molecule.system, np.asarray(molecule.positions)
    forcefield = compile_system(system, 300.0)
    assert forcefield.analytic_gradients
    generator = torch.Generator().manual_seed(0)
    x0 = torch.as_tensor(positions)
    noise = torch.randn(12, *x0.shape, generator=generator, dtype=torch.float64)
    x = x0 + noise * torch.linspace(0.003, 0.05, 12, dtype=torch.float64)[:, None, None]
    results = []
    for analytic in (True, False):
        forcefield.use_analytic_gradients(analytic)
        u, f = forcefield.energy_and_forces(x)
        results.append((u, f))
    (u_analytic, f_analytic), (u_autograd, f_autograd) = results
    assert not forcefield.analytic_gradients
    torch.testing.assert_close(u_analytic, u_autograd, rtol=1e-12, atol=0.0)
    assert (f_analytic - f_autograd).abs().max() <= 1e-12 * f_autograd.abs().max()


def test_second_derivatives_need_the_autograd_path(alanine_obc1, alanine_frames) -> None:
    """Forces of forces through the analytic pair path are refused in one line that names the
    way out; the autograd path gives them (a Hessian-vector product against finite differences
    of the forces, float64)."""
    system, _ = alanine_obc1
    forcefield = compile_system(system, 300.0)
    x = torch.as_tensor(alanine_frames[:2]).requires_grad_(True)
    with pytest.raises(BoltzgenError, match='use_analytic_gradients\\(False\\).*"torch-autograd"'):
        torch.autograd.grad(forcefield.potential_energy(x).sum(), x, create_graph=True)
    forcefield.use_analytic_gradients(False)
    (gradient,) = torch.autograd.grad(forcefield.potential_energy(x).sum(), x, create_graph=True)
    direction = torch.randn_like(x)
    (hessian_vector,) = torch.autograd.grad((gradient * direction).sum(), x)
    step = 1e-6
    _, f_plus = forcefield.energy_and_forces(x.detach() + step * direction)
    _, f_minus = forcefield.energy_and_forces(x.detach() - step * direction)
    finite_difference = -(f_plus - f_minus) / (2 * step)
    scale = finite_difference.abs().max()
    assert (hessian_vector - finite_difference).abs().max() <= 1e-5 * scale


def test_energy_for_molecule_falls_back_to_the_bridge_with_a_warning(
    alanine_obc1, alanine_frames
) -> None:
    system, _ = alanine_obc1
    restrained = openmm.XmlSerializer.deserialize(openmm.XmlSerializer.serialize(system))
    restrained.addForce(openmm.CustomExternalForce("0"))

    class Molecule:
        name, temperature = "restrained", 300.0

    Molecule.system, Molecule.n_atoms = restrained, restrained.getNumParticles()
    with pytest.warns(UserWarning, match="CustomExternalForce"):
        energy = energy_for_molecule(Molecule(), prefer="torch")
    assert isinstance(energy, OpenMMEnergy)
    x = torch.as_tensor(alanine_frames)
    # the bridge runs OpenMM's CPU platform (single-precision arithmetic): agreement to ~1e-6
    torch.testing.assert_close(
        energy.energy(x), compile_system(system, 300.0).energy(x), rtol=1e-5, atol=1e-5
    )
    energy.close()


def test_energies_and_forces_on_the_device_in_each_dtype(
    alanine_obc1, alanine_frames, device: torch.device, dtype: torch.dtype
) -> None:
    """The force field moved to ``--device`` and ``dtype`` (its chunking differs on CUDA)
    matches OpenMM's Reference platform in float64: 1e-9 relative in float64, the documented
    1e-4 in float32 (energies) and 1e-3 of the force scale (forces)."""
    system, _ = alanine_obc1
    forcefield = compile_system(system, 300.0).to(device, dtype)
    x = torch.as_tensor(alanine_frames, dtype=dtype, device=device).requires_grad_(True)
    u = forcefield.energy(x)
    (forces,) = torch.autograd.grad(-u.sum(), x)
    openmm_energies, openmm_forces = _openmm_reference(system, alanine_frames)
    kT = BOLTZMANN_CONSTANT * 300.0
    rtol = 1e-9 if dtype == torch.float64 else 1e-4
    np.testing.assert_allclose(u.detach().cpu().double().numpy() * kT, openmm_energies, rtol=rtol)
    scale = np.abs(openmm_forces).max()
    error = np.abs(forces.cpu().double().numpy() * kT - openmm_forces).max() / scale
    assert error < (1e-9 if dtype == torch.float64 else 1e-3)


def _openmm_reference(system: openmm.System, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Energies (kJ/mol) and forces (kJ/mol/nm) of each frame on OpenMM's Reference platform."""
    integrator = openmm.VerletIntegrator(0.001)
    context = openmm.Context(system, integrator, openmm.Platform.getPlatformByName("Reference"))
    energies, forces = [], []
    for frame in frames:
        context.setPositions(frame.astype(np.float64))
        state = context.getState(getEnergy=True, getForces=True)
        energies.append(state.getPotentialEnergy().value_in_unit(openmm.unit.kilojoule_per_mole))
        forces.append(
            state.getForces(asNumpy=True).value_in_unit(
                openmm.unit.kilojoule_per_mole / openmm.unit.nanometer
            )
        )
    return np.array(energies), np.array(forces)

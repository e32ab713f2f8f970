"""Check the torch force field against OpenMM's Reference platform, force group by force group.

Each force of a copy of the System goes into its own force group (one group per force class),
and the Reference platform (float64) evaluates energies and forces of each group. Errors:

- energy: |U_torch - U_openmm| / max(|U_openmm|, 1 kJ/mol) (the floor keeps terms that happen to
  be near zero from inflating the ratio);
- force: max |F_torch - F_openmm| / max(max |F_openmm|, 1 kJ/mol/nm), maxima over atoms and
  components (the max-norm of the difference relative to the largest force).

Both are maximised over configurations and, for the overall numbers that decide ``passed``,
over force classes. The error of the summed energy and forces is reported as ``total`` for
information: at a minimised structure the total forces nearly cancel, so their *relative* error
measures cancellation (float32: ~1e-2), not the force field.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field

import numpy as np
import openmm
import openmm.unit as unit
import torch

from ...errors import BoltzgenError
from ...molecule.openmm_setup import one_line, run_minimizer
from .compile import IGNORED_FORCES, compile_system

__all__ = [
    "TOLERANCES",
    "TermErrors",
    "ExactnessReport",
    "reference_energies_and_forces",
    "probe_configurations",
    "check_exactness",
]

#: Tolerances of the check per dtype: (relative energy error, relative force error) per force
#: class.
#: float32 bounds are ~10-30x above the largest errors measured on the catalog and test peptides
#: (energy <= 1e-4: NonbondedForce of ala5-vacuum, a sum of large cancelling Coulomb pairs; force
#: <= 4e-5).
TOLERANCES: dict[torch.dtype, tuple[float, float]] = {
    torch.float64: (1e-6, 1e-5),
    torch.float32: (1e-3, 1e-3),
}
_ENERGY_FLOOR = 1.0  # kJ/mol
_FORCE_FLOOR = 1.0  # kJ/mol/nm


@dataclass
class TermErrors:
    """Largest relative errors of one force class (or the total) over the configurations."""

    max_rel_energy_error: float
    max_rel_force_error: float


@dataclass
class ExactnessReport:
    """Result of :func:`check_exactness`; :meth:`to_dict` is the JSON of ``boltzgen energy
    check``."""

    terms: dict[str, TermErrors]
    total: TermErrors
    n_configurations: int
    dtype: str
    energy_tolerance: float
    force_tolerance: float
    max_rel_energy_error: float = field(init=False)
    max_rel_force_error: float = field(init=False)
    passed: bool = field(init=False)

    def __post_init__(self) -> None:
        errors = list(self.terms.values())
        self.max_rel_energy_error = max(e.max_rel_energy_error for e in errors)
        self.max_rel_force_error = max(e.max_rel_force_error for e in errors)
        self.passed = bool(
            self.max_rel_energy_error <= self.energy_tolerance
            and self.max_rel_force_error <= self.force_tolerance
        )

    def to_dict(self) -> dict:
        """Plain JSON-ready dictionary. ``max_rel_*_error`` at the top are the largest errors
        over the force classes in ``terms`` (what the tolerances check and ``passed`` says);
        ``total`` holds the errors of the summed energy and forces, for information only, as
        ``checked`` says in the JSON itself."""
        return {**asdict(self), "checked": CHECKED_TEXT}


#: What the top-level errors of :meth:`ExactnessReport.to_dict` are, stated in its JSON.
CHECKED_TEXT = (
    "max_rel_energy_error and max_rel_force_error are the largest errors over the force "
    "classes in terms, checked against the tolerances; total is the error of the summed "
    "energy and forces, for information (near-cancelling total forces at a minimum inflate "
    "its relative error)"
)


def _grouped_system(system: openmm.System) -> tuple[openmm.System, dict[str, int]]:
    grouped = copy.deepcopy(system)
    groups: dict[str, int] = {}
    for force in grouped.getForces():
        name = type(force).__name__
        if name not in IGNORED_FORCES:
            force.setForceGroup(groups.setdefault(name, len(groups)))
    return grouped, groups


def reference_energies_and_forces(
    system: openmm.System, positions: np.ndarray
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Energies and forces per force class from OpenMM's Reference platform (float64).

    Arguments:
        system: The System.
        positions: Configurations, shape ``(M, N, 3)``, nm.

    Returns:
        ``(energies, forces)``: dictionaries keyed by OpenMM force class name, plus ``"total"``,
        of arrays of shape ``(M,)`` (kJ/mol) and ``(M, N, 3)`` (kJ/mol/nm).
    """
    grouped, groups = _grouped_system(system)
    context = openmm.Context(
        grouped, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference")
    )
    selections = {
        **{name: {group} for name, group in groups.items()},
        "total": set(groups.values()),
    }
    energies = {name: np.empty(len(positions)) for name in selections}
    forces = {name: np.empty(positions.shape) for name in selections}
    for m, configuration in enumerate(positions):
        context.setPositions(configuration)
        for name, selection in selections.items():
            state = context.getState(getEnergy=True, getForces=True, groups=selection)
            energies[name][m] = state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
            forces[name][m] = state.getForces(asNumpy=True).value_in_unit(
                unit.kilojoule_per_mole / unit.nanometer
            )
    return energies, forces


def probe_configurations(
    system: openmm.System,
    positions: np.ndarray,
    n_md: int = 4,
    md_temperatures: tuple[float, float] = (300.0, 600.0),
    md_steps: int = 250,
    perturbation: float = 0.02,
    seed: int = 0,
    max_iterations: int = 500,
) -> np.ndarray:
    """Configurations that probe a force field: minimised, MD-like and strongly perturbed.

    Arguments:
        system: The System.
        positions: A starting structure, shape ``(N, 3)``, nm.
        n_md: MD frames, spread over ``md_temperatures`` (Langevin, 2 fs, 1/ps friction,
            ``md_steps`` steps between frames, OpenMM CPU platform, one thread).
        md_temperatures: Lowest and highest MD temperature, K.
        md_steps: Steps between MD frames.
        perturbation: Standard deviation of the Gaussian noise added to the minimised
            structure and to each MD frame, nm.
        seed: Seed of the integrator and of the noise.
        max_iterations: Iterations of OpenMM's ``LocalEnergyMinimizer`` (tolerance 1 kJ/mol/nm).

    Returns:
        ``2 (1 + n_md)`` configurations, shape ``(M, N, 3)``, nm: minimised, MD frames, then the
        perturbed copies of each.

    Raises:
        BoltzgenError: If OpenMM's minimizer or integrator fails (one line).
    """
    platform = openmm.Platform.getPlatformByName("CPU")
    integrator = openmm.LangevinMiddleIntegrator(
        md_temperatures[0] * unit.kelvin, 1.0 / unit.picosecond, 0.002 * unit.picoseconds
    )
    integrator.setRandomNumberSeed(seed + 1)
    context = openmm.Context(system, integrator, platform, {"Threads": "1"})
    context.setPositions(np.asarray(positions))
    run_minimizer(context, 1.0, max_iterations, f"the start structure ({len(positions)} atoms)")
    frames = [
        context.getState(getPositions=True)
        .getPositions(asNumpy=True)
        .value_in_unit(unit.nanometer)
    ]
    for temperature in np.linspace(*md_temperatures, n_md):
        integrator.setTemperature(temperature * unit.kelvin)
        try:
            integrator.step(md_steps)
        except openmm.OpenMMException as error:
            raise BoltzgenError(
                f"the probe MD at {temperature:g} K failed ({one_line(error)}): check the "
                "structure for overlapping atoms or extreme coordinates"
            ) from None
        frames.append(
            context.getState(getPositions=True)
            .getPositions(asNumpy=True)
            .value_in_unit(unit.nanometer)
        )
    clean = np.stack(frames)
    noise = np.random.default_rng(seed).normal(scale=perturbation, size=clean.shape)
    return np.concatenate([clean, clean + noise])


def _relative(
    difference: np.ndarray, reference: np.ndarray, floor: float, axes: tuple[int, ...]
) -> float:
    scale = np.maximum(np.abs(reference).max(axis=axes) if axes else np.abs(reference), floor)
    worst = np.abs(difference).max(axis=axes) if axes else np.abs(difference)
    return float((worst / scale).max())


def check_exactness(
    system: openmm.System,
    configurations: np.ndarray,
    dtype: torch.dtype = torch.float64,
    energy_tolerance: float | None = None,
    force_tolerance: float | None = None,
) -> ExactnessReport:
    """Compare the compiled force field with OpenMM Reference per force class.

    Arguments:
        system: The System to compile and check.
        configurations: Positions, shape ``(M, N, 3)``, nm (e.g. from
            :func:`probe_configurations`).
        dtype: Dtype of the torch evaluation (float64 for the exactness check; float32 to
            measure its error).
        energy_tolerance, force_tolerance: Pass thresholds on the relative errors of each force
            class (default: :data:`TOLERANCES` of ``dtype``).

    Raises:
        UnsupportedForceError: If the System cannot be compiled.
    """
    if dtype not in TOLERANCES:
        raise BoltzgenError(f"dtype must be torch.float64 or torch.float32, got {dtype}")
    forcefield = compile_system(system, temperature=300.0).to(dtype)
    x = torch.as_tensor(configurations, dtype=dtype)
    energies, forces = reference_energies_and_forces(
        system, np.asarray(configurations, dtype=np.float64)
    )
    terms = {}
    for name in [*forcefield.force_names, "total"]:
        u, f = forcefield.energy_and_forces(x, None if name == "total" else [name])
        terms[name] = TermErrors(
            _relative(u.double().numpy() - energies[name], energies[name], _ENERGY_FLOOR, ()),
            _relative(f.double().numpy() - forces[name], forces[name], _FORCE_FLOOR, (1, 2)),
        )
    total = terms.pop("total")
    default_energy, default_force = TOLERANCES[dtype]
    return ExactnessReport(
        terms,
        total,
        len(configurations),
        str(dtype).removeprefix("torch."),
        default_energy if energy_tolerance is None else energy_tolerance,
        default_force if force_tolerance is None else force_tolerance,
    )

"""Force fields, solvent models and OpenMM ``System`` creation, with one-line errors.

Every molecule of boltzgen is parameterized here: force-field files and a solvent name resolve to
the exact OpenMM XML files, :func:`create_system` builds a vacuum or implicit-solvent ``System``
(``NoCutoff``, no centre-of-mass motion removal) and :func:`minimize_positions` relaxes a
structure with OpenMM's ``LocalEnergyMinimizer`` (through :func:`run_minimizer`: a progress bar
on a terminal when it takes more than a few seconds, an iteration cap, one-line errors). OpenMM's
own errors about unknown files and residues without a template, and minimizer failures, are
translated into :class:`~boltzgen.errors.BoltzgenError`.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence

import numpy as np
import openmm
from openmm import app, unit
from tqdm.auto import tqdm

from ..errors import BoltzgenError

__all__ = [
    "CONSTRAINTS",
    "SOLVENTS",
    "solvent_files",
    "load_forcefield",
    "create_system",
    "minimize_positions",
    "run_minimizer",
    "MINIMIZER_MAX_ITERATIONS",
    "one_line",
]

#: Default iteration cap of the minimizations boltzgen runs on its own (built peptides). A
#: 200-residue peptide (2,000-3,200 atoms) needs some 12,000 L-BFGS iterations, ~3 min on one
#: loaded CPU core, to reach 0.1 kJ/mol/nm; the cap stops it after ~30 s, close to the minimum
#: (within 15% of the converged energy), which is what a start structure needs.
MINIMIZER_MAX_ITERATIONS = 2000
#: Seconds a minimization runs before its progress bar appears (on a terminal only).
_PROGRESS_DELAY_SECONDS = 2.0

#: Named implicit-solvent models and the OpenMM data files they stand for. Any other solvent is
#: either an OpenMM XML file name (such as a force field's own ``amber99_obc.xml``, which creates
#: a ``GBSAOBCForce``) or a path to an XML file.
SOLVENTS: dict[str, tuple[str, ...]] = {
    "vacuum": (),
    "obc1": ("implicit/obc1.xml",),
    "obc2": ("implicit/obc2.xml",),
    "gbn2": ("implicit/gbn2.xml",),
}

#: Allowed ``constraints`` values and what OpenMM's ``createSystem`` receives for them.
CONSTRAINTS: dict[str, object] = {"none": None, "hbonds": app.HBonds}

_NO_TEMPLATE = re.compile(r"No template found for residue (\d+) \(([^)]*)\)\.?\s*(.*)", re.S)


def solvent_files(solvent: str) -> list[str]:
    """The OpenMM XML files of a solvent model.

    Arguments:
        solvent: ``"vacuum"``, ``"obc1"``, ``"obc2"``, ``"gbn2"``, or the name/path of an XML
            file (e.g. ``"amber99_obc.xml"``).

    Returns:
        The file names, empty for vacuum.
    """
    if solvent in SOLVENTS:
        return list(SOLVENTS[solvent])
    if solvent.endswith(".xml"):
        return [solvent]
    raise BoltzgenError(
        f"unknown solvent {solvent!r}: use one of {', '.join(SOLVENTS)} or an OpenMM XML file "
        "such as 'amber99_obc.xml' or a path ending in .xml"
    )


def load_forcefield(files: Sequence[str]) -> app.ForceField:
    """An OpenMM ``ForceField`` from data-file names or paths (cached per list of files).

    Arguments:
        files: Force-field and solvent XML files, in the order OpenMM should load them.

    Raises:
        BoltzgenError: When a file cannot be found or read, or the files do not combine.
    """
    if isinstance(files, str) or not files:
        raise BoltzgenError(f"force field must be a non-empty list of XML files, got {files!r}")
    return _cached_forcefield(tuple(str(name) for name in files))


@functools.lru_cache(maxsize=16)
def _cached_forcefield(files: tuple[str, ...]) -> app.ForceField:
    try:
        return app.ForceField(*files)
    except Exception as error:
        combined = error
    for name in files:
        try:
            app.ForceField(name)
        except Exception as error:
            raise BoltzgenError(
                f"cannot load force-field file {name!r} ({one_line(error)}): use an OpenMM "
                "data file such as 'amber99sbildn.xml' or 'amber96.xml', or an existing XML path"
            ) from None
    raise BoltzgenError(
        f"cannot combine force-field files {list(files)} ({one_line(combined)}): check that "
        "the solvent file belongs to the force field"
    )


def create_system(
    topology: app.Topology, forcefield: app.ForceField, constraints: str = "none"
) -> openmm.System:
    """A vacuum or implicit-solvent ``System`` without cutoff.

    Arguments:
        topology: The molecule, with all hydrogens.
        forcefield: From :func:`load_forcefield`.
        constraints: ``"none"`` or ``"hbonds"`` (bonds to hydrogen are rigid and their terms
            leave ``HarmonicBondForce``).

    Returns:
        ``System`` with ``NoCutoff`` and no ``CMMotionRemover``; particle i is atom i of
        ``topology``.

    Raises:
        BoltzgenError: For a bad ``constraints`` value or a residue the force field has no
            template for (names the residue and says what to do).
    """
    if constraints not in CONSTRAINTS:
        raise BoltzgenError(
            f"constraints must be one of {', '.join(CONSTRAINTS)}, got {constraints!r}"
        )
    try:
        return forcefield.createSystem(
            topology,
            nonbondedMethod=app.NoCutoff,
            constraints=CONSTRAINTS[constraints],
            rigidWater=False,
            removeCMMotion=False,
        )
    except ValueError as error:
        raise BoltzgenError(_template_message(error, topology)) from None


def minimize_positions(
    system: openmm.System,
    positions: np.ndarray,
    tolerance: float = 0.1,
    max_iterations: int = MINIMIZER_MAX_ITERATIONS,
    platform: str = "CPU",
    label: str = "the structure",
) -> np.ndarray:
    """Relax positions to a local energy minimum with OpenMM's ``LocalEnergyMinimizer``.

    Arguments:
        system: The ``System`` whose energy is minimized (constraints are honoured).
        positions: Start positions in nm, shape ``(n_atoms, 3)``.
        tolerance: Stop when the root-mean-square force is below this, in kJ/mol/nm.
        max_iterations: Iteration cap (default :data:`MINIMIZER_MAX_ITERATIONS`); 0 means until
            converged.
        platform: OpenMM platform; ``"Reference"`` is float64 but much slower with implicit
            solvent.
        label: What is minimized, for the progress bar and errors.

    Returns:
        Minimized positions in nm, float64, shape ``(n_atoms, 3)``.

    Raises:
        BoltzgenError: If the minimizer fails (e.g. NaN coordinates from overlapping atoms).
    """
    integrator = openmm.VerletIntegrator(0.001)
    context = openmm.Context(system, integrator, openmm.Platform.getPlatformByName(platform))
    context.setPositions(np.asarray(positions, dtype=np.float64) * unit.nanometer)
    if system.getNumConstraints() > 0:
        context.applyConstraints(1e-10)
    run_minimizer(context, tolerance, max_iterations, label)
    state = context.getState(getPositions=True)
    minimized = state.getPositions(asNumpy=True).value_in_unit(unit.nanometer)
    del context, integrator
    return np.asarray(minimized, dtype=np.float64)


class _ProgressReporter(openmm.MinimizationReporter):
    """Advances a progress bar by one per L-BFGS iteration (never stops the minimizer)."""

    def __init__(self, bar: tqdm) -> None:
        super().__init__()
        self._bar = bar

    def report(self, iteration: int, x: object, grad: object, args: object) -> bool:
        self._bar.update(iteration + 1 - self._bar.n)
        return False


def run_minimizer(
    context: openmm.Context, tolerance: float, max_iterations: int, label: str
) -> None:
    """``openmm.LocalEnergyMinimizer.minimize`` with a progress bar and one-line errors.

    The bar goes to stderr, only on a terminal and only once the minimization has run for a
    couple of seconds (iterations, rate and the cap).

    Arguments:
        context: A ``Context`` holding the start positions; minimized in place.
        tolerance: Root-mean-square force to stop at, kJ/mol/nm.
        max_iterations: Iteration cap (0: until converged).
        label: What is minimized, for the bar and the error message.

    Raises:
        BoltzgenError: If OpenMM fails (``OpenMMException``, e.g. "Particle coordinate is NaN").
    """
    bar = tqdm(
        total=max_iterations or None,
        desc=f"minimizing {label}",
        unit="it",
        disable=None,
        delay=_PROGRESS_DELAY_SECONDS,
        leave=False,
    )
    try:
        openmm.LocalEnergyMinimizer.minimize(
            context, tolerance, max_iterations, _ProgressReporter(bar)
        )
    except openmm.OpenMMException as error:
        raise BoltzgenError(
            f"OpenMM's energy minimizer failed on {label} ({one_line(error)}): check the "
            "structure for overlapping atoms or extreme coordinates"
        ) from None
    finally:
        bar.close()


def _template_message(error: ValueError, topology: app.Topology) -> str:
    """One line for OpenMM's "No template found for residue N (XXX)" and similar errors.

    OpenMM names the residue by its 0-based index in the topology; the message names it as the
    structure file does (name, residue number, chain).
    """
    match = _NO_TEMPLATE.search(str(error))
    if match is None:
        return f"OpenMM cannot parameterize the molecule: {one_line(error)}"
    residue = list(topology.residues())[int(match.group(1))]
    detail = re.sub(r"\s*For more information.*", "", " ".join(match.group(3).split()))
    hint = f" ({detail.rstrip('.')})" if detail else ""
    return (
        f"the force field has no template for residue {residue.name} {residue.id} (chain "
        f"{residue.chain.id}){hint}: add missing "
        "hydrogens (e.g. with pdbfixer or openmm.app.Modeller.addHydrogens) or pick a force "
        "field that has this residue"
    )


def one_line(error: BaseException) -> str:
    """The first line of an exception's message, for one-line user errors."""
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__

"""``boltzgen energy check``: the torch force field against OpenMM's Reference platform.

Compiles the molecule's System, evaluates minimised, MD-like (Langevin at 300-600 K) and strongly
perturbed configurations with both, and reports the largest relative energy and force errors
per OpenMM force class. Exit code 0 when every error is within tolerance, 1 when one is not, 2
(one-line error) when the System holds a force the torch force field does not support.
"""

from __future__ import annotations

import argparse

import numpy as np

from ..energy.forcefield.exactness import ExactnessReport, check_exactness, probe_configurations
from ..tensors import DTYPES
from .json_output import print_json
from .molecule_args import add_molecule_arguments, molecule_from_args
from .values import COUNT0, LENGTH_NM, SEED, TOLERANCE

__all__ = ["add_parser", "run_check", "format_report"]

CHECK_DESCRIPTION = """\
Compile the molecule's OpenMM System into the torch force field, evaluate minimised, MD-like
(Langevin at 300-600 K) and strongly perturbed configurations with both, and report the largest
relative energy and force errors per OpenMM force class. Exit code 0 when every error is within
tolerance, 1 when one is not, 2 (one line) when the System holds a force the torch force field
does not support."""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``boltzgen energy check``."""
    parser = subparsers.add_parser(
        "energy",
        help="check molecular energies",
        description="Check the torch force field against OpenMM's Reference platform.",
    )
    actions = parser.add_subparsers(
        dest="energy_action", metavar="ACTION", parser_class=type(parser), required=True
    )
    check = actions.add_parser(
        "check",
        help="compare the torch force field with OpenMM Reference, force by force",
        description=CHECK_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_molecule_arguments(check)
    check.add_argument(
        "--md-frames", type=COUNT0, default=4, help="MD frames between 300 and 600 K (default 4)"
    )
    check.add_argument(
        "--perturbation",
        type=LENGTH_NM,
        default=0.02,
        help="noise added to each frame, nm (default 0.02)",
    )
    check.add_argument(
        "--seed", type=SEED, default=0, help="seed of the MD and the noise (default 0)"
    )
    check.add_argument(
        "--dtype", choices=tuple(DTYPES), default="float64", help="torch dtype (default float64)"
    )
    check.add_argument(
        "--energy-tolerance",
        type=TOLERANCE,
        help="relative energy error allowed per force (default 1e-6 float64, 1e-3 float32)",
    )
    check.add_argument(
        "--force-tolerance",
        type=TOLERANCE,
        help="relative force error allowed per force (default 1e-5 float64, 1e-3 float32)",
    )
    check.add_argument("--json", action="store_true", help="print one JSON object")
    check.set_defaults(run=run_check)


def format_report(name: str, report: ExactnessReport) -> str:
    """A human-readable table of the per-force errors."""
    lines = [
        f"{name}: {report.n_configurations} configurations, torch {report.dtype} vs OpenMM "
        "Reference float64",
        f"{'force':<22} {'rel. energy error':>18} {'rel. force error':>17}",
    ]
    rows = [
        *report.terms.items(),
        ("worst force (checked)", report),
        ("(sum, not checked)", report.total),
    ]
    for force, errors in rows:
        lines.append(
            f"{force:<22} {errors.max_rel_energy_error:>18.2e} {errors.max_rel_force_error:>17.2e}"
        )
    verdict = "passed" if report.passed else "FAILED"
    lines.append(
        f"{verdict} (tolerances: energy {report.energy_tolerance:g}, force "
        f"{report.force_tolerance:g}, per force class; the sum of all forces is shown for "
        "information)"
    )
    return "\n".join(lines)


def run_check(args: argparse.Namespace) -> int:
    """Run the check; 0 if it passed, 1 if a tolerance is exceeded."""
    molecule = molecule_from_args(args)
    configurations = probe_configurations(
        molecule.system,
        np.asarray(molecule.positions),
        n_md=args.md_frames,
        perturbation=args.perturbation,
        seed=args.seed,
    )
    dtype = DTYPES[args.dtype]
    report = check_exactness(
        molecule.system, configurations, dtype, args.energy_tolerance, args.force_tolerance
    )
    if args.json:
        print_json(
            {
                "molecule": molecule.name,
                "n_atoms": molecule.system.getNumParticles(),
                **report.to_dict(),
            }
        )
    else:
        print(format_report(molecule.name, report))
    return 0 if report.passed else 1

"""``boltzgen bench energy`` and ``boltzgen bench md``: throughput against OpenMM in one run.

``bench energy`` measures OpenMM's CPU platform (one thread, one configuration per call), the
OpenMM
bridge with 1 and N worker processes, and the torch force field on CPU at the given batch sizes
in float32 and float64 (and on the GPU at batch 1e3..1e6 when CUDA is available), optionally
through ``torch.compile``. ``bench md`` measures replica-steps/s of batched Langevin MD on the
torch force field against OpenMM's LangevinMiddle integrator (CPU platform with one thread, and
CUDA when present). Both print a table or one JSON object, and can write the JSON to a file.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import torch

from ..energy.forcefield.benchmark import benchmark_molecule, format_table
from ..errors import BoltzgenError
from ..io import atomic_write_text
from .json_output import json_text
from .values import REPLICAS, SECONDS, THREADS, TIME_STEP_PS

__all__ = ["add_parser", "run_energy_benchmark", "run_md_benchmark"]

ENERGY_DESCRIPTION = """\
Energy and force evaluations per second: OpenMM's CPU platform (one thread, one configuration
per call), the OpenMM bridge with 1 and N worker processes, and the torch force field on the
CPU at the given batch sizes in float32 and float64, with its analytic pair derivatives (torch)
and with autograd throughout (torch-autograd); on the GPU at batch 1e3 to 1e6 when CUDA is
available; optionally through torch.compile. Prints a table, or one JSON object."""

MD_DESCRIPTION = """\
Replica-steps per second of batched Langevin MD on the torch force field against OpenMM's
LangevinMiddle integrator (CPU platform with one thread, and CUDA when present), in one run.
Prints a table, or one JSON object."""

#: Molecules benchmarked when none is named: vacuum and implicit-solvent alanine dipeptide.
DEFAULT_MOLECULES = ("alanine-dipeptide-vacuum", "alanine-dipeptide")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``boltzgen bench energy`` and ``boltzgen bench md``."""
    parser = subparsers.add_parser(
        "bench",
        help="benchmarks",
        description="Throughput benchmarks against OpenMM, measured in one run.",
    )
    actions = parser.add_subparsers(
        dest="bench_action", metavar="ACTION", parser_class=type(parser), required=True
    )
    energy = actions.add_parser(
        "energy",
        help="energy+force evaluations per second",
        description=ENERGY_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    energy.add_argument(
        "molecules",
        nargs="*",
        metavar="MOLECULE",
        help=f"catalog molecules (default: {' '.join(DEFAULT_MOLECULES)})",
    )
    energy.add_argument(
        "--batches",
        type=REPLICAS,
        nargs="+",
        default=[1024, 8192],
        help="torch CPU batch sizes (default 1024 8192)",
    )
    energy.add_argument(
        "--workers",
        type=THREADS,
        nargs="+",
        help="OpenMM bridge worker counts (default: 1 and the CPU count)",
    )
    _add_common_options(energy)
    energy.set_defaults(run=run_energy_benchmark)
    md = actions.add_parser(
        "md",
        help="batched MD replica-steps per second vs OpenMM's integrator",
        description=MD_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    md.add_argument(
        "molecules",
        nargs="*",
        metavar="MOLECULE",
        help=f"catalog molecules (default: {' '.join(DEFAULT_MOLECULES)})",
    )
    md.add_argument(
        "--replicas",
        type=REPLICAS,
        nargs="+",
        default=[64, 1024],
        help="replicas on the CPU (default 64 1024)",
    )
    md.add_argument(
        "--gpu-replicas",
        type=REPLICAS,
        nargs="+",
        default=[1_000, 10_000, 100_000],
        help="replicas on the GPU when CUDA is available (default 1000 10000 100000)",
    )
    md.add_argument(
        "--dt", type=TIME_STEP_PS, default=0.001, help="time step in ps (default 0.001)"
    )
    _add_common_options(md)
    md.set_defaults(run=run_md_benchmark)


def _add_common_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--seconds",
        type=SECONDS,
        default=2.0,
        help="minimum duration of each measurement (default 2)",
    )
    parser.add_argument(
        "--threads",
        type=THREADS,
        default=1,
        help="torch CPU threads (default 1, like OpenMM's one thread)",
    )
    parser.add_argument(
        "--compile",
        action="store_true",
        help="also measure torch.compile (compiles for minutes on a small CPU)",
    )
    parser.add_argument(
        "--json", action="store_true", help="print one JSON object instead of the table"
    )
    parser.add_argument("--json-out", type=Path, help="also write the JSON object to this file")


def run_energy_benchmark(args: argparse.Namespace) -> int:
    """Run the benchmark; returns 0."""
    from ..molecule.molecule import Molecule

    workers = tuple(args.workers) if args.workers else tuple(sorted({1, os.cpu_count() or 1}))
    if args.seconds <= 0 or args.threads < 1 or min(args.batches) < 1 or min(workers) < 1:
        raise BoltzgenError(
            "--seconds, --threads and every --batches and --workers value must be positive"
        )
    torch.set_num_threads(args.threads)
    rows = []
    for name in args.molecules or DEFAULT_MOLECULES:
        molecule = Molecule.from_catalog(name)
        rows += benchmark_molecule(
            molecule.name,
            molecule.system,
            np.asarray(molecule.positions),
            molecule.temperature,
            tuple(args.batches),
            workers,
            seconds=args.seconds,
            compiled=args.compile,
        )
    _report(args, rows, format_table(rows))
    return 0


def run_md_benchmark(args: argparse.Namespace) -> int:
    """Run the MD benchmark; returns 0."""
    from ..md.benchmark import benchmark_md
    from ..molecule.molecule import Molecule

    if (
        args.seconds <= 0
        or args.threads < 1
        or args.dt <= 0
        or min(args.replicas + args.gpu_replicas) < 1
    ):
        raise BoltzgenError(
            "--seconds, --threads, --dt and every --replicas and --gpu-replicas value must be "
            "positive"
        )
    torch.set_num_threads(args.threads)
    rows = []
    for name in args.molecules or DEFAULT_MOLECULES:
        molecule = Molecule.from_catalog(name)
        rows += benchmark_md(
            molecule,
            tuple(args.replicas),
            tuple(args.gpu_replicas),
            args.seconds,
            args.dt,
            args.compile,
        )
    _report(
        args,
        rows,
        format_table(
            rows,
            reference_backend="openmm-langevin",
            rate_label="replica-steps/s",
            batch_label="replicas",
        ),
    )
    return 0


def _report(args: argparse.Namespace, rows: list, table: str) -> None:
    """Print the table (or one JSON object) and write the JSON to ``--json-out`` if given."""
    result = {
        "torch_threads": args.threads,
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "cuda_device": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "measurements": [row.to_dict() for row in rows],
    }
    if args.json_out is not None:
        atomic_write_text(args.json_out, json_text(result) + "\n")
    print(json_text(result) if args.json else table)

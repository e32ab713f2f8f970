"""``boltzgen bench energy``: energy+force throughput of OpenMM and of the torch force field.

Measures, in one run, OpenMM's CPU platform (one thread, one configuration per call), the OpenMM
bridge with 1 and N worker processes, and the torch force field on CPU at the given batch sizes
in float32 and float64 (and on the GPU at batch 1e3..1e6 when CUDA is available), optionally
through ``torch.compile``; prints a table or one JSON object, and can write the JSON to a file.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np
import torch

from ..energy.forcefield.benchmark import benchmark_molecule, format_table
from ..errors import BoltzgenError

__all__ = ["add_parser", "run_energy_benchmark"]

#: Molecules benchmarked when none is named: vacuum and implicit-solvent alanine dipeptide.
DEFAULT_MOLECULES = ("alanine-dipeptide-vacuum", "alanine-dipeptide")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``boltzgen bench energy``."""
    parser = subparsers.add_parser("bench", help="benchmarks", description="Benchmarks.")
    actions = parser.add_subparsers(dest="bench_action", metavar="ACTION", parser_class=type(parser), required=True)
    energy = actions.add_parser(
        "energy", help="energy+force evaluations per second", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    energy.add_argument("molecules", nargs="*", metavar="MOLECULE", help=f"catalog molecules (default: {' '.join(DEFAULT_MOLECULES)})")
    energy.add_argument("--batches", type=int, nargs="+", default=[1024, 8192], help="torch CPU batch sizes (default 1024 8192)")
    energy.add_argument("--workers", type=int, nargs="+", help="OpenMM bridge worker counts (default: 1 and the CPU count)")
    energy.add_argument("--seconds", type=float, default=2.0, help="minimum duration of each measurement (default 2)")
    energy.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1, like OpenMM's one thread)")
    energy.add_argument("--compile", action="store_true", help="also measure torch.compile (compiles for minutes on a small CPU)")
    energy.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    energy.add_argument("--json-out", type=Path, help="also write the JSON object to this file")
    energy.set_defaults(run=run_energy_benchmark)


def run_energy_benchmark(args: argparse.Namespace) -> int:
    """Run the benchmark; returns 0."""
    from ..molecule import Molecule

    workers = tuple(args.workers) if args.workers else tuple(sorted({1, os.cpu_count() or 1}))
    if args.seconds <= 0 or args.threads < 1 or min(args.batches) < 1 or min(workers) < 1:
        raise BoltzgenError("--seconds, --threads and every --batches and --workers value must be positive")
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
    result = {
        "torch_threads": args.threads,
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "measurements": [row.to_dict() for row in rows],
    }
    if args.json_out is not None:
        args.json_out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result) if args.json else format_table(rows))
    return 0

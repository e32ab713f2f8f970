"""``boltzgen report RUN_DIR [--reference DATA] -o report.html``: a self-contained HTML report."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..diagnostics.report import write_report
from ..workflow.runs import exact_distribution_of_run

__all__ = ["add_parser"]


def run(args: argparse.Namespace) -> int:
    output = Path(args.output) if args.output else Path(args.run_dir) / "report.html"
    exact = exact_distribution_of_run(args.run_dir)
    print(f"wrote {write_report(args.run_dir, output, args.reference, exact)}")
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "report",
        help="write an HTML report of a run",
        description=(
            "Write one self-contained HTML page about a run: target, settings, metrics and all "
            "figures."
        ),
    )
    p.add_argument("run_dir", help="run directory written by 'boltzgen train'")
    p.add_argument(
        "--reference",
        help=(
            "reference MD data: a trajectory mdtraj reads (topology: the run's "
            "samples/samples.pdb) or an .npz with phi, psi (radians)"
        ),
    )
    p.add_argument("-o", "--output", help="HTML file to write (default RUN_DIR/report.html)")
    p.set_defaults(run=run)

"""``boltzgen plot RUN_DIR --kind KIND [--reference DATA] [-o FILE]``: one figure of a run."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..diagnostics.plots import save_figure
from ..diagnostics.report import (
    DISCRETE_KINDS,
    FIGURE_KINDS,
    load_reference,
    load_run_data,
    run_figure,
)
from ..workflow.runs import exact_distribution_of_run

__all__ = ["add_parser"]


def run(args: argparse.Namespace) -> int:
    data = load_run_data(args.run_dir)
    if args.kind in DISCRETE_KINDS:
        data.exact = exact_distribution_of_run(args.run_dir)
    reference = None
    if args.reference is not None:
        reference = load_reference(args.reference, data.run_dir / "samples" / "samples.pdb")
    figure, numbers = run_figure(data, args.kind, reference)
    output = Path(args.output) if args.output else data.run_dir / "plots" / f"{args.kind}.png"
    numbers_path = save_figure(figure, output, numbers)
    print(f"wrote {output} (numbers in {numbers_path})")
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "plot",
        help="draw one figure of a run",
        description=(
            "Draw one figure of a run directory; the numbers behind it go to an .npz beside the "
            "image."
        ),
    )
    p.add_argument("run_dir", help="run directory written by 'boltzgen train'")
    p.add_argument("--kind", required=True, choices=tuple(FIGURE_KINDS), help="which figure")
    p.add_argument(
        "--reference",
        help=(
            "reference MD data: a trajectory mdtraj reads (topology: the run's "
            "samples/samples.pdb) or an .npz with phi, psi (radians)"
        ),
    )
    p.add_argument(
        "-o", "--output", help="image file .png, .svg or .pdf (default RUN_DIR/plots/KIND.png)"
    )
    p.set_defaults(run=run)

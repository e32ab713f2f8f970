"""``boltzgen train CONFIG.toml``: train a model; resumes the run directory's checkpoint."""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

from ..parallel import launch_ranks, shutdown, world
from ..workflow.config import load_config
from ..workflow.registry import resolve_config
from ..workflow.runs import default_run_dir, train_run
from .json_output import print_json
from .values import PROCESSES

__all__ = ["add_parser", "add_run_options"]


def _show_warning(message: Warning | str, *_: object, **__: object) -> None:
    """Warnings during training (skipped steps, a checkpoint not written) as one stderr line."""
    print(f"boltzgen: warning: {message}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config, args.set)
    if args.nproc is not None:
        resolve_config(config)  # a bad config is reported once, before any rank starts
        return launch_ranks(args.nproc, _rank_command(args))
    run_dir = Path(args.output) if args.output else default_run_dir(args.config)
    try:
        with warnings.catch_warnings():  # restores the default display afterwards
            warnings.showwarning = _show_warning
            summary = train_run(config, run_dir, progress=not args.no_progress and not args.json)
        reports = world().is_main  # rank 0 of a torchrun launch reports
        shutdown(together=True)  # every rank finished: leave at once (then a no-op below)
        if not reports:
            return 0
    finally:
        shutdown()
    if args.json:
        print_json({"run_dir": str(run_dir), **summary})
        return 0
    print(f"run directory: {run_dir}")
    print(
        f"  ESS {summary['ess']:.4f} at T = {summary['sample_temperature']:g} from "
        f"{summary['n_samples']} samples; "
        f"{summary['energy_evaluations']} energy evaluations; {summary['wall_time_s']:.1f} s on "
        f"{summary['device']}"
    )
    print(f"  config:      {run_dir / 'config.toml'}")
    print(f"  metrics:     {run_dir / 'metrics.csv'}")
    print(f"  summary:     {run_dir / 'summary.json'}")
    print(f"  checkpoint:  {run_dir / 'checkpoints' / 'last.pt'}")
    for path in summary["samples"]:
        print(f"  samples:     {path}")
    if "ramachandran_plot" in summary:
        print(f"  Ramachandran plot: {summary['ramachandran_plot']}")
        basins = ", ".join(
            f"{name} {fraction:.1%}" for name, fraction in summary["basin_populations"].items()
        )
        print(f"  basin populations: {basins}")
    if "reweighted_basin_populations" in summary:
        print(
            f"  reweighted to {summary['sample_temperature']:g} K: {_reweighted_basins(summary)}"
        )
    return 0


def _reweighted_basins(summary: dict) -> str:
    """``C7eq/C5 86.10 +- 0.40% (MD 86.40 +- 0.90%), ...``: the reweighted basin populations,
    beside the MD reference's where the summary has them."""
    md = summary.get("md_reference_basin_populations", {})
    md_se = summary.get("md_reference_basin_se", {})
    se = summary["reweighted_basin_se"]
    parts = []
    for name, fraction in summary["reweighted_basin_populations"].items():
        part = f"{name} {100 * fraction:.2f} +- {100 * se[name]:.2f}%"
        if name in md:
            part += f" (MD {100 * md[name]:.2f} +- {100 * md_se[name]:.2f}%)"
        parts.append(part)
    return ", ".join(parts)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train",
        help="train a model from a config file",
        description="Train a model from a TOML config (see 'boltzgen init --list').",
    )
    p.add_argument("config", help="config file (TOML)")
    add_run_options(p, "trainer.steps=500")
    p.add_argument(
        "--nproc",
        type=PROCESSES,
        metavar="K",
        help="train data parallel on K processes of this machine (launches torchrun; the "
        "global batch is the config's)",
    )
    p.set_defaults(run=run)


def add_run_options(p: argparse.ArgumentParser, example: str) -> None:
    """The options of a command that trains a run directory: ``--set`` (``example`` in its
    help), ``-o``, ``--no-progress``, ``--json``."""
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"override a config value, e.g. {example} (repeatable)",
    )
    p.add_argument("-o", "--output", help="run directory (default: runs/<config stem>)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")


def _rank_command(args: argparse.Namespace) -> list[str]:
    """The ``boltzgen train ...`` command each rank of a ``--nproc`` launch runs."""
    command = ["train", args.config, *(f"--set={value}" for value in args.set)]
    if args.output:
        command.append(f"--output={args.output}")
    return command + [
        flag for flag, on in (("--no-progress", args.no_progress), ("--json", args.json)) if on
    ]

"""``boltzgen reference MOLECULE``: generate (or reuse) a train/val/test MD reference dataset."""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

from ..errors import BoltzgenError
from ..md import MDRun
from ..md.datasets import read_metadata, write_reference
from ..parallel import read_on_rank_zero, world
from .json_output import print_json
from .md import add_md_arguments, on_ranks, simulation_from_args
from .molecule_args import add_molecule_arguments, molecule_from_args
from .values import COUNT, COUNT0

__all__ = ["add_parser"]


def _default_folder(name: str, settings: dict[str, Any]) -> Path:
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:10]
    return Path("reference") / f"{name}-{digest}"


def run(args: argparse.Namespace) -> int:
    return on_ranks(_reference, args)


def _reference(args: argparse.Namespace) -> int:
    if args.frames < 10 or args.equilibration < 0:
        raise BoltzgenError("--frames must be at least 10 and --equilibration non-negative")
    molecule = molecule_from_args(args)
    simulation, settings = simulation_from_args(args, molecule)
    if args.equilibration % args.report_every:
        raise BoltzgenError(
            f"--equilibration ({args.equilibration}) must be a multiple of --report-every "
            f"({args.report_every})"
        )
    reports = -(-args.frames // simulation.n_chains)
    settings |= {"frames_requested": args.frames, "equilibration_steps": args.equilibration}
    folder = Path(args.output) if args.output else _default_folder(molecule.name, settings)
    existing = read_on_rank_zero(lambda: read_metadata(folder))
    if existing is not None:
        if existing.get("settings") != json.loads(json.dumps(settings)):
            raise BoltzgenError(
                f"{folder} holds a reference dataset made with other settings: use another -o "
                "folder"
            )
        result = existing | {"directory": str(folder), "reused": True}
    else:
        md_run = MDRun(folder / "md", settings)
        md_run.resume_or_start(simulation, molecule.positions)
        md_run.run(
            simulation,
            args.equilibration + reports * args.report_every,
            args.report_every,
            args.checkpoint_every,
            progress=not args.no_progress,
        )
        if not world().is_main:  # rank 0 writes the dataset and reports
            return 0
        frames = md_run.frames()
        production = frames["step"] > args.equilibration
        metadata = {
            "molecule": molecule.describe(),
            "temperature_K": molecule.temperature,
            "settings": settings,
            "seed": args.seed,
            "exchange_acceptance": simulation.exchange.acceptance_rates().cpu().tolist(),
            "md_wall_time_s": md_run.wall_time_s,
        }
        result = write_reference(
            folder,
            molecule.mdtraj_topology(),
            frames["positions"][production],
            frames["reduced_energies"][production],
            frames["step"][production],
            metadata,
            args.report_every * args.dt,
        )
        shutil.rmtree(folder / "md")
        result |= {"directory": str(folder), "reused": False}
    if not world().is_main:
        return 0
    if args.json:
        print_json(result)
    else:
        print(
            f"{'reusing the existing' if result['reused'] else 'wrote the'} reference dataset "
            f"{folder} "
            f"({', '.join(f'{k} {v}' for k, v in result['frames'].items())} frames at "
            f"{result['temperature_K']:g} K)"
        )
        print(
            f"  decorrelation time {result['tau_frames']:.1f} frames ({result['tau_ps']:.3g} ps), "
            f"effective frames {result['effective_frames']:.0f}"
        )
        for basin, fraction in result.get("basin_populations", {}).items():
            print(f"  {basin}: {fraction:.4f}")
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "reference",
        help="generate or reuse a train/val/test MD reference dataset",
        description=(
            "Run replica-exchange MD at the molecule's temperature and store "
            "decorrelation-checked train/val/test splits (positions, backbone dihedrals, reduced "
            "energies) with metadata; rerunning with the same settings reuses the dataset."
        ),
    )
    add_molecule_arguments(p)
    p.add_argument(
        "--frames",
        type=COUNT,
        default=100000,
        help="frames at the target temperature in all splits (default 100000)",
    )
    p.add_argument(
        "--equilibration",
        type=COUNT0,
        default=10000,
        help="MD steps discarded first (default 10000)",
    )
    add_md_arguments(p, replicas=64)
    p.add_argument(
        "-o", "--output", help="dataset folder (default: reference/NAME-HASH of the settings)"
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(run=run)

"""``boltzgen md MOLECULE``: batched (replica-exchange) Langevin MD on the torch force field."""

from __future__ import annotations

import argparse
import csv
import io
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BoltzgenError
from ..io import atomic_write_text, write_json
from ..md import MDRun, ReplicaExchangeMD
from ..molecule.molecule import Molecule
from ..molecule.trajectories import write_trajectory
from ..parallel import init_from_environment, launch_ranks, shutdown, without_option, world
from ..samplers.ladders import geometric_ladder
from ..tensors import DTYPES, select_device
from .json_output import print_json
from .molecule_args import add_molecule_arguments, molecule_from_args
from .values import COUNT, FRICTION, PROCESSES, REPLICAS, SEED, TEMPERATURE, TIME_STEP_PS

__all__ = ["add_parser", "add_md_arguments", "simulation_from_args", "on_ranks"]


def add_md_arguments(parser: argparse.ArgumentParser, replicas: int) -> None:
    """The MD options shared by ``md`` and ``reference`` (the target temperature is
    ``--temperature``)."""
    group = parser.add_argument_group("MD options")
    group.add_argument(
        "--replicas",
        type=REPLICAS,
        default=replicas,
        help=f"replicas in all, a multiple of --rungs (default {replicas})",
    )
    group.add_argument(
        "--t-max",
        type=TEMPERATURE,
        metavar="K",
        help="highest temperature of a geometric replica-exchange ladder (default: no ladder)",
    )
    group.add_argument(
        "--rungs", type=COUNT, help="temperatures in the ladder (default 8 with --t-max, else 1)"
    )
    group.add_argument(
        "--dt", type=TIME_STEP_PS, default=0.001, help="time step in ps (default 0.001)"
    )
    group.add_argument(
        "--friction", type=FRICTION, default=1.0, help="Langevin friction in 1/ps (default 1.0)"
    )
    group.add_argument(
        "--exchange-every",
        type=COUNT,
        default=10,
        help="steps between exchange attempts (default 10)",
    )
    group.add_argument(
        "--report-every",
        type=COUNT,
        default=100,
        help="steps between recorded frames (default 100)",
    )
    group.add_argument(
        "--checkpoint-every",
        type=COUNT,
        default=10000,
        help="steps between checkpoints (default 10000)",
    )
    group.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:K (default auto)")
    group.add_argument(
        "--dtype", choices=tuple(DTYPES), default="float32", help="precision (default float32)"
    )
    group.add_argument("--seed", type=SEED, default=0, help="random seed (default 0)")
    group.add_argument(
        "--compile",
        action="store_true",
        help=(
            "evaluate the force field through torch.compile (about 2x faster; compiles for a "
            "minute first)"
        ),
    )
    group.add_argument("--no-progress", action="store_true", help="no progress bar")
    group.add_argument(
        "--nproc",
        type=PROCESSES,
        metavar="K",
        help="spread the replicas over K processes of this machine (launches torchrun; "
        "--replicas must be a multiple of K; the run is the one a single process makes)",
    )


def simulation_from_args(
    args: argparse.Namespace, molecule: Molecule
) -> tuple[ReplicaExchangeMD, dict[str, Any]]:
    """The run the options describe, and its settings (JSON-able, what makes two runs the same)."""
    rungs = args.rungs if args.rungs is not None else (8 if args.t_max is not None else 1)
    t_max = args.t_max if args.t_max is not None else molecule.temperature
    if rungs < 1 or (rungs > 1 and not t_max > molecule.temperature):
        raise BoltzgenError(
            f"a ladder of {rungs} rungs needs --t-max above the target temperature "
            f"{molecule.temperature:g} K"
        )
    if rungs == 1 and args.t_max is not None and args.t_max != molecule.temperature:
        raise BoltzgenError("--t-max needs --rungs of at least 2")
    if args.replicas < rungs or args.replicas % rungs:
        raise BoltzgenError(
            f"--replicas ({args.replicas}) must be a positive multiple of the {rungs} rungs"
        )
    for name in ("report_every", "exchange_every", "checkpoint_every"):
        if getattr(args, name) < 1:
            raise BoltzgenError(f"--{name.replace('_', '-')} must be at least 1")
    ladder = geometric_ladder(molecule.temperature, t_max, rungs)
    ranks, device = init_from_environment(select_device(args.device))
    if args.replicas % ranks.size:
        raise BoltzgenError(
            f"--replicas ({args.replicas}) must be a multiple of the {ranks.size} processes"
        )
    simulation = ReplicaExchangeMD.for_molecule(
        molecule,
        ladder,
        args.replicas // rungs,
        energy="torch-compile" if args.compile else "torch",
        timestep=args.dt,
        friction=args.friction,
        exchange_every=args.exchange_every,
        seed=args.seed,
        device=device,
        dtype=DTYPES[args.dtype],
    )
    settings = {
        "molecule": molecule.describe(),
        "integrator": "LangevinMiddle (V R O R), SHAKE/RATTLE constraints"
        if molecule.n_constraints
        else "LangevinMiddle (V R O R)",
        "temperatures_K": ladder,
        "chains_per_temperature": args.replicas // rungs,
        "timestep_ps": args.dt,
        "friction_per_ps": args.friction,
        "exchange_every": args.exchange_every,
        "report_every": args.report_every,
        "dtype": args.dtype,
        "seed": args.seed,
    }
    return simulation, settings


def summary(
    run: MDRun, simulation: ReplicaExchangeMD, frames: dict[str, np.ndarray], resumed: bool
) -> dict[str, Any]:
    """JSON-able summary of a run: per-rung kinetic temperature (with its standard error) and
    <U> over the last half of the frames (the first half counts as equilibration), exchange
    rates, speed, and warnings in words where a rung's kinetic temperature is off its set
    point by more than 4 standard errors and 1% (the run is too short to judge)."""
    k, c = len(simulation.temperatures), simulation.n_chains
    kinetic_all = frames["kinetic_temperatures"].reshape(-1, k, c)
    kept = kinetic_all.shape[0] - kinetic_all.shape[0] // 2
    kinetic = kinetic_all[-kept:]
    potential = frames["potential_energies"].reshape(-1, k, c)[-kept:]
    chain_means = kinetic.mean(0)  # (k, c)
    if c > 1:
        kinetic_se = chain_means.std(1, ddof=1) / np.sqrt(c)
    else:  # one chain: the spread of the frames, an optimistic error (frames are correlated)
        kinetic_se = kinetic.std((0, 2), ddof=1) / np.sqrt(max(kept - 1, 1))
    warnings = []
    for t, mean, se in zip(simulation.temperatures, kinetic.mean((0, 2)), kinetic_se):
        if abs(mean - t) > 4 * se + 0.01 * t:
            warnings.append(
                f"at T = {t:g} K the kinetic temperature is {mean:.1f} +- {se:.1f} K over the "
                "last half of the frames: not yet equilibrated; run more steps (a rerun with "
                "a larger --steps continues)"
            )
    rates = simulation.exchange.acceptance_rates().cpu().numpy()
    steps = simulation.step
    return {
        "directory": str(run.directory),
        "resumed": resumed,
        "steps": steps,
        "replicas": k * c,
        "temperatures_K": simulation.temperatures,
        "n_dof": simulation.integrator.n_dof,
        "statistics_over": f"the last {kept} of {kinetic_all.shape[0]} reports (the rest is "
        "equilibration)",
        "kinetic_temperature_K": kinetic.mean((0, 2)).tolist(),
        "kinetic_temperature_se_K": kinetic_se.tolist(),
        "mean_potential_energy_kJ_mol": potential.mean((0, 2)).tolist(),
        "exchange_acceptance": [None if np.isnan(r) else float(r) for r in rates],
        "frames": int(frames["positions"].shape[0] * c),
        "wall_time_s": run.wall_time_s,
        "steps_per_s": steps / run.wall_time_s if run.wall_time_s > 0 else None,
        "replica_steps_per_s": steps * k * c / run.wall_time_s if run.wall_time_s > 0 else None,
        "warnings": warnings,
    }


def _energy_log(
    frames: dict[str, np.ndarray], temperatures: list[float], n_chains: int, timestep: float
) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(
        [
            "step",
            "time_ps",
            "temperature_K",
            "mean_potential_energy_kJ_mol",
            "mean_kinetic_temperature_K",
        ]
    )
    potential = (
        frames["potential_energies"]
        .reshape(len(frames["step"]), len(temperatures), n_chains)
        .mean(-1)
    )
    kinetic = frames["kinetic_temperatures"].reshape(potential.shape + (n_chains,)).mean(-1)
    for row, step in enumerate(frames["step"]):
        for rung, temperature in enumerate(temperatures):
            writer.writerow(
                [
                    int(step),
                    f"{step * timestep:.6g}",
                    f"{temperature:.6g}",
                    f"{potential[row, rung]:.6f}",
                    f"{kinetic[row, rung]:.4f}",
                ]
            )
    return buffer.getvalue()


def on_ranks(command: Any, args: argparse.Namespace) -> int:
    """Run ``command(args)`` as this rank of a torchrun launch (or alone), leaving the process
    group afterwards; with ``--nproc K``, launch K ranks that run the same command line
    instead."""
    if args.nproc is not None:
        if args.replicas % args.nproc:  # said once, before any rank starts
            raise BoltzgenError(
                f"--replicas ({args.replicas}) must be a multiple of --nproc ({args.nproc})"
            )
        return launch_ranks(args.nproc, without_option(args.command_line, "--nproc"))
    try:
        return command(args)
    finally:
        shutdown()


def run(args: argparse.Namespace) -> int:
    return on_ranks(_md, args)


def _md(args: argparse.Namespace) -> int:
    if args.steps < 1 or args.steps % args.report_every:
        raise BoltzgenError(
            f"--steps ({args.steps}) must be a positive multiple of --report-every "
            f"({args.report_every})"
        )
    molecule = molecule_from_args(args)
    simulation, settings = simulation_from_args(args, molecule)
    md_run = MDRun(args.output, settings)
    resumed = md_run.resume_or_start(simulation, molecule.positions)
    if resumed and simulation.step > args.steps:
        raise BoltzgenError(
            f"{args.output} is already at step {simulation.step}, beyond --steps {args.steps}: "
            "ask for more steps or use another folder"
        )
    md_run.run(
        simulation,
        args.steps,
        args.report_every,
        args.checkpoint_every,
        progress=not args.no_progress,
    )
    if not world().is_main:  # rank 0 writes and reports
        return 0
    frames = md_run.frames()
    out = Path(args.output)
    positions = frames["positions"].reshape(-1, molecule.n_atoms, 3)
    write_trajectory(
        out / "trajectory",
        positions,
        molecule.topology,
        reduced_energies=frames["reduced_energies"].reshape(-1),
        temperature=molecule.temperature,
    )
    atomic_write_text(
        out / "energies.csv",
        _energy_log(frames, simulation.temperatures, simulation.n_chains, args.dt),
    )
    result = summary(md_run, simulation, frames, resumed)
    write_json(out / "summary.json", result)
    if args.json:
        print_json(result)
    else:
        print(
            f"{'resumed' if resumed else 'ran'} {result['steps']} steps of {result['replicas']} "
            "replicas "
            f"({result['replica_steps_per_s'] or 0:.0f} replica-steps/s); {result['frames']} "
            "frames at "
            f"{molecule.temperature:g} K in {out / 'trajectory.h5'}"
        )
        print(f"  over {result['statistics_over']}:")
        for t, tk, se, u in zip(
            result["temperatures_K"],
            result["kinetic_temperature_K"],
            result["kinetic_temperature_se_K"],
            result["mean_potential_energy_kJ_mol"],
        ):
            print(f"  T = {t:8.2f} K: kinetic T {tk:8.2f} +- {se:.2f} K, <U> {u:10.3f} kJ/mol")
        if result["exchange_acceptance"]:
            print(
                "  exchange acceptance: "
                + ", ".join(
                    f"{r:.2f}" if r is not None else "-" for r in result["exchange_acceptance"]
                )
            )
        for warning in result["warnings"]:
            print(f"  warning: {warning}")
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "md",
        help="batched (replica-exchange) Langevin MD on the torch force field",
        description=(
            "Langevin MD (OpenMM's LangevinMiddle scheme) of many replicas at once, optionally "
            "on a geometric replica-exchange temperature ladder; checkpoints and resumes in the "
            "output folder."
        ),
    )
    add_molecule_arguments(p)
    p.add_argument(
        "--steps",
        type=COUNT,
        required=True,
        help="total MD steps (a rerun with more steps continues)",
    )
    add_md_arguments(p, replicas=64)
    p.add_argument("-o", "--output", required=True, help="output folder")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(run=run)

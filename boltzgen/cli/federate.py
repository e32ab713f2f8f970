"""``boltzgen federate CONFIG.toml --clients K``: a federated run, one client per process.

The config's ``[trainer]`` is ``name = "federated"`` (:mod:`boltzgen.federated.rounds`);
``--clients K`` sets its ``clients`` and launches K ``torchrun`` ranks of ``boltzgen train`` (one
client each), or with ``--simulate`` runs all K clients in this process, which gives the same
run. Everything else is ``boltzgen train``'s: the run directory, resume, the summary.
"""

from __future__ import annotations

import argparse

from ..errors import BoltzgenError
from ..parallel import MAX_PROCESSES
from ..workflow.config import load_config
from . import train
from .values import COUNT

__all__ = ["add_parser"]


def run(args: argparse.Namespace) -> int:
    overrides = [*args.set, f"trainer.clients={args.clients}"]
    trainer = load_config(args.config, overrides).get("trainer", {})
    if trainer.get("name") != "federated":
        raise BoltzgenError(
            f'{args.config}: [trainer] name is {trainer.get("name")!r}, not "federated"; '
            "start from 'boltzgen init federate-ising'"
        )
    if not args.simulate and args.clients > MAX_PROCESSES:
        raise BoltzgenError(
            f"--clients {args.clients} would start more than {MAX_PROCESSES} processes: add "
            "--simulate to run the clients in one process"
        )
    settings = vars(args) | {"set": overrides, "nproc": None if args.simulate else args.clients}
    return train.run(argparse.Namespace(**settings))


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "federate",
        help="federated learning over domains, one client per process",
        description="Run a federated config (boltzgen init federate-ising): K clients, each a "
        "torchrun process of this machine, or all in this process with --simulate.",
    )
    p.add_argument("config", help="config file (TOML) with [trainer] name = 'federated'")
    p.add_argument("--clients", type=COUNT, required=True, metavar="K", help="number of clients")
    p.add_argument("--simulate", action="store_true", help="run the K clients in this one process")
    train.add_run_options(p, "trainer.rounds=10")
    p.set_defaults(run=run)

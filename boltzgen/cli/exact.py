"""``boltzgen exact``: exact log Z and free energy per spin of a discrete target.

    boltzgen exact ising --L 16 --beta 0.4406868 [--J 1] [--h 0] [--json]
    boltzgen exact curie-weiss --n 20 --beta 1.5 [--h 0] [--json]
    boltzgen exact sk --n 20 --seed 0 --beta 1.0 [--json]
    boltzgen exact ea --L 4 --seed 0 --beta 1.0 [--json]

Ising at zero field uses Kaufman's formula (any L), Curie-Weiss the sum over magnetisations
(any N); Ising in a field, SK and Edwards-Anderson enumerate all 2**N states (N <= 24).
The JSON object has ``model``, ``n_spins``, ``beta``, ``log_z``, ``free_energy_per_spin``
(= -log Z / (beta N)) and ``method``.
"""

from __future__ import annotations

import argparse
import json
import math

from ..energy.exact import MAX_ENUMERATION_UNITS
from ..energy.lattice import (
    CurieWeiss,
    EdwardsAnderson2D,
    IsingModel2D,
    PairwiseSpinEnergy,
    SherringtonKirkpatrick,
)
from ..errors import BoltzgenError

__all__ = ["add_parser", "run"]


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``boltzgen exact`` and its four model sub-commands."""
    parser = subparsers.add_parser(
        "exact", help="exact log Z and free energy per spin of a lattice/spin model"
    )
    models = parser.add_subparsers(
        dest="model", metavar="MODEL", required=True, parser_class=type(parser)
    )
    specs = {
        "ising": (
            "periodic L x L Ising model (Kaufman at h = 0)",
            [("--L", int), ("--J", float, 1.0), ("--h", float, 0.0)],
        ),
        "curie-weiss": (
            "Curie-Weiss model E = -(sum s)^2/(2N)",
            [("--n", int), ("--h", float, 0.0)],
        ),
        "sk": (
            "Sherrington-Kirkpatrick spin glass (enumeration)",
            [("--n", int), ("--seed", int, 0)],
        ),
        "ea": (
            "2-D Edwards-Anderson +-J spin glass (enumeration)",
            [("--L", int), ("--seed", int, 0)],
        ),
    }
    for name, (help_text, options) in specs.items():
        sub = models.add_parser(name, help=help_text)
        for flag, kind, *default in options:
            sub.add_argument(
                flag, type=kind, required=not default, default=default[0] if default else None
            )
        sub.add_argument(
            "--beta", type=float, required=True, help="inverse temperature (units of 1/J)"
        )
        sub.add_argument("--json", action="store_true", help="print one JSON object")
        sub.set_defaults(run=run)


def _build(args: argparse.Namespace) -> PairwiseSpinEnergy:
    if not (math.isfinite(args.beta) and args.beta > 0):
        raise BoltzgenError(f"--beta must be a positive number, got {args.beta}")
    size = args.L * args.L if hasattr(args, "L") else args.n
    needs_enumeration = args.model in ("sk", "ea")
    if needs_enumeration and size > MAX_ENUMERATION_UNITS:
        raise BoltzgenError(
            f"exact {args.model} enumerates 2**N states and allows N <= {MAX_ENUMERATION_UNITS}, "
            f"got N={size}"
        )
    if size > 100_000:
        raise BoltzgenError(f"N={size} spins is too many for this command; use N <= 100000")
    if args.model == "ising":
        return IsingModel2D(args.L, args.beta, args.J, args.h)
    if args.model == "curie-weiss":
        return CurieWeiss(args.n, args.beta, args.h)
    if args.model == "sk":
        return SherringtonKirkpatrick(args.n, args.beta, args.seed)
    return EdwardsAnderson2D(args.L, args.beta, args.seed)


def run(args: argparse.Namespace) -> int:
    """Compute and print log Z and -log Z / (beta N)."""
    model = _build(args)
    log_z = model.log_z
    if log_z is None:
        raise BoltzgenError(
            f"log Z of this {args.model} model is not known: a field rules out the closed form "
            f"and N = {model.n_spins} spins is too many to enumerate (N <= 24)"
        )
    result = {
        "model": args.model,
        "n_spins": model.n_spins,
        "beta": model.beta,
        "log_z": log_z,
        "free_energy_per_spin": -log_z / (model.beta * model.n_spins),
        "method": model.log_z_method,
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"{args.model}: N = {model.n_spins}, beta = {model.beta:g}, method = "
            f"{result['method']}"
        )
        print(f"  log Z                 = {log_z:.12f}")
        print(f"  free energy per spin  = {result['free_energy_per_spin']:.10f}")
    return 0

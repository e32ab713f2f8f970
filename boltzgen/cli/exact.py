"""``boltzgen exact``: exact log Z and free energy per spin of a discrete target.

    boltzgen exact ising --L 16 --beta 0.4406868 [--J 1] [--h 0] [--json]
    boltzgen exact curie-weiss --n 20 --beta 1.5 [--h 0] [--json]
    boltzgen exact sk --n 20 --seed 0 --beta 1.0 [--json]
    boltzgen exact edwards-anderson --L 4 --seed 0 --beta 1.0 [--json]   (alias: ea)

The models and their options are the spin targets of the config registry and their ``[target]``
keys, with the same names and defaults.

Ising at zero field uses Kaufman's formula (any L), Curie-Weiss the sum over magnetisations
(any N); Ising in a field, SK and Edwards-Anderson enumerate all 2**N states (N <= 24).
The JSON object has ``model``, ``n_spins``, ``beta``, ``log_z``, ``free_energy_per_spin``
(= -log Z / (beta N)) and ``method``.
"""

from __future__ import annotations

import argparse
import math

from ..energy.exact import MAX_ENUMERATION_UNITS
from ..energy.lattice import PairwiseSpinEnergy
from ..errors import BoltzgenError
from ..workflow.ranges import key_range
from ..workflow.registry import TARGETS, describe, schema
from .help_text import key_help
from .json_output import print_json
from .values import number

__all__ = ["add_parser", "run"]

#: The spin targets of the config registry this command knows, with their old short aliases.
SPIN_TARGETS = {"ising": [], "curie-weiss": [], "sk": [], "edwards-anderson": ["ea"]}
_TYPES = {"int": int, "float": float}


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``boltzgen exact`` and one sub-command per spin target of the registry; the
    options and their defaults are the ``[target]`` keys of that target."""
    parser = subparsers.add_parser(
        "exact", help="exact log Z and free energy per spin of a lattice/spin model"
    )
    models = parser.add_subparsers(
        dest="model", metavar="MODEL", required=True, parser_class=type(parser)
    )
    for name, aliases in SPIN_TARGETS.items():
        summary = (TARGETS[name].__doc__ or name).strip().splitlines()[0]
        sub = models.add_parser(name, aliases=aliases, help=summary)
        descriptions = describe("target", name)
        for key, (default, annotation) in schema("target", name).items():
            range_ = key_range("target", name, key)
            kind = _TYPES[annotation.split("|")[0].strip()]
            sub.add_argument(
                f"--{key}",
                type=number(range_) if range_ is not None else kind,
                default=default,
                help=key_help(descriptions.get(key), default, range_ and range_.text()),
            )
        sub.add_argument("--json", action="store_true", help="print one JSON object")
        sub.set_defaults(run=run, target=name)


def _build(args: argparse.Namespace) -> PairwiseSpinEnergy:
    if not (math.isfinite(args.beta) and args.beta > 0):
        raise BoltzgenError(f"--beta must be a positive number, got {args.beta}")
    values = {key: getattr(args, key) for key in schema("target", args.target)}
    size = values["L"] ** 2 if "L" in values else values["n"]
    needs_enumeration = args.target in ("sk", "edwards-anderson")
    if needs_enumeration and size > MAX_ENUMERATION_UNITS:
        raise BoltzgenError(
            f"exact {args.model} enumerates 2**N states and allows N <= {MAX_ENUMERATION_UNITS}, "
            f"got N={size}"
        )
    if size > 100_000:
        raise BoltzgenError(f"N={size} spins is too many for this command; use N <= 100000")
    return TARGETS[args.target](**values)


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
        print_json(result)
    else:
        print(
            f"{args.model}: N = {model.n_spins}, beta = {model.beta:g}, method = "
            f"{result['method']}"
        )
        print(f"  log Z                 = {log_z:.12f}")
        print(f"  free energy per spin  = {result['free_energy_per_spin']:.10f}")
    return 0

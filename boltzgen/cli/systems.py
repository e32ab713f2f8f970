"""``boltzgen systems list|show``: the molecule catalog and what a molecule spec resolves to."""

from __future__ import annotations

import argparse

from ..molecule.molecule import Molecule
from .json_output import print_json
from .molecule_args import add_molecule_arguments, molecule_from_args

__all__ = ["add_parser"]


def run_list(args: argparse.Namespace) -> int:
    """Print the catalog: one line per system, or one JSON object with ``--json``."""
    systems = [Molecule.from_catalog(name).describe() for name in Molecule.catalog_names()]
    if args.json:
        print_json({"systems": systems})
        return 0
    for system in systems:
        files = " + ".join(system["forcefield"] + system["solvent"])
        print(
            f"{system['name']:26s} {system['n_atoms']:4d} atoms  {files:36s} "
            f"{system['description']}"
        )
    return 0


def run_show(args: argparse.Namespace) -> int:
    """Describe one molecule (catalog name, PDB or sequence) as text or one JSON object."""
    description = molecule_from_args(args).describe()
    if args.json:
        print_json(description)
        return 0
    for key, value in description.items():
        shown = ", ".join(map(str, value)) if isinstance(value, list) else value
        print(f"{key:14s} {shown}")
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``systems list`` and ``systems show``."""
    parser = subparsers.add_parser(
        "systems",
        help="list the built-in molecules or describe one",
        description="The molecule catalog and molecule definitions.",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", parser_class=type(parser))
    listing = actions.add_parser("list", help="list the built-in systems")
    listing.add_argument("--json", action="store_true", help="print one JSON object")
    listing.set_defaults(run=run_list)
    show = actions.add_parser(
        "show", help="describe a molecule: atoms, degrees of freedom, model files"
    )
    add_molecule_arguments(show)
    show.add_argument("--json", action="store_true", help="print one JSON object")
    show.set_defaults(run=run_show)

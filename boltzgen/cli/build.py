"""``boltzgen build SEQUENCE -o FILE.pdb``: a capped, minimized peptide as a PDB file."""

from __future__ import annotations

import argparse

from ..molecule.molecule import Molecule
from .json_output import print_json
from .molecule_args import add_model_options, model_overrides

__all__ = ["add_parser"]


def run(args: argparse.Namespace) -> int:
    """Build ACE-SEQUENCE-NME, minimize it in its force field and solvent, write the PDB."""
    molecule = Molecule.from_sequence(
        args.sequence, minimize=not args.no_minimize, **model_overrides(args)
    )
    molecule.write_pdb(args.output)
    summary = {"output": str(args.output), **molecule.describe()}
    if args.json:
        print_json(summary)
    else:
        print(
            f"wrote {args.output}: {molecule.name}, {molecule.n_atoms} atoms, "
            f"{molecule.n_residues} residues"
        )
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``build``."""
    parser = subparsers.add_parser(
        "build",
        help="build a capped peptide ACE-SEQUENCE-NME as a PDB file",
        description="Build ACE-SEQUENCE-NME from one-letter codes, add hydrogens, minimize it.",
    )
    parser.add_argument(
        "sequence", metavar="SEQUENCE", help="one-letter amino-acid codes, e.g. AAA"
    )
    add_model_options(parser)
    parser.add_argument(
        "-o", "--output", required=True, metavar="FILE.pdb", help="PDB file to write"
    )
    parser.add_argument("--no-minimize", action="store_true", help="skip the energy minimization")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(run=run)

"""Command-line options of every command that takes a molecule (``MOLECULE`` and overrides).

A molecule is named by a catalog name (``alanine-dipeptide``), a PDB path (``my.pdb``) or a
peptide sequence (``seq:AAA``); ``--forcefield``, ``--solvent``, ``--constraints`` and
``--temperature`` override the catalog's values or the defaults
(:mod:`boltzgen.molecule.spec`).
"""

from __future__ import annotations

import argparse
from typing import Any

from ..molecule.molecule import DEFAULT_FORCEFIELD, Molecule
from ..molecule.openmm_setup import CONSTRAINTS
from ..molecule.spec import OPTION_KEYS, molecule_from_spec, spec_from_text
from .values import TEMPERATURE

__all__ = ["add_molecule_arguments", "add_model_options", "model_overrides", "molecule_from_args"]


def add_molecule_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the positional ``MOLECULE`` and the model options to ``parser``."""
    parser.add_argument(
        "molecule",
        metavar="MOLECULE",
        help=(
            "catalog name (see 'boltzgen systems list'), a PDB file, or seq:AAA for a capped "
            "peptide"
        ),
    )
    add_model_options(parser)


def add_model_options(parser: argparse.ArgumentParser) -> None:
    """Add ``--forcefield``, ``--solvent``, ``--constraints``, ``--temperature`` to ``parser``."""
    group = parser.add_argument_group("molecule options (override the catalog's values)")
    group.add_argument(
        "--forcefield",
        nargs="+",
        metavar="F",
        help=f"force-field XML files (default for PDB/sequence: {' '.join(DEFAULT_FORCEFIELD)})",
    )
    group.add_argument(
        "--solvent",
        metavar="S",
        help="vacuum, obc1, obc2, gbn2, or an XML file such as amber99_obc.xml (default: vacuum)",
    )
    group.add_argument("--constraints", choices=tuple(CONSTRAINTS), help="default: none")
    group.add_argument(
        "--temperature", type=TEMPERATURE, metavar="K", help="in kelvin (default: 300)"
    )


def model_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The model options that were given on the command line, by ``Molecule`` keyword."""
    return {key: getattr(args, key) for key in OPTION_KEYS if getattr(args, key, None) is not None}


def molecule_from_args(args: argparse.Namespace) -> Molecule:
    """The molecule named by the parsed ``MOLECULE`` argument and options."""
    return molecule_from_spec(spec_from_text(str(args.molecule), **model_overrides(args)))

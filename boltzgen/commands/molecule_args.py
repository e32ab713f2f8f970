"""Shared command-line and config handling for every command that takes a molecule.

A molecule is named by a catalog name (``alanine-dipeptide``), a PDB path (``my.pdb``) or a
peptide sequence (``seq:AAA``); ``--forcefield``, ``--solvent``, ``--constraints`` and
``--temperature`` override the catalog's values or the defaults. Config files give the same as a
table with ``name``, ``pdb`` or ``sequence`` plus those keys.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import BoltzgenError
from ..forcefields import CONSTRAINTS
from ..molecule import DEFAULT_FORCEFIELD, Molecule

__all__ = [
    "SEQUENCE_PREFIX",
    "add_molecule_arguments",
    "add_model_options",
    "model_overrides",
    "molecule_from_args",
    "molecule_from_spec",
]

#: Prefix that marks a MOLECULE argument as a one-letter peptide sequence.
SEQUENCE_PREFIX = "seq:"
_SOURCE_KEYS = ("name", "pdb", "sequence")
_MODEL_KEYS = ("forcefield", "solvent", "constraints", "temperature")


def add_molecule_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the positional ``MOLECULE`` and the model options to ``parser``."""
    parser.add_argument(
        "molecule",
        metavar="MOLECULE",
        help="catalog name (see 'boltzgen systems list'), a PDB file, or seq:AAA for a capped peptide",
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
    group.add_argument("--temperature", type=float, metavar="K", help="in kelvin (default: 300)")


def molecule_from_args(args: argparse.Namespace) -> Molecule:
    """The molecule named by the parsed ``MOLECULE`` argument and options."""
    spec = model_overrides(args)
    text = str(args.molecule)
    if text.startswith(SEQUENCE_PREFIX):
        spec["sequence"] = text[len(SEQUENCE_PREFIX) :]
    elif text.lower().endswith(".pdb") or Path(text).is_file():
        spec["pdb"] = text
    else:
        spec["name"] = text
    return molecule_from_spec(spec)


def model_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The model options that were given on the command line, by ``Molecule`` keyword."""
    return {key: getattr(args, key) for key in _MODEL_KEYS if getattr(args, key, None) is not None}


def molecule_from_spec(spec: Mapping[str, Any]) -> Molecule:
    """A molecule from a config table.

    Arguments:
        spec: Exactly one of ``name`` (catalog), ``pdb`` (path) or ``sequence`` (one-letter
            codes), and optionally ``forcefield`` (list of XML files), ``solvent``,
            ``constraints``, ``temperature`` (K).

    Raises:
        BoltzgenError: For unknown keys, not exactly one source, or bad values.
    """
    unknown = sorted(set(spec) - set(_SOURCE_KEYS) - set(_MODEL_KEYS))
    if unknown:
        raise BoltzgenError(
            f"unknown molecule keys {unknown}: allowed are {', '.join(_SOURCE_KEYS + _MODEL_KEYS)}"
        )
    sources = [key for key in _SOURCE_KEYS if key in spec]
    if len(sources) != 1:
        raise BoltzgenError(
            f"a molecule needs exactly one of {', '.join(_SOURCE_KEYS)}, got {sources or 'none'}"
        )
    overrides = {key: spec[key] for key in _MODEL_KEYS if spec.get(key) is not None}
    if isinstance(overrides.get("forcefield"), str):
        overrides["forcefield"] = [overrides["forcefield"]]
    if "name" in spec:
        return Molecule.from_catalog(str(spec["name"]), **overrides)
    if "pdb" in spec:
        return Molecule.from_pdb(str(spec["pdb"]), **overrides)
    return Molecule.from_sequence(str(spec["sequence"]), **overrides)

"""A molecule named by a spec: a catalog name, a PDB file or a peptide sequence, plus options.

The same spec serves config files (``[target] system = ... / pdb = ... / sequence = ...``) and
the command line (``MOLECULE`` = catalog name, ``my.pdb`` or ``seq:AKW``): exactly one source
and optionally ``forcefield``, ``solvent``, ``constraints`` and ``temperature`` (K), which
override the catalog's values or the defaults.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import BoltzgenError
from .molecule import Molecule

__all__ = ["SEQUENCE_PREFIX", "SOURCE_KEYS", "OPTION_KEYS", "spec_from_text", "molecule_from_spec"]

#: Prefix that marks a MOLECULE argument as a one-letter peptide sequence.
SEQUENCE_PREFIX = "seq:"
#: The keys that name where a molecule comes from; a spec has exactly one.
SOURCE_KEYS = ("name", "pdb", "sequence")
#: The keys that override a molecule's force field, solvent, constraints and temperature.
OPTION_KEYS = ("forcefield", "solvent", "constraints", "temperature")


def spec_from_text(text: str, **options: Any) -> dict[str, Any]:
    """The spec of a MOLECULE argument: ``seq:AKW``, a PDB path, or a catalog name.

    Arguments:
        text: The argument.
        options: Overrides among :data:`OPTION_KEYS` (``None`` values are left out).
    """
    spec = {key: value for key, value in options.items() if value is not None}
    if text.startswith(SEQUENCE_PREFIX):
        spec["sequence"] = text[len(SEQUENCE_PREFIX) :]
    elif text.lower().endswith(".pdb") or Path(text).is_file():
        spec["pdb"] = text
    else:
        spec["name"] = text
    return spec


def molecule_from_spec(spec: Mapping[str, Any]) -> Molecule:
    """A molecule from a config table.

    Arguments:
        spec: Exactly one of ``name`` (catalog), ``pdb`` (path) or ``sequence`` (one-letter
            codes), and optionally ``forcefield`` (list of XML files), ``solvent``,
            ``constraints``, ``temperature`` (K).

    Raises:
        BoltzgenError: For unknown keys, not exactly one source, or bad values.
    """
    unknown = sorted(set(spec) - set(SOURCE_KEYS) - set(OPTION_KEYS))
    if unknown:
        raise BoltzgenError(
            f"unknown molecule keys {unknown}: allowed are {', '.join(SOURCE_KEYS + OPTION_KEYS)}"
        )
    sources = [key for key in SOURCE_KEYS if key in spec]
    if len(sources) != 1:
        raise BoltzgenError(
            f"a molecule needs exactly one of {', '.join(SOURCE_KEYS)}, got {sources or 'none'}"
        )
    overrides = {key: spec[key] for key in OPTION_KEYS if spec.get(key) is not None}
    if isinstance(overrides.get("forcefield"), str):
        overrides["forcefield"] = [overrides["forcefield"]]
    if "name" in spec:
        return Molecule.from_catalog(str(spec["name"]), **overrides)
    if "pdb" in spec:
        return Molecule.from_pdb(str(spec["pdb"]), **overrides)
    return Molecule.from_sequence(str(spec["sequence"]), **overrides)

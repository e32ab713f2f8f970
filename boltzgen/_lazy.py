"""Lazy package exports: names whose modules are imported on first access.

OpenMM and mdtraj take seconds to import; a package re-exports the names of the modules that need
them lazily, so that ``import boltzgen`` (or ``boltzgen.energy``) stays light for users of the
lattice models and toy targets.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(package: str, origins: Mapping[str, str]) -> Callable[[str], Any]:
    """A module-level ``__getattr__`` for ``package`` importing ``name`` from ``origins[name]``.

    Arguments:
        package: The package's ``__name__``.
        origins: Exported name -> the relative module (e.g. ``".molecule"``) that defines it.
    """

    def __getattr__(name: str) -> Any:
        if name not in origins:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(origins[name], package), name)

    return __getattr__

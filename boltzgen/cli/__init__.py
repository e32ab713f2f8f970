"""The ``boltzgen`` command line: one module per sub-command, on top of
:mod:`boltzgen.workflow`."""

from __future__ import annotations

from .main import main

__all__ = ["main"]

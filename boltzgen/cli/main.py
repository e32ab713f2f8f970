"""The ``boltzgen`` command line.

Each sub-command lives in its own module under :mod:`boltzgen.cli` and exposes
``add_parser(subparsers)``, which registers the sub-command and sets ``run=callable(args) -> int``
as its default. User errors are raised as :class:`~boltzgen.errors.BoltzgenError` and printed
here as one line on stderr with exit code 2; commands that report numbers take ``--json`` and
print exactly one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from .._version import __version__
from ..errors import BoltzgenError

__all__ = ["main", "build_parser"]

#: Modules of :mod:`boltzgen.cli`, in the order their sub-commands are listed in ``--help``.
COMMAND_MODULES: tuple[str, ...] = (
    "init",
    "train",
    "sample",
    "exact",
    "systems",
    "build",
    "evaluate",
    "plot",
    "report",
    "energy",
    "bench",
    "md",
    "reference",
)


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line, like every other user error."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise BoltzgenError(f"{self.prog}: {message} (see '{self.prog} --help')")


def build_parser() -> argparse.ArgumentParser:
    """The full parser with every sub-command registered."""
    parser = _Parser(
        prog="boltzgen", description="Boltzmann generators for molecules and lattice models."
    )
    parser.add_argument("--version", action="version", version=f"boltzgen {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMAND_MODULES:
        importlib.import_module(f".{name}", __package__).add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``boltzgen`` console script; returns the exit code."""
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        if getattr(args, "run", None) is None:
            parser.print_help()
            return 0
        return int(args.run(args) or 0)
    except BoltzgenError as error:
        print(f"boltzgen: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("boltzgen: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())

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
import signal
import sys
import threading
from collections.abc import Sequence

from .._version import __version__
from ..errors import EXIT_USER_ERROR, BoltzgenError, Terminated

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


def _terminate(signum: int, frame: object) -> None:
    raise Terminated


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``boltzgen`` console script; returns the exit code.

    Exit codes: 0 success; 2 a user error (one line on stderr: bad input or config, a foreign
    or corrupted file, no space left, out of memory); 130 after Ctrl-C and 143 after SIGTERM
    (work is checkpointed where the command supports it: rerun to resume).
    """
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        return _run(argv)
    finally:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, previous)


def _run(argv: Sequence[str] | None) -> int:
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        if getattr(args, "run", None) is None:
            parser.print_help()
            return 0
        return int(args.run(args) or 0)
    except BoltzgenError as error:
        print(f"boltzgen: error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt as error:
        terminated = isinstance(error, Terminated)
        print(f"boltzgen: {'terminated' if terminated else 'interrupted'}", file=sys.stderr)
        return 128 + (signal.SIGTERM if terminated else signal.SIGINT)
    except BrokenPipeError:
        return 0
    except MemoryError:
        print(_OUT_OF_MEMORY, file=sys.stderr)
        return EXIT_USER_ERROR
    except RuntimeError as error:  # torch's allocator errors (CPU and CUDA) are RuntimeErrors
        if "out of memory" not in str(error) and "can't allocate memory" not in str(error):
            raise
        print(_OUT_OF_MEMORY, file=sys.stderr)
        return EXIT_USER_ERROR
    except OSError as error:  # the file system: full, read-only, permissions, I/O errors
        where = f" ({error.filename})" if error.filename else ""
        print(f"boltzgen: error: {error.strerror or error}{where}", file=sys.stderr)
        return EXIT_USER_ERROR


_OUT_OF_MEMORY = (
    "boltzgen: error: out of memory: use a smaller batch_size, chunk_size, model or sample "
    "count (work checkpointed before is kept)"
)


if __name__ == "__main__":
    sys.exit(main())

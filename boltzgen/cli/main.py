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
from typing import Any

from .._version import __version__
from ..errors import EXIT_USER_ERROR, BoltzgenError, Terminated

__all__ = ["main", "build_parser"]

#: Modules of :mod:`boltzgen.cli`, in the order their sub-commands are listed in ``--help``.
COMMAND_MODULES: tuple[str, ...] = (
    "init",
    "train",
    "federate",
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


#: Signals received by this command (outside training, which handles its own).
_received: list[int] = []

#: Whether the command is still working. Once it has failed and is reporting why, a signal (a
#: launcher stopping the other ranks of a run) is only recorded: raised then, it would surface
#: inside the clean-up of the failed work, such as a progress bar's ``__del__``, as a traceback.
_working: list[bool] = [True]


def _on_signal(signum: int, frame: object) -> None:
    """Record the signal and, while the command works, raise like Ctrl-C (:class:`Terminated`
    for SIGTERM). Recording matters: an interrupt inside a C extension's import (NumPy, torch)
    can surface as a different error, such as an ImportError, which is then still reported as
    the interrupt."""
    _received.append(signum)
    if _working[0]:
        raise Terminated if signum == signal.SIGTERM else KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``boltzgen`` console script; returns the exit code.

    Exit codes: 0 success; 2 a user error (one line on stderr: bad input or config, a foreign
    or corrupted file, no space left, out of memory); 130 after Ctrl-C and 143 after SIGTERM
    (work is checkpointed where the command supports it: rerun to resume).
    """
    if threading.current_thread() is not threading.main_thread():
        return _run(argv)
    _received.clear()
    _working[0] = True
    previous = {
        number: signal.signal(number, _on_signal)
        for number in (signal.SIGINT, signal.SIGTERM)
        if signal.getsignal(number) is not signal.SIG_IGN  # nohup and background jobs
    }
    try:
        return _run(argv)
    finally:
        try:
            _restore(previous)
        except (Terminated, KeyboardInterrupt):  # a signal after the work is done (a
            _restore(previous)  # launcher stopping its ranks): the exit code stands


def _restore(actions: dict[int, Any]) -> None:
    """Put back the signal handlers ``main`` replaced."""
    for number, action in actions.items():
        signal.signal(number, action)


def _forget_unhandled_interrupt() -> None:
    """Clear CPython's "unhandled KeyboardInterrupt" flag. An extension module's import (torch,
    NumPy) runs Python code through ``PyRun_*``, which sets the flag when a Ctrl-C escapes that
    code; at exit the interpreter then re-raises SIGINT on itself and the process dies with
    -SIGINT instead of returning our exit code, although the interrupt was handled here. Running
    an empty string through the same API resets the flag."""
    import ctypes

    ctypes.pythonapi.PyRun_SimpleString(b"")


def _interrupted(terminated: bool) -> int:
    _forget_unhandled_interrupt()
    print(f"boltzgen: {'terminated' if terminated else 'interrupted'}", file=sys.stderr)
    return 128 + (signal.SIGTERM if terminated else signal.SIGINT)


def _run(argv: Sequence[str] | None) -> int:
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        args.command_line = list(sys.argv[1:] if argv is None else argv)  # for --nproc launches
        if getattr(args, "run", None) is None:
            parser.print_help()
            return 0
        return int(args.run(args) or 0)
    except BaseException as error:
        _working[0] = False
        return _report(error)


def _report(error: BaseException) -> int:
    """Print the one line for ``error`` raised by a command and return the exit code; re-raise
    errors that are not the user's (bugs keep their traceback)."""
    try:
        raise error
    except BoltzgenError as error:
        print(f"boltzgen: error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt as error:
        return _interrupted(isinstance(error, Terminated))
    except BrokenPipeError:
        return 0
    except MemoryError:
        print(_OUT_OF_MEMORY, file=sys.stderr)
        return EXIT_USER_ERROR
    except RuntimeError as error:  # torch's allocator errors (CPU and CUDA) are RuntimeErrors
        if "out of memory" not in str(error) and "can't allocate memory" not in str(error):
            if _received:  # the interrupt surfaced as another error (see _on_signal)
                return _interrupted(_received[-1] == signal.SIGTERM)
            raise
        print(_OUT_OF_MEMORY, file=sys.stderr)
        return EXIT_USER_ERROR
    except OSError as error:  # the file system: full, read-only, permissions, I/O errors
        where = f" ({error.filename})" if error.filename else ""
        print(f"boltzgen: error: {error.strerror or error}{where}", file=sys.stderr)
        return EXIT_USER_ERROR
    except Exception:
        if _received:  # the interrupt surfaced as another error (see _on_signal)
            return _interrupted(_received[-1] == signal.SIGTERM)
        raise


_OUT_OF_MEMORY = (
    "boltzgen: error: out of memory: use a smaller batch_size, chunk_size, model or sample "
    "count (work checkpointed before is kept)"
)


if __name__ == "__main__":
    sys.exit(main())

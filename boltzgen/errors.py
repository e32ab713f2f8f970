"""The one exception type that user-facing code raises for bad input.

The command line turns a :class:`BoltzgenError` into a single line on stderr and a non-zero exit
code; library users can catch it to tell "your input is wrong" apart from bugs.
"""

from __future__ import annotations

__all__ = [
    "BoltzgenError",
    "Interrupted",
    "Terminated",
    "EXIT_USER_ERROR",
    "EXIT_INTERRUPTED",
    "first_line",
]

#: Exit code of the command line for a user error (bad input, a full disk, a foreign file).
EXIT_USER_ERROR = 2
#: Exit code after Ctrl-C (128 + SIGINT); after SIGTERM it is 143 (128 + SIGTERM).
EXIT_INTERRUPTED = 130


def first_line(error: BaseException) -> str:
    """The first line of an exception's message (at most 160 characters), or its type's name
    when the message is empty (``str(error)`` of many torch and OS errors is ``""``)."""
    text = str(error).strip()
    return text.splitlines()[0][:160] if text else type(error).__name__


class BoltzgenError(Exception):
    """A user error: bad input, a bad config value, a missing or foreign file.

    The message is one line that says what is wrong and what to do about it; the command line
    exits with :attr:`exit_code`. Line breaks that a quoted user value brings into the message
    (a ``--set`` argument, a TOML key, a file name) are written as ``\\n`` / ``\\r``.
    """

    exit_code: int = EXIT_USER_ERROR

    def __init__(self, *args: object) -> None:
        if args and isinstance(args[0], str):
            args = (args[0].replace("\r", "\\r").replace("\n", "\\n"), *args[1:])
        super().__init__(*args)


class Interrupted(BoltzgenError):
    """Work was stopped by Ctrl-C or SIGTERM; what was checkpointed can be resumed.

    Arguments:
        message: What was kept and how to resume.
        signal_number: The signal that stopped it (2: SIGINT, 15: SIGTERM); the command line
            exits with 128 + it, as a shell reports a process ended by that signal.
    """

    def __init__(self, message: str, signal_number: int = 2) -> None:
        super().__init__(message)
        self.exit_code = 128 + signal_number


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so that every place that stops cleanly on Ctrl-C (and
    checkpoints) does the same on SIGTERM; the command line installs the handler."""

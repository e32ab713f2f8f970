"""The one exception type that user-facing code raises for bad input.

The command line turns a :class:`BoltzgenError` into a single line on stderr and a non-zero exit
code; library users can catch it to tell "your input is wrong" apart from bugs.
"""

from __future__ import annotations

__all__ = ["BoltzgenError"]


class BoltzgenError(Exception):
    """A user error: bad input, a bad config value, a missing or foreign file.

    The message is one line that says what is wrong and what to do about it.
    """

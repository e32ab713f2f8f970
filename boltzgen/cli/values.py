"""Range-checked number types for command-line options (``type=number(...)`` in argparse).

A value outside its range is a one-line usage error naming the option and the allowed range,
e.g. ``argument --md-frames: -3 is out of range: allowed an integer >= 1 and <= 1000000000``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from ..parallel import MAX_PROCESSES
from ..ranges import MAX_BATCH, MAX_COUNT, MAX_SEED, Range

__all__ = [
    "number",
    "COUNT",
    "COUNT0",
    "SEED",
    "TEMPERATURE",
    "FRACTION",
    "TOLERANCE",
    "LENGTH_NM",
    "TIME_STEP_PS",
    "FRICTION",
    "SECONDS",
    "THREADS",
    "REPLICAS",
    "PROCESSES",
]


def number(range_: Range) -> Callable[[str], int | float]:
    """An argparse ``type`` that parses an integer (``range_.integer``) or a float and checks
    it against ``range_``."""

    def parse(text: str) -> int | float:
        try:
            value: int | float = int(text) if range_.integer else float(text)
        except ValueError:
            kind = "an integer" if range_.integer else "a number"
            raise argparse.ArgumentTypeError(f"{text!r} is not {kind}") from None
        if not range_.contains(value):
            raise argparse.ArgumentTypeError(f"{text} is out of range: allowed {range_.text()}")
        return value

    parse.__name__ = "integer" if range_.integer else "number"  # argparse names it in errors
    return parse


COUNT = number(Range(1, MAX_COUNT, integer=True))
COUNT0 = number(Range(0, MAX_COUNT, integer=True))
SEED = number(Range(0, MAX_SEED, integer=True))
TEMPERATURE = number(Range(0, 1e6, low_open=True))
FRACTION = number(Range(0, 1, high_open=True))
TOLERANCE = number(Range(0, 1, low_open=True))
LENGTH_NM = number(Range(0, 1))
TIME_STEP_PS = number(Range(0, 0.1, low_open=True))
FRICTION = number(Range(0, 1e4))
SECONDS = number(Range(0, 3600, low_open=True))
THREADS = number(Range(1, 1024, integer=True))
REPLICAS = number(Range(1, MAX_BATCH, integer=True))


def PROCESSES(text: str) -> int:  # noqa: N802 (an argparse type, named like the others)
    """``--nproc``'s value: a whole number of processes, 1..MAX_PROCESSES."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= MAX_PROCESSES:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a number of processes: give a whole number from 1 to {MAX_PROCESSES}"
        )
    return value

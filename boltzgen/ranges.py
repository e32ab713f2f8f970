"""Allowed ranges of numeric settings, checked before anything runs or is written.

A :class:`Range` says which numbers a setting accepts; :meth:`Range.check` raises a one-line
:class:`~boltzgen.errors.BoltzgenError` naming the setting, its value and the allowed range.
NaN is never in a range; infinity only where a bound is infinite and included. Dataclass
settings (:class:`~boltzgen.trainers.TrainSettings`, the TA-BG settings) declare a range per
field in ``metadata={"range": ...}`` and check them with :func:`check_fields`; the config
registry reads the same declarations, so each range is written once.

>>> Range(0, 1, low_open=True).text()
'a number > 0 and <= 1'
>>> Range(1, 10, integer=True).check("steps", 0)
Traceback (most recent call last):
    ...
boltzgen.errors.BoltzgenError: steps = 0 is out of range: allowed an integer >= 1 and <= 10
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from .errors import BoltzgenError

__all__ = ["Range", "check_fields", "field_range", "MAX_COUNT", "MAX_BATCH", "MAX_SEED"]

#: Upper bound of step and sample counts (a billion).
MAX_COUNT = 10**9
#: Upper bound of batch and chunk sizes (2^24, about 1.7e7).
MAX_BATCH = 2**24
#: Upper bound of seeds (what :func:`torch.manual_seed` and NumPy accept alike).
MAX_SEED = 2**63 - 1


@dataclasses.dataclass(frozen=True)
class Range:
    """The numbers a setting accepts: ``low <= value <= high`` (``<`` where ``*_open``).

    Attributes:
        low, high: Bounds (``-inf``/``inf``: unbounded on that side; infinity itself is then
            allowed only when that side is not open).
        low_open, high_open: Exclude the bound itself.
        integer: Only integers (``bool`` is never one).
    """

    low: float = -math.inf
    high: float = math.inf
    low_open: bool = False
    high_open: bool = False
    integer: bool = False

    def contains(self, value: Any) -> bool:
        """Whether ``value`` is a number (an integer if required) inside the range."""
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if self.integer and not isinstance(value, int):
            return False
        if math.isnan(value):
            return False
        above = value > self.low if self.low_open else value >= self.low
        below = value < self.high if self.high_open else value <= self.high
        return above and below

    def text(self) -> str:
        """The range in words, e.g. ``'an integer >= 1 and <= 1000000000'``."""
        parts = []
        if self.low != -math.inf:
            parts.append(f"{'>' if self.low_open else '>='} {_number(self.low)}")
        if self.high != math.inf:
            parts.append(f"{'<' if self.high_open else '<='} {_number(self.high)}")
        elif not self.high_open and self.low != -math.inf:
            parts.append("(inf allowed)")
        kind = "an integer" if self.integer else "a number"
        return f"{kind} {' and '.join(parts)}".strip() if parts else f"{kind} (finite)"

    def check(self, name: str, value: Any) -> None:
        """Raise a one-line :class:`BoltzgenError` unless :meth:`contains` ``value``."""
        if not self.contains(value):
            raise BoltzgenError(f"{name} = {value!r} is out of range: allowed {self.text()}")


def _number(value: float) -> str:
    if float(value).is_integer() and abs(value) < 1e16:
        return str(int(value))
    return f"{value:g}"


def field_range(range_: Range) -> dict[str, Range]:
    """``metadata`` of a dataclass field with this range: ``field(default=..., metadata=...)``."""
    return {"range": range_}


def check_fields(settings: Any, label: str) -> None:
    """Check every field of the dataclass instance ``settings`` that declares a range
    (``None`` passes where the field allows it); the error names the field as ``label field``."""
    for f in dataclasses.fields(settings):
        range_ = f.metadata.get("range")
        value = getattr(settings, f.name)
        if range_ is not None and not (value is None and "None" in str(f.type)):
            range_.check(f"{label} {f.name}", value)

"""The support of one feature of a flow: the real line, an interval, or a circle.

A flow over molecules in internal coordinates mixes features of different kinds: bond lengths and
angles live on intervals, torsions on circles, Cartesian or unbounded features on the real line.
A :class:`Domain` says which, and the flows and priors build their transforms from it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import BoltzgenError

__all__ = ["Domain", "real", "interval", "circular"]

_KINDS = ("real", "interval", "circular")


@dataclass(frozen=True)
class Domain:
    """The support of one scalar feature.

    Attributes:
        kind: ``"real"`` (the whole real line), ``"interval"`` (the closed interval
            ``[low, high]``) or ``"circular"`` (the circle ``[low, high)`` with ``high``
            identified with ``low``; period ``high - low``).
        low: Lower end; ``-inf`` for a real feature.
        high: Upper end; ``+inf`` for a real feature.

    Use the factories :func:`real`, :func:`interval` and :func:`circular`.
    """

    kind: str
    low: float = -math.inf
    high: float = math.inf

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise BoltzgenError(
                f"unknown domain kind {self.kind!r}: use one of {', '.join(_KINDS)}"
            )
        if self.kind == "real":
            if self.low != -math.inf or self.high != math.inf:
                raise BoltzgenError(
                    "a real domain spans (-inf, inf): use interval(low, high) for bounds"
                )
            return
        if not (math.isfinite(self.low) and math.isfinite(self.high) and self.low < self.high):
            raise BoltzgenError(
                f"a {self.kind} domain needs finite bounds low < high, "
                f"got low={self.low!r}, high={self.high!r}"
            )

    @property
    def width(self) -> float:
        """``high - low``: the interval's length or the circle's period (``inf`` if real)."""
        return self.high - self.low


def real() -> Domain:
    """The real line (-inf, inf)."""
    return Domain("real")


def interval(low: float, high: float) -> Domain:
    """The closed interval ``[low, high]``, e.g. a bond length in nm."""
    return Domain("interval", float(low), float(high))


def circular(low: float = 0.0, high: float = 2 * math.pi) -> Domain:
    """The circle ``[low, high)`` with period ``high - low``, e.g. a torsion in radians."""
    return Domain("circular", float(low), float(high))

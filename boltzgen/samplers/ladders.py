"""Geometric ladders of temperatures (or inverse temperatures): the one ladder function.

Replica-exchange MD, parallel tempering of spin models and the annealing schedule of TA-BG all
space their rungs geometrically, so that neighbouring rungs overlap equally for a heat capacity
that does not change much along the ladder.
"""

from __future__ import annotations

import math

from ..errors import BoltzgenError

__all__ = ["geometric_ladder"]


def geometric_ladder(start: float, stop: float, n: int) -> list[float]:
    """``n`` values ``start (stop / start)^(k / (n - 1))``, k = 0 .. n-1, from ``start`` to
    ``stop``.

    The first and last values equal ``start`` and ``stop`` exactly; ``n = 1`` gives ``[start]``
    (then ``stop`` must equal ``start``). The ladder rises or falls with the order of the ends.

    Arguments:
        start, stop: Positive, finite ends (kelvin, or inverse temperatures).
        n: Number of rungs, >= 1.

    Raises:
        BoltzgenError: For n < 1, non-positive or non-finite ends, or n = 1 with two ends.
    """
    if not (n >= 1 and 0 < start and 0 < stop and math.isfinite(start) and math.isfinite(stop)):
        raise BoltzgenError(
            f"a geometric ladder needs n >= 1 rungs and positive finite ends, got n={n}, "
            f"{start}..{stop}"
        )
    if n == 1:
        if start != stop:
            raise BoltzgenError(f"a ladder of one rung cannot run from {start} to {stop}")
        return [float(start)]
    ratio = stop / start
    return [float(start * ratio ** (k / (n - 1))) for k in range(n - 1)] + [float(stop)]

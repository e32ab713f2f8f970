"""Monotone rational-quadratic splines on [-B, B] (zuko's primitive), both directions with log-det.

The spline is :class:`zuko.transforms.MonotonicRQSTransform` (Durkan et al. 2019): ``bins`` bins
on [-B, B], knot derivatives from unconstrained parameters, boundary derivatives fixed at 1 and
the identity outside [-B, B]. Because f(-B) = -B, f(B) = B and f'(-B) = f'(B) = 1, the same
spline is also a diffeomorphism of the circle [-B, B) (used for circular features).

zuko only provides the log-det in the forward direction; :func:`spline_inverse` reuses its bin
lookup to return the inverse and its log-det from a single search.
"""

from __future__ import annotations

from torch import Tensor
from zuko.transforms import MonotonicRQSTransform

__all__ = ["spline_forward", "spline_inverse", "spline_param_count"]

SLOPE = 1e-3
"""Minimum knot derivative of the spline (zuko's ``slope``)."""


def spline_param_count(bins: int) -> int:
    """Unconstrained parameters per feature: ``bins`` widths, ``bins`` heights, ``bins - 1``
    inner knot derivatives."""
    return 3 * bins - 1


def _spline(params: Tensor, bound: float) -> MonotonicRQSTransform:
    bins = (params.shape[-1] + 1) // 3
    widths, heights, derivatives = params.split((bins, bins, bins - 1), dim=-1)
    return MonotonicRQSTransform(widths, heights, derivatives, bound=bound, slope=SLOPE)


def spline_forward(params: Tensor, u: Tensor, bound: float) -> tuple[Tensor, Tensor]:
    """Apply the spline elementwise.

    Arguments:
        params: Unconstrained spline parameters, shape ``(*, 3 * bins - 1)``.
        u: Inputs, shape ``(*)``.
        bound: The spline's half-width B.

    Returns:
        ``v = f(u)`` of shape ``(*)`` and ``log f'(u)`` of shape ``(*)`` (0 outside [-B, B]).
    """
    return _spline(params, bound).call_and_ladj(u)


def spline_inverse(params: Tensor, v: Tensor, bound: float) -> tuple[Tensor, Tensor]:
    """Invert the spline elementwise.

    Arguments:
        params: Unconstrained spline parameters, shape ``(*, 3 * bins - 1)``.
        v: Outputs of the spline, shape ``(*)``.
        bound: The spline's half-width B.

    Returns:
        ``u = f^-1(v)`` of shape ``(*)`` and ``log |du/dv| = -log f'(u)`` of shape ``(*)``.
    """
    spline = _spline(params, bound)
    k = spline.searchsorted(spline.vertical, v) - 1
    inside, x0, x1, y0, y1, d0, d1, s = spline.bin(k)
    # solve the bin's rational quadratic for the fraction t in [0, 1] (Durkan et al., eq. 6-8)
    dy = inside * (v - y0)
    curvature = d0 + d1 - 2 * s
    a = (y1 - y0) * (s - d0) + dy * curvature
    b = (y1 - y0) * d0 - dy * curvature
    c = -s * dy
    t = 2 * c / (-b - (b.square() - 4 * a * c).clamp_min(0).sqrt())
    u = x0 + t * (x1 - x0)
    tt = t * (1 - t)
    derivative = s.square() * (2 * s * tt + d0 * (1 - t).square() + d1 * t.square())
    derivative = derivative / (s + curvature * tt).square()
    return u.where(inside, v), inside * -derivative.log()

"""Product priors (base distributions) of flows, one factor per feature, matched to its domain.

Each feature ``i`` has one family:

* ``normal``: N(loc_i, scale_i^2) on the real line;
* ``uniform``: uniform on ``[low_i, high_i]`` (an interval or a circle);
* ``truncated-normal``: N(loc_i, scale_i^2) restricted to ``[low_i, high_i]`` and renormalized
  (TA-BG's prior for bond lengths and angles: loc 0.5, scale 0.1 on [0, 1]).

All three share one log-density form, log p_i(x) = c_i - 0.5 w_i ((x - loc_i) / scale_i)^2 on
the support and -inf outside it (w_i = 0 for uniform factors), so :meth:`Prior.log_prob` is a
single vectorized expression without data-dependent branches.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from ..errors import BoltzgenError
from .constants import ExactConstants
from .domains import Domain

__all__ = ["Prior", "make_prior", "PRIOR_KINDS"]

PRIOR_KINDS = ("auto", "normal", "uniform", "truncated-normal")
_FAMILIES = ("normal", "uniform", "truncated-normal")


def _std_normal_cdf(x: float) -> float:
    """Phi(x) in float64, accurate in the left tail (erfc form)."""
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


class Prior(ExactConstants):
    """A product distribution over ``dim`` features, one family per feature.

    Arguments:
        domains: The support of each feature (length ``dim``).
        families: Per feature ``"normal"`` (real features), ``"uniform"`` (interval or
            circular features) or ``"truncated-normal"`` (interval features).
        loc: Per-feature centre of the (truncated) normal factors, shape ``(dim,)``; ignored
            for uniform factors.
        scale: Per-feature standard deviation of the (truncated) normal factors, > 0.

    Samples and densities take the dtype and device of the module's buffers (``.to(...)``).
    Circular features are periodic: their uniform density is defined for every real value.
    Interval features have density 0 (log_prob -inf) outside ``[low, high]``.
    """

    def __init__(
        self,
        domains: Sequence[Domain],
        families: Sequence[str],
        loc: Sequence[float],
        scale: Sequence[float],
    ) -> None:
        super().__init__()
        self.domains = tuple(domains)
        self.families = tuple(families)
        self.dim = len(self.domains)
        if not (len(self.families) == len(loc) == len(scale) == self.dim) or self.dim == 0:
            raise BoltzgenError(
                "a prior needs one family, loc and scale per feature and at least one feature, "
                f"got {len(self.domains)} domains, {len(self.families)} families, "
                f"{len(loc)} locs, {len(scale)} scales"
            )
        rows = [
            _factor(i, d, f, float(m), float(s))
            for i, (d, f, m, s) in enumerate(zip(self.domains, self.families, loc, scale))
        ]
        columns = {key: [row[key] for row in rows] for key in rows[0]}
        for key in (
            "loc",
            "scale",
            "low",
            "high",
            "support_low",
            "support_high",
            "const",
            "quad_weight",
            "cdf_low",
            "cdf_high",
            "side",
        ):
            self.register_constant(key, columns[key])
        for family in _FAMILIES:
            mask = torch.tensor([f == family for f in self.families], dtype=torch.bool)
            self.register_buffer(f"_is_{family.replace('-', '_')}", mask)
        self._present = tuple(f for f in _FAMILIES if f in self.families)

    def rsample(self, n: int) -> Tensor:
        """Draw ``n`` independent samples, shape ``(n, dim)``.

        The prior has no trainable parameters; samples are plain random draws.
        """
        shape = (n, self.dim)
        out: Tensor | None = None
        for family in self._present:
            value = self._draw(family, shape)
            mask = getattr(self, f"_is_{family.replace('-', '_')}")
            out = value if out is None else torch.where(mask, value, out)
        assert out is not None
        return out

    def sample(self, n: int) -> Tensor:
        """Same as :meth:`rsample` (there are no parameters to differentiate)."""
        return self.rsample(n)

    def log_prob(self, z: Tensor) -> Tensor:
        """Log-density of a batch, shape ``(n, dim) -> (n,)``; -inf outside the support."""
        standard = (z - self.loc) / self.scale
        per_feature = self.const - 0.5 * self.quad_weight * standard.square()
        inside = ((z >= self.support_low) & (z <= self.support_high)).all(dim=-1)
        total = per_feature.sum(dim=-1)
        return torch.where(inside, total, torch.full_like(total, -math.inf))

    def _draw(self, family: str, shape: tuple[int, int]) -> Tensor:
        like = dict(dtype=self.loc.dtype, device=self.loc.device)
        if family == "normal":
            return self.loc + self.scale * torch.randn(shape, **like)
        u = torch.rand(shape, **like)
        if family == "uniform":
            return self.low + (self.high - self.low) * u
        # truncated normal by inverse CDF, on the side of the mode nearer the tail (side = -1
        # flips intervals right of the mode, so the CDF differences stay well resolved)
        p = self.cdf_low + u * (self.cdf_high - self.cdf_low)
        standard = self.side * torch.special.ndtri(p)
        x = self.loc + self.scale * standard
        return torch.minimum(torch.maximum(x, self.low), self.high)

    def extra_repr(self) -> str:
        counts = ", ".join(f"{f}: {self.families.count(f)}" for f in self._present)
        return f"dim={self.dim}, {counts}"


def _factor(i: int, domain: Domain, family: str, loc: float, scale: float) -> dict[str, float]:
    """Buffers of feature ``i``'s factor: support, log-density constants, CDF range."""
    if family not in _FAMILIES:
        raise BoltzgenError(f"unknown prior family {family!r} for feature {i}: use {_FAMILIES}")
    gaussian = family != "uniform"
    if gaussian and not (math.isfinite(loc) and math.isfinite(scale) and scale > 0):
        raise BoltzgenError(
            f"feature {i}: a {family} prior needs a finite loc and a scale > 0, "
            f"got loc={loc!r}, scale={scale!r}"
        )
    if family == "normal" and domain.kind != "real":
        raise BoltzgenError(
            f"feature {i} lives on a {domain.kind} domain [{domain.low}, {domain.high}] but its "
            "prior is normal: use 'uniform' or 'truncated-normal' for bounded features"
        )
    if family != "normal" and domain.kind == "real":
        raise BoltzgenError(
            f"feature {i} is real-valued but its prior is {family}: use 'normal' (or 'auto')"
        )
    if family == "truncated-normal" and domain.kind == "circular":
        raise BoltzgenError(
            f"feature {i} is circular: a truncated normal is not periodic, use 'uniform'"
        )
    row = dict(
        loc=loc if gaussian else 0.0,
        scale=scale if gaussian else 1.0,
        low=domain.low,
        high=domain.high,
        quad_weight=1.0 if gaussian else 0.0,
        cdf_low=0.25,
        cdf_high=0.75,
        side=1.0,
    )
    # circular features are periodic: their uniform density holds on the whole line
    bounded = domain.kind == "interval"
    row["support_low"] = domain.low if bounded else -math.inf
    row["support_high"] = domain.high if bounded else math.inf
    if domain.kind == "real":
        row["low"], row["high"] = -math.inf, math.inf
        row["const"] = -math.log(scale) - 0.5 * math.log(2 * math.pi)
    elif family == "uniform":
        row["const"] = -math.log(domain.width)
    else:
        a, b = (domain.low - loc) / scale, (domain.high - loc) / scale
        side = 1.0 if a + b <= 0 else -1.0
        lo, hi = (a, b) if side > 0 else (-b, -a)
        cdf_low, cdf_high = _std_normal_cdf(lo), _std_normal_cdf(hi)
        mass = cdf_high - cdf_low
        if not mass > 0:
            raise BoltzgenError(
                f"feature {i}: the truncated normal N({loc}, {scale}^2) has no mass on "
                f"[{domain.low}, {domain.high}]: move loc inside or widen scale"
            )
        row.update(cdf_low=cdf_low, cdf_high=cdf_high, side=side)
        row["const"] = -math.log(scale) - 0.5 * math.log(2 * math.pi) - math.log(mass)
    return row


def make_prior(
    domains: Sequence[Domain],
    kind: str = "auto",
    loc: float | Sequence[float] | Tensor | None = None,
    scale: float | Sequence[float] | Tensor | None = None,
) -> Prior:
    """Build a product prior over features with the given domains.

    Arguments:
        domains: One :class:`Domain` per feature.
        kind: ``"auto"``: real features standard normal, interval and circular features
            uniform. ``"normal"``: every feature normal (all must be real). ``"uniform"``:
            uniform on each interval or circle (no real features). ``"truncated-normal"``:
            truncated normal on each interval, uniform on each circle, normal on real features.
        loc: Centre of the (truncated) normal factors, a scalar or one value per feature.
            Default: 0 for real features, the interval's midpoint for truncated normals.
        scale: Their standard deviation, a scalar or one value per feature. Default: 1 for
            real features, a tenth of the interval's width for truncated normals (TA-BG's 0.5 /
            0.1 on [0, 1]).

    Returns:
        A :class:`Prior` with float buffers of the default dtype.

    Raises:
        BoltzgenError: An unknown kind, a family that does not fit a feature's domain, or a
            loc/scale of the wrong length.
    """
    domains = tuple(domains)
    if kind not in PRIOR_KINDS:
        raise BoltzgenError(f"unknown prior kind {kind!r}: use one of {', '.join(PRIOR_KINDS)}")
    families = [_family(kind, d) for d in domains]
    default_loc = [0.0 if d.kind == "real" else 0.5 * (d.low + d.high) for d in domains]
    default_scale = [1.0 if d.kind == "real" else 0.1 * d.width for d in domains]
    return Prior(
        domains,
        families,
        _per_feature("loc", loc, default_loc),
        _per_feature("scale", scale, default_scale),
    )


def _family(kind: str, domain: Domain) -> str:
    if kind == "auto":
        return "normal" if domain.kind == "real" else "uniform"
    if kind == "truncated-normal":
        return {"real": "normal", "interval": "truncated-normal", "circular": "uniform"}[
            domain.kind
        ]
    return kind


def _per_feature(
    name: str, value: float | Sequence[float] | Tensor | None, default: list[float]
) -> list[float]:
    if value is None:
        return default
    values = torch.as_tensor(value, dtype=torch.float64).flatten().tolist()
    if len(values) == 1:
        return values * len(default)
    if len(values) != len(default):
        raise BoltzgenError(
            f"prior {name} needs a scalar or one value per feature ({len(default)}), "
            f"got {len(values)}"
        )
    return values

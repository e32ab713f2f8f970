"""Rational-quadratic spline coupling flows over features with real, interval and circular domains.

A :class:`CouplingFlow` maps latent samples ``z`` of a product prior to samples ``x`` through
``n_layers`` coupling layers. Each layer transforms a subset of the features with monotone
rational-quadratic splines whose parameters an MLP computes from the other features:

* real features: the spline on [-B, B] with identity tails;
* interval features [low, high]: the spline on the interval (affine map onto [-B, B]);
* circular features [low, high): the same, which is a diffeomorphism of the circle because the
  spline's boundary derivatives are equal (both 1); the conditioner sees cos/sin of them, and an
  optional fixed random rotation per layer (mod the period, volume-preserving) moves the
  spline's fixed point ``low`` between layers.

Direction convention: :meth:`CouplingFlow.transform` is latent -> data (the spline's cheap
direction, used by sampling and reverse-KL training); :meth:`CouplingFlow.inverse` is
data -> latent (used by :meth:`CouplingFlow.log_prob`). Every method is free of host-device
synchronisation and data-dependent Python branches; inputs outside a feature's domain are
clamped (intervals) or wrapped (circles), never checked.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from ..errors import BoltzgenError
from ..models.base import Model
from .conditioners import Conditioner
from .constants import ExactConstants
from .domains import Domain, real
from .priors import Prior, make_prior
from .splines import spline_forward, spline_inverse, spline_param_count

__all__ = ["CouplingFlow", "MASKS"]

MASKS = ("alternating", "random")


def _index(values: Sequence[int]) -> Tensor:
    return torch.tensor(list(values), dtype=torch.long)


class _CouplingLayer(ExactConstants):
    """Transforms the features ``transformed`` with splines conditioned on all other features.

    Arguments:
        domains: All features' domains (length ``dim``).
        transformed: Indices of the features this layer transforms (the rest condition).
        bins: Spline bins.
        bound: Spline half-width B (real features are splined on [-B, B]).
        conditioner: Keyword arguments of :class:`Conditioner` except the widths.
    """

    def __init__(
        self,
        domains: Sequence[Domain],
        transformed: Sequence[int],
        *,
        bins: int,
        bound: float,
        **conditioner: object,
    ) -> None:
        super().__init__()
        self.bound = bound
        self.bins = bins
        fixed = [i for i in range(len(domains)) if i not in set(transformed)]
        linear = [i for i in fixed if domains[i].kind != "circular"]
        angular = [i for i in fixed if domains[i].kind == "circular"]
        self.register_buffer("transformed", _index(transformed))
        self.register_buffer("linear", _index(linear))
        self.register_buffer("angular", _index(angular))
        # spline coordinates u = a x + b: [low, high] -> [-B, B]; real features unchanged
        bounded = [domains[i] for i in transformed]
        spline_scale = [1.0 if d.kind == "real" else 2 * bound / d.width for d in bounded]
        self.register_constant("spline_scale", spline_scale)
        self.register_constant(
            "spline_offset",
            [
                0.0 if d.kind == "real" else -bound - a * d.low
                for d, a in zip(bounded, spline_scale)
            ],
        )
        # conditioner inputs: interval features scaled to [-1, 1], circles to angles in radians
        seen = [domains[i] for i in linear]
        lin_scale = [1.0 if d.kind == "real" else 2 / d.width for d in seen]
        self.register_constant("linear_scale", lin_scale)
        self.register_constant(
            "linear_offset",
            [0.0 if d.kind == "real" else -1 - a * d.low for d, a in zip(seen, lin_scale)],
        )
        turned = [domains[i] for i in angular]
        ang_scale = [2 * math.pi / d.width for d in turned]
        self.register_constant("angular_scale", ang_scale)
        self.register_constant("angular_offset", [-a * d.low for d, a in zip(turned, ang_scale)])
        self._has_linear = bool(linear)
        self._has_angular = bool(angular)
        self.conditioner = Conditioner(
            len(linear) + 2 * len(angular),
            len(transformed) * spline_param_count(bins),
            **conditioner,  # type: ignore[arg-type]
        )

    def _spline_params(self, x: Tensor) -> Tensor:
        """Spline parameters from the conditioning features, ``(n, dim) -> (n, n_t, 3K-1)``."""
        inputs = []
        if self._has_linear:
            inputs.append(x.index_select(1, self.linear) * self.linear_scale + self.linear_offset)
        if self._has_angular:
            angle = x.index_select(1, self.angular) * self.angular_scale + self.angular_offset
            inputs += [angle.cos(), angle.sin()]
        h = inputs[0] if len(inputs) == 1 else torch.cat(inputs, dim=1)
        return self.conditioner(h).unflatten(1, (len(self.transformed), -1))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Latent -> data direction: ``(n, dim) -> (n, dim)`` and log|det| of shape ``(n,)``."""
        return self._couple(x, spline_forward)

    def inverse(self, y: Tensor) -> tuple[Tensor, Tensor]:
        """Data -> latent direction: ``(n, dim) -> (n, dim)`` and log|det| of shape ``(n,)``."""
        return self._couple(y, spline_inverse)

    def _couple(
        self, x: Tensor, spline: Callable[[Tensor, Tensor, float], tuple[Tensor, Tensor]]
    ) -> tuple[Tensor, Tensor]:
        """Apply ``spline`` (either direction) to the transformed features in spline
        coordinates, conditioned on the others."""
        params = self._spline_params(x)
        u = x.index_select(1, self.transformed) * self.spline_scale + self.spline_offset
        v, log_det = spline(params, u, self.bound)
        y = x.index_copy(1, self.transformed, (v - self.spline_offset) / self.spline_scale)
        return y, log_det.sum(dim=-1)


class CouplingFlow(ExactConstants, Model):
    """A normalizing flow of rational-quadratic spline coupling layers on mixed domains.

    Arguments:
        domains: One :class:`Domain` per feature, or an int ``d`` for ``d`` real features.
            At least two features.
        n_layers: Number of coupling layers.
        hidden: Width of the conditioner MLPs.
        depth: Hidden layers of each conditioner (residual blocks if ``resnet``).
        bins: Spline bins per feature.
        prior: A :class:`Prior` over the same domains, or a kind for :func:`make_prior`
            (``"auto"``, ``"normal"``, ``"uniform"``, ``"truncated-normal"``).
        mask: ``"alternating"``: layers alternately transform the odd- and even-indexed
            features. ``"random"``: each block of two layers draws a random 50/50 split (balanced
            within each domain kind) and transforms one half, then the other (TA-BG's
            "random_8" with ``n_layers=16``).
        circular_shift: Let every layer but the first act on circular features rotated by a
            fixed random offset (mod the period), rotating back afterwards: this moves the
            point ``low`` that each circular spline keeps fixed.
        resnet: Residual conditioners (``depth`` blocks of two linear layers).
        seed: Seed of the initial weights, the random masks and the shifts.
        bound: Half-width B of the splines of real features (identity outside [-B, B]).
        activation: Conditioner nonlinearity, ``"relu"`` or ``"silu"``.

    The flow starts as the identity map (zero-initialised conditioner outputs). Dtype and
    device follow the module (``flow.to(torch.float64)``); inputs must match them.

    Example:
        >>> from boltzgen.flows import CouplingFlow, circular, interval
        >>> flow = CouplingFlow([interval(0.0, 1.0), circular(), circular()], n_layers=4)
        >>> x, log_q = flow.sample_and_log_prob(256)
        >>> x.shape, log_q.shape
        (torch.Size([256, 3]), torch.Size([256]))
    """

    reparameterized = True

    def __init__(
        self,
        domains: Sequence[Domain] | int,
        *,
        n_layers: int = 8,
        hidden: int = 256,
        depth: int = 2,
        bins: int = 8,
        prior: str | Prior = "auto",
        mask: str = "alternating",
        circular_shift: bool = True,
        resnet: bool = False,
        seed: int = 0,
        bound: float = 5.0,
        activation: str = "relu",
    ) -> None:
        super().__init__()
        if isinstance(domains, int):
            domains = [real()] * domains
        self.domains: tuple[Domain, ...] = tuple(domains)
        self.dim = len(self.domains)
        self.event_shape = torch.Size((self.dim,))
        if self.dim < 2:
            raise BoltzgenError(f"a coupling flow needs at least 2 features, got {self.dim}")
        if n_layers < 1 or bins < 2 or not bound > 0:
            raise BoltzgenError(
                f"need n_layers >= 1, bins >= 2 and bound > 0, got {n_layers}, {bins}, {bound}"
            )
        if mask not in MASKS:
            raise BoltzgenError(f"unknown mask {mask!r}: use one of {', '.join(MASKS)}")
        self.prior = self._make_prior(prior)
        generator = torch.Generator().manual_seed(seed)
        self.layers = nn.ModuleList(
            _CouplingLayer(
                self.domains,
                transformed,
                bins=bins,
                bound=float(bound),
                hidden=hidden,
                depth=depth,
                activation=activation,
                resnet=resnet,
                generator=generator,
            )
            for transformed in self._masks(mask, n_layers, generator)
        )
        self._register_geometry()
        circular = [d.kind == "circular" for d in self.domains]
        self._shifted = circular_shift and any(circular) and n_layers > 1
        # layer l works in a frame rotated by offset[l] (offset[0] = 0); shifts[l] moves from
        # frame l-1 to frame l, shifts[n_layers] back to the data frame, so a fresh flow is the
        # identity while each layer's spline has its fixed point elsewhere on the circle
        period = torch.tensor(
            [d.width if c else 0.0 for d, c in zip(self.domains, circular)], dtype=torch.float64
        )
        offsets = torch.rand(n_layers, self.dim, generator=generator, dtype=torch.float64)
        zero = torch.zeros(1, self.dim, dtype=torch.float64)
        offsets = torch.cat([zero, offsets[1:] * period, zero])
        shifts = offsets.diff(dim=0, prepend=zero)
        self.register_constant("shifts", shifts.tolist())

    def _make_prior(self, prior: str | Prior) -> Prior:
        if isinstance(prior, Prior):
            if prior.domains != self.domains:
                raise BoltzgenError(
                    "the prior's domains differ from the flow's: build it with "
                    "make_prior(flow_domains, ...)"
                )
            return prior
        return make_prior(self.domains, prior)

    def _masks(self, mask: str, n_layers: int, generator: torch.Generator) -> list[list[int]]:
        """Indices of the transformed features of each layer."""
        if mask == "alternating":
            return [list(range((layer + 1) % 2, self.dim, 2)) for layer in range(n_layers)]
        masks: list[list[int]] = []
        for _ in range(0, n_layers, 2):
            shuffled: list[int] = []
            for kind in ("real", "interval", "circular"):
                members = [i for i, d in enumerate(self.domains) if d.kind == kind]
                order = torch.randperm(len(members), generator=generator).tolist()
                shuffled += [members[j] for j in order]
            half = sorted(shuffled[0::2])
            masks += [half, sorted(set(range(self.dim)) - set(half))]
        return masks[:n_layers]

    def _register_geometry(self) -> None:
        """Buffers of :meth:`_project`: clamp bounds of intervals, period of circles."""
        kinds = [d.kind for d in self.domains]
        self._bounded = "interval" in kinds
        self._circular = "circular" in kinds
        interval = [k == "interval" for k in kinds]
        circle = [k == "circular" for k in kinds]
        pairs = list(zip(self.domains, interval, circle))
        self.register_constant("clamp_low", [d.low if b else -math.inf for d, b, _ in pairs])
        self.register_constant("clamp_high", [d.high if b else math.inf for d, b, _ in pairs])
        self.register_buffer("is_circular", torch.tensor(circle, dtype=torch.bool))
        self.register_constant("circle_low", [d.low if c else 0.0 for d, _, c in pairs])
        self.register_constant("circle_high", [d.high if c else math.inf for d, _, c in pairs])
        self.register_constant("period", [d.width if c else 1.0 for d, _, c in pairs])

    def _project(self, x: Tensor) -> Tensor:
        """Clamp interval features into [low, high] and wrap circular ones into [low, high)."""
        if self._bounded:
            x = torch.clamp(x, self.clamp_low, self.clamp_high)
        if self._circular:
            wrapped = self.circle_low + torch.remainder(x - self.circle_low, self.period)
            wrapped = torch.where(wrapped >= self.circle_high, self.circle_low, wrapped)
            x = torch.where(self.is_circular, wrapped, x)
        return x

    def transform(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """Map latent points to data.

        Arguments:
            z: Latent points, shape ``(n, dim)``, in the features' domains.

        Returns:
            ``x`` of shape ``(n, dim)`` and ``log |det dx/dz|`` of shape ``(n,)``.
        """
        x = self._project(z)
        log_det = x.new_zeros(x.shape[0])
        for index, layer in enumerate(self.layers):
            if self._shifted and index > 0:
                x = self._project(x + self.shifts[index])
            x, layer_log_det = layer(x)
            log_det = log_det + layer_log_det
        if self._shifted:
            x = x + self.shifts[-1]
        return self._project(x), log_det

    def inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Map data to latent points.

        Arguments:
            x: Data, shape ``(n, dim)``; clamped/wrapped into the features' domains.

        Returns:
            ``z`` of shape ``(n, dim)`` and ``log |det dz/dx|`` of shape ``(n,)``.
        """
        z = self._project(x - self.shifts[-1] if self._shifted else x)
        log_det = z.new_zeros(z.shape[0])
        for index in range(len(self.layers) - 1, -1, -1):
            z, layer_log_det = self.layers[index].inverse(z)
            log_det = log_det + layer_log_det
            if self._shifted and index > 0:
                z = self._project(z - self.shifts[index])
        return self._project(z), log_det

    def log_prob(self, x: Tensor) -> Tensor:
        """Exact log-density log q(x), shape ``(n, dim) -> (n,)``."""
        z, log_det = self.inverse(x)
        return self.prior.log_prob(z) + log_det

    def sample_and_log_prob(self, n: int) -> tuple[Tensor, Tensor]:
        """Draw ``n`` samples ``(n, dim)`` and their log q ``(n,)`` in one reparameterized pass.

        Gradients flow from both outputs to the flow's parameters (pathwise estimator of
        reverse-KL gradients).
        """
        z = self.prior.rsample(n)
        x, log_det = self.transform(z)
        return x, self.prior.log_prob(z) - log_det

    @torch.no_grad()
    def sample(self, n: int) -> Tensor:
        """Draw ``n`` samples, shape ``(n, dim)``, without building a graph."""
        return self.transform(self.prior.rsample(n))[0]

    def extra_repr(self) -> str:
        kinds = [d.kind for d in self.domains]
        counts = ", ".join(
            f"{k}: {kinds.count(k)}" for k in ("real", "interval", "circular") if k in kinds
        )
        return f"dim={self.dim} ({counts}), n_layers={len(self.layers)}"

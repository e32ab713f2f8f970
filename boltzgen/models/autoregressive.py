r"""Autoregressive models of N discrete units: MADE and a PixelCNN for L x L lattices (VAN).

A variational autoregressive network (Wu, Wang & Zhang, PRL 122, 080602 (2019)) factorises

    q(s) = prod_i q(s_i | s_1 .. s_{i-1}),      q(s_i = +1 | s_<i) = sigmoid(logit_i(s_<i)),

over the sites in raster order (lattice site = row * L + column, the numbering of
:mod:`boltzgen.energy.lattice`), so ``log_prob`` is normalized and exact, and ``sample`` draws
exact samples with one network pass per site. Units are spins +-1 (``visible="spin"``) or
{0, 1} (``visible="binary"``); internally the network always sees spins s = 2x - 1.

K-state units (``visible="categorical"``, ``n_states=K``: values 0 .. K-1, e.g. Potts states)
replace the logit by K logits per site and the spin input by its one-hot code:
q(s_i = k | s_<i) = softmax(logits_i(s_<i))_k. With one channel (two-state units) the networks
are exactly the binary ones above; with K channels every per-site quantity (inputs, degrees of
MADE, the channels of the PixelCNN's first layer and output) is repeated K times.

Z2 symmetrisation (``z2=True``): q_sym(s) = (q(s) + q(-s)) / 2, i.e. ``log_prob`` is
logsumexp(log q(s), log q(-s)) - log 2 (one pass over the doubled batch), and ``sample`` draws
s ~ q and flips it with a random sign, which samples q_sym exactly. ``conditional_logits`` are
always those of the unsymmetrised q. Z2 needs two-state units.

Sampling is free of host synchronisation: the uniforms of all sites are drawn up front and site
i is set by ``uniform < sigmoid(logit_i)`` (K states: the number of entries of the cumulative
softmax below the uniform); the loops run over sites (Python integers), never
over data. Both models have a cached sampler (the default) and the naive one
(:meth:`AutoregressiveModel.sample_naive`: a full forward pass per site) which, given the same
generator, return the same states.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Generator

import torch
import torch.nn.functional as nnf
from torch import Tensor, nn

from ..energy.exact import ExactDistribution, check_enumerable, log_weights_by_enumeration
from ..errors import BoltzgenError
from .base import Model

__all__ = [
    "AutoregressiveModel",
    "MADE",
    "PixelCNN",
    "drive_site_streams",
    "sample_site_mixture",
]

_VISIBLE_KINDS = ("spin", "binary", "categorical")


def drive_site_streams(
    streams: list[Generator[Tensor, Tensor, None]],
    choose: Callable[[int, list[Tensor]], Tensor],
    n_sites: int,
) -> Tensor:
    """Run :meth:`AutoregressiveModel.site_logits_stream` generators in lockstep: at site i,
    ``choose(i, [logits of each stream])`` gives the site's internal values ``(n,)``, which
    every stream receives. Returns the internal values ``(n, N)``."""
    logits = [next(stream) for stream in streams]
    values = []
    for i in range(n_sites):
        values.append(choose(i, logits))
        if i + 1 < n_sites:
            logits = [stream.send(values[-1]) for stream in streams]
    return torch.stack(values, 1)


@torch.no_grad()
def sample_site_mixture(
    first: AutoregressiveModel, second: AutoregressiveModel, alpha: float, n: int
) -> Tensor:
    """``n`` states ``(n, N)`` drawn site by site from alpha p_i + (1 - alpha) q_i, the mixture
    of the conditionals of ``first`` (p) and ``second`` (q) at the prefix drawn so far (both
    unsymmetrised, same units), with the cached passes of both models; values in ``second``'s
    convention. Uniforms are drawn up front from torch's global generator (no host
    synchronisation)."""
    reference = second._reference()
    uniforms = torch.rand(n, second.n_sites, device=reference.device, dtype=reference.dtype)

    def choose(i: int, logits: list[Tensor]) -> Tensor:
        p = first.site_probabilities(logits[0]).to(reference.dtype)
        q = second.site_probabilities(logits[1])
        return second.draw_site(alpha * p + (1 - alpha) * q, uniforms[:, i])

    streams = [first.site_logits_stream(n), second.site_logits_stream(n)]
    return second._values(drive_site_streams(streams, choose, second.n_sites))


class AutoregressiveModel(nn.Module, Model):
    """Base of the autoregressive models: normalized, discrete, exact samples.

    Subclasses implement :meth:`_logits` (site features ``(B, N, C)`` -> logits ``(B, N, C)``
    where the logits of site i depend on the features of sites < i only; C =
    :attr:`channels`) and may override :meth:`site_logits_stream` with a cached exact version.

    Arguments:
        n_sites: Number of units N.
        z2: Symmetrise under the global flip s -> -s (two-state units only).
        visible: ``"spin"`` (+-1), ``"binary"`` ({0, 1}) or ``"categorical"`` (0 .. K-1).
        n_states: K, the values of a categorical unit (2 for spin and binary units).
    """

    normalized = True
    discrete = True
    reparameterized = False

    def __init__(
        self, n_sites: int, z2: bool = False, visible: str = "spin", n_states: int = 2
    ) -> None:
        super().__init__()
        if n_sites < 1:
            raise BoltzgenError(f"an autoregressive model needs >= 1 site, got {n_sites}")
        if visible not in _VISIBLE_KINDS:
            raise BoltzgenError(f"visible must be one of {_VISIBLE_KINDS}, got {visible!r}")
        if visible == "categorical" and n_states < 2:
            raise BoltzgenError(f"categorical units need n_states >= 2, got {n_states}")
        if visible != "categorical" and n_states != 2:
            raise BoltzgenError(
                f"{visible} units have 2 states, got n_states = {n_states}: use visible = "
                '"categorical" for K-state units'
            )
        if z2 and visible == "categorical":
            raise BoltzgenError(
                "z2 is the global flip of two-state units; categorical (K-state) units have no "
                "such symmetry: set z2 = false"
            )
        self.n_sites = int(n_sites)
        self.z2 = bool(z2)
        self.visible = visible
        self.n_states = int(n_states)
        #: Features per site and logits per site: K for categorical units, else 1.
        self.channels = self.n_states if visible == "categorical" else 1
        self.event_shape = torch.Size((self.n_sites,))

    @property
    def spin(self) -> bool:
        """Whether units take values +-1 (else {0, 1})."""
        return self.visible == "spin"

    def _reference(self) -> Tensor:
        """A parameter: the device and dtype of the model."""
        return next(self.parameters())

    @property
    def categorical(self) -> bool:
        """Whether units take K values 0 .. K-1 (softmax conditionals)."""
        return self.visible == "categorical"

    # ------------------------------------------------------------------------- the network
    def _logits(self, features: Tensor) -> Tensor:
        """Logits of the conditionals from site features ``(B, N, C)``: ``(B, N, C)`` (C = 1:
        logit of s_i = +1; C = K: the K logits of s_i)."""
        raise NotImplementedError

    def _spins(self, x: Tensor) -> Tensor:
        """States ``(B, N)`` -> the internal values: spins +-1, or the levels 0 .. K-1."""
        x = x.to(self._reference().dtype)
        return 2 * x - 1 if self.visible == "binary" else x

    def _values(self, s: Tensor) -> Tensor:
        return (s + 1) / 2 if self.visible == "binary" else s

    def _site_features(self, s: Tensor) -> Tensor:
        """Internal values ``(...)`` -> network features ``(..., C)``: the spin, or one-hot."""
        if self.categorical:
            return nnf.one_hot(s.long(), self.n_states).to(s.dtype)
        return s[..., None]

    def site_probabilities(self, logits: Tensor) -> Tensor:
        """One site's conditional from its logits ``(B, C)``: q(s_i = +1) ``(B, 1)`` for
        two-state units, the K class probabilities ``(B, K)`` for categorical ones."""
        return torch.softmax(logits, -1) if self.categorical else torch.sigmoid(logits)

    def draw_site(self, probabilities: Tensor, uniforms: Tensor) -> Tensor:
        """One site's internal values ``(B,)`` (spins +-1, or levels) from its
        :meth:`site_probabilities` (of this model or a mixture of such) and uniforms ``(B,)``:
        +1 where the uniform is below q(+1); the number of cumulative class probabilities
        below it for K states."""
        if not self.categorical:
            return torch.where(uniforms < probabilities[:, 0], 1.0, -1.0).to(probabilities.dtype)
        below = probabilities.cumsum(-1) < uniforms[:, None]
        return below.sum(-1).clamp(max=self.n_states - 1).to(probabilities.dtype)

    def _draw(self, logits: Tensor, uniforms: Tensor) -> Tensor:
        """One site's values ``(B,)`` from its logits ``(B, C)`` and uniforms ``(B,)``."""
        return self.draw_site(self.site_probabilities(logits), uniforms)

    def conditional_logits(self, x: Tensor) -> Tensor:
        """Logits of the unsymmetrised q's conditionals per site from states ``(B, N)``:
        logit q(x_i = +1 (or 1) | x_<i), ``(B, N)``, for two-state units; the K logits of
        q(x_i = k | x_<i), ``(B, N, K)``, for categorical units. Entry i does not depend on x_j
        for j >= i."""
        logits = self._logits(self._site_features(self._spins(x)))
        return logits if self.categorical else logits[..., 0]

    def _log_prob_spins(self, s: Tensor) -> Tensor:
        logits = self._logits(self._site_features(s))
        if not self.categorical:
            return nnf.logsigmoid(s * logits[..., 0]).sum(-1)
        chosen = torch.log_softmax(logits, -1).gather(-1, s.long()[..., None])
        return chosen[..., 0].sum(-1)

    def log_prob(self, x: Tensor) -> Tensor:
        """Normalized log q(x) (log q_sym with ``z2``) of states ``(B, N)``: ``(B,)``."""
        s = self._spins(x)
        if not self.z2:
            return self._log_prob_spins(s)
        both = self._log_prob_spins(torch.cat([s, -s])).view(2, -1)
        return torch.logsumexp(both, 0) - math.log(2.0)

    # ------------------------------------------------------------------------- sampling
    def _uniforms(self, n: int, generator: torch.Generator | None) -> Tensor:
        reference = self._reference()
        return torch.rand(
            n, self.n_sites, generator=generator, device=reference.device, dtype=reference.dtype
        )

    def site_logits_stream(self, n: int) -> Generator[Tensor, Tensor, None]:
        """The unsymmetrised conditionals of q site by site, for a sampler that chooses each
        site's value itself (:func:`sample_site_mixture`): yields the logits ``(n, C)`` of site
        0; sending it that site's internal values ``(n,)`` (spins +-1, or levels 0..K-1) yields
        the logits of site 1, and so on. This version makes a full network pass per site; MADE
        and the PixelCNN override it with cached passes (a few small products per site)."""
        s = self._reference().new_zeros(n, self.n_sites)
        for i in range(self.n_sites):
            s[:, i] = yield self._logits(self._site_features(s))[:, i]

    def _sample_spins(self, uniforms: Tensor) -> Tensor:
        """Internal values ``(n, N)`` of q from uniforms ``(n, N)``: :meth:`_draw` per site on
        the logits of :meth:`site_logits_stream`."""
        return drive_site_streams(
            [self.site_logits_stream(uniforms.shape[0])],
            lambda i, logits: self._draw(logits[0], uniforms[:, i]),
            self.n_sites,
        )

    def _sample_spins_naive(self, uniforms: Tensor) -> Tensor:
        s = torch.zeros_like(uniforms)
        for i in range(self.n_sites):
            s[:, i] = self._draw(self._logits(self._site_features(s))[:, i], uniforms[:, i])
        return s

    def _finish(self, s: Tensor, generator: torch.Generator | None) -> Tensor:
        if self.z2:
            flip = torch.rand(s.shape[0], 1, generator=generator, device=s.device, dtype=s.dtype)
            s = s * torch.where(flip < 0.5, 1.0, -1.0)
        return self._values(s)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` exact independent states ``(n, N)`` (no gradient), in the model's dtype."""
        return self._finish(self._sample_spins(self._uniforms(n, generator)), generator)

    @torch.no_grad()
    def sample_naive(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """:meth:`sample` by a full forward pass per site (the reference of the cached one)."""
        return self._finish(self._sample_spins_naive(self._uniforms(n, generator)), generator)

    def sample_and_log_prob(self, n: int) -> tuple[Tensor, Tensor]:
        """``n`` states (detached) and their log q (differentiable in the parameters)."""
        x = self.sample(n)
        return x, self.log_prob(x)

    # ------------------------------------------------------------------------- enumeration
    def exact(self) -> ExactDistribution:
        """The model's distribution over all K**N states (<= 2**24), by enumeration in
        float64."""
        what = f"exact distribution of {type(self).__name__}"
        check_enumerable(self.n_sites, what, self.n_states)
        model = copy.deepcopy(self).to(torch.float64).eval()
        with torch.no_grad():
            log_q = log_weights_by_enumeration(
                model.log_prob,
                self.n_sites,
                self.spin,
                self._reference().device,
                levels=self.n_states,
            )
        return ExactDistribution(log_q, self.spin, self.n_states)


# ============================================================================= MADE
class _MaskedLinear(nn.Linear):
    """A dense layer whose weight is multiplied by a fixed 0/1 mask ``(out, in)``."""

    def __init__(self, mask: Tensor) -> None:
        super().__init__(mask.shape[1], mask.shape[0])
        self.register_buffer("mask", mask.to(self.weight.dtype))

    @property
    def masked_weight(self) -> Tensor:
        return self.weight * self.mask

    def forward(self, x: Tensor) -> Tensor:
        return nnf.linear(x, self.masked_weight, self.bias)


class MADE(AutoregressiveModel):
    r"""Masked autoencoder for distribution estimation (Germain et al. 2015) over N units.

    Input unit j has degree j + 1 (1..N); hidden units get degrees 1..N-1 in ascending order,
    evenly spread (unit k of a layer of width W: 1 + floor(k (N - 1) / W)); a hidden unit of
    degree d sees inputs of degree <= d and hidden units of degree <= d, and output i sees hidden
    units of degree <= i (strictly below its own degree i + 1): logit i depends on s_<i only.
    ``depth = 0`` is the linear autoregressive model logit_i = b_i + sum_{j<i} W_ij s_j. With
    K-state units each site has K inputs (its one-hot code) and K outputs, all of its degree.

    Arguments:
        n_sites: Number of units N.
        depth: Hidden layers (0: linear).
        width: Units per hidden layer.
        residual: Hidden layers 2.. add their input (h <- h + act(W h + b)).
        z2: Z2-symmetrise (see the module docstring).
        visible: ``"spin"``, ``"binary"`` or ``"categorical"``.
        n_states: K of categorical units.

    The cached sampler (:meth:`sample`) updates the first layer's pre-activations by one column
    per site and evaluates only the hidden units of degree <= i (a prefix, as degrees are
    sorted) and output i for site i.
    """

    def __init__(
        self,
        n_sites: int,
        depth: int = 2,
        width: int = 64,
        residual: bool = False,
        z2: bool = False,
        visible: str = "spin",
        n_states: int = 2,
    ) -> None:
        super().__init__(n_sites, z2, visible, n_states)
        if depth < 0 or width < 1:
            raise BoltzgenError(f"made needs depth >= 0 and width >= 1, got {depth}, {width}")
        self.depth, self.width, self.residual = int(depth), int(width), bool(residual)
        n = self.n_sites
        inputs = torch.arange(1, n + 1)
        units = inputs.repeat_interleave(self.channels)  # degree of each input and output unit
        hidden = 1 + torch.div(torch.arange(width) * max(n - 1, 1), width, rounding_mode="floor")
        if depth == 0:
            self.hidden_layers = nn.ModuleList()
            self.activations = nn.ModuleList()
            self.output = _MaskedLinear((units[:, None] > units[None, :]).double())
        else:
            masks = [(hidden[:, None] >= units[None, :]).double()]
            masks += [(hidden[:, None] >= hidden[None, :]).double()] * (depth - 1)
            self.hidden_layers = nn.ModuleList(_MaskedLinear(m) for m in masks)
            self.activations = nn.ModuleList(nn.PReLU(width, 0.5) for _ in range(depth))
            self.output = _MaskedLinear((units[:, None] > hidden[None, :]).double())
        #: Hidden units of degree <= i for each site i (what output i sees), N Python ints.
        self.prefix: list[int] = (hidden[None, :] <= inputs[:, None] - 1).sum(1).tolist()

    def _hidden(self, s: Tensor) -> Tensor:
        h = s
        for index, (layer, activation) in enumerate(zip(self.hidden_layers, self.activations)):
            update = activation(layer(h))
            h = h + update if self.residual and index > 0 else update
        return h

    def _logits(self, features: Tensor) -> Tensor:
        batch = features.shape[0]
        out = self.output(self._hidden(features.reshape(batch, -1)))
        return out.view(batch, self.n_sites, self.channels)

    def site_logits_stream(self, n: int) -> Generator[Tensor, Tensor, None]:
        """Cached: the first layer's pre-activations grow by one site's inputs per site, and
        (degree-sorted units) site i's logits read only the first ``prefix[i]`` hidden units."""
        n_sites, channels = self.n_sites, self.channels
        prefix = self.prefix
        if self.depth == 0:
            weight = self.output.masked_weight  # (N C, N C), block strictly lower triangular
            logits = self.output.bias.expand(n, n_sites * channels).clone()
            for i in range(n_sites):
                units = slice(i * channels, (i + 1) * channels)
                value = yield logits[:, units].clone()
                logits.addmm_(self._site_features(value), weight[:, units].T)
            return
        first = self.hidden_layers[0]
        first_weight = first.masked_weight  # (W, N C)
        pre = first.bias.expand(n, self.width).clone()
        out_weight, out_bias = self.output.masked_weight, self.output.bias
        hidden = [(layer.masked_weight, layer.bias) for layer in self.hidden_layers[1:]]
        slopes = [activation.weight for activation in self.activations]
        for i in range(n_sites):
            k, units = prefix[i], slice(i * channels, (i + 1) * channels)
            if k == 0:
                logit = out_bias[units].expand(n, channels)
            else:
                h = nnf.prelu(pre[:, :k], slopes[0][:k])
                for (weight, bias), slope in zip(hidden, slopes[1:]):
                    # degree-sorted: the prefix only sees the prefix
                    update = nnf.prelu(nnf.linear(h, weight[:k, :k], bias[:k]), slope[:k])
                    h = h + update if self.residual else update
                logit = h @ out_weight[units, :k].T + out_bias[units]
            value = yield logit
            pre.addmm_(self._site_features(value), first_weight[:, units].T)  # new site's inputs


# ============================================================================= PixelCNN
class _MaskedConv2d(nn.Module):
    r"""A raster-order masked convolution of half size k: output (r, c) sees the rows r-k..r-1
    (columns c-k..c+k) and the row r at columns c-k..c-1 (type A) or c-k..c (type B).

    It is two convolutions: the rows above (kernel k x (2k + 1)) on an input padded with zeros
    above and, when ``periodic``, circularly in the columns (the wrapped columns of earlier rows
    are earlier sites: the AR property holds); and the current row (kernel 1 x k or 1 x (k + 1))
    on an input padded with zeros on the left (wrapping there would reach later sites).
    """

    def __init__(
        self, c_in: int, c_out: int, half: int, include_center: bool, periodic: bool
    ) -> None:
        super().__init__()
        self.half, self.include_center, self.periodic = half, include_center, periodic
        fan_in = c_in * (half * (2 * half + 1) + half + int(include_center))
        bound = 1.0 / math.sqrt(fan_in)
        self.vertical = nn.Parameter(torch.empty(c_out, c_in, half, 2 * half + 1))
        self.horizontal = nn.Parameter(torch.empty(c_out, c_in, 1, half + int(include_center)))
        self.bias = nn.Parameter(torch.empty(c_out))
        for parameter in (self.vertical, self.horizontal, self.bias):
            nn.init.uniform_(parameter, -bound, bound)

    def forward(self, x: Tensor) -> Tensor:
        """``(B, C_in, H, W)`` -> ``(B, C_out, H, W)``."""
        k, height, width = self.half, x.shape[-2], x.shape[-1]
        columns = nnf.pad(x, (k, k, 0, 0), mode="circular" if self.periodic else "constant")
        above = nnf.conv2d(nnf.pad(columns, (0, 0, k, 0)), self.vertical)[..., :height, :]
        row = nnf.conv2d(nnf.pad(x, (k, 0, 0, 0)), self.horizontal)[..., :width]
        return above + row + self.bias[:, None, None]


class PixelCNN(AutoregressiveModel):
    r"""Masked-convolution autoregressive model of an L x L lattice (VAN's PixelCNN).

    ``depth`` masked convolutions with ``width`` channels: the first (type A: excludes the site
    itself) of half kernel size ``half_kernel_size`` (kernel (2k + 1) x (2k + 1), rows below
    masked), the others (type B: include the site's own features) of half size
    ``hidden_half_kernel_size``, each followed by a PReLU, then a 1 x 1 convolution to one logit
    per site (K logits for categorical units, whose one-hot code is the K input channels).
    ``residual`` adds each hidden layer's input to its output.

    Periodic inputs (``periodic=True``): the columns of the rows above are padded circularly (so
    a site near the left edge sees the right edge of the rows above, as on the torus), the
    current row and the rows above the first row are padded with zeros: wrapping there would
    reach sites later in raster order. The two torus bonds that the masked kernels cannot reach
    are given to the first layer explicitly (a 1 x 1 convolution of two wrap channels): a site of
    the last row gets the spin of the first row below it, (L-1, c) <- (0, c), and a site of the
    last column the spin at the start of its row, (r, L-1) <- (r, 0); both are earlier sites, so
    the AR property holds. With ``periodic=False`` all padding is zero and there are no wrap
    channels.

    Sites are numbered row-major (site = row * L + column): states are ``(B, L * L)``.

    The cached sampler exploits that, while row r is sampled, every layer's features of the rows
    above are fixed: at the start of row r it computes the rows-above part of every layer for the
    whole row (one small convolution per layer), and at site (r, c) only the current-row part of
    every layer at that site (k or k + 1 taps) and the output: O(depth k width^2) per site
    instead of a full pass over the lattice.

    Arguments:
        L: Linear size of the lattice (N = L^2 sites).
        depth: Masked convolutions (>= 1).
        width: Channels of the hidden layers.
        half_kernel_size: k of the first layer (1 <= k <= L).
        hidden_half_kernel_size: k of the other layers (1 <= k <= L).
        residual: Residual connections around the hidden layers.
        periodic: Circular column padding of the rows above (see above).
        z2: Z2-symmetrise.
        visible: ``"spin"``, ``"binary"`` or ``"categorical"``.
        n_states: K of categorical units.
    """

    def __init__(
        self,
        L: int,
        depth: int = 3,
        width: int = 16,
        half_kernel_size: int = 3,
        hidden_half_kernel_size: int = 1,
        residual: bool = True,
        periodic: bool = True,
        z2: bool = False,
        visible: str = "spin",
        n_states: int = 2,
    ) -> None:
        super().__init__(L * L, z2, visible, n_states)
        if depth < 1 or width < 1:
            raise BoltzgenError(f"pixelcnn needs depth >= 1 and width >= 1, got {depth}, {width}")
        for name, k in (
            ("half_kernel_size", half_kernel_size),
            ("hidden_half_kernel_size", hidden_half_kernel_size),
        ):
            if not 1 <= k <= L:
                raise BoltzgenError(f"pixelcnn needs 1 <= {name} <= L = {L}, got {k}")
        self.L, self.depth, self.width = int(L), int(depth), int(width)
        self.residual, self.periodic = bool(residual), bool(periodic)
        channels = self.channels
        layers = [_MaskedConv2d(channels, width, half_kernel_size, False, periodic)]
        layers += [
            _MaskedConv2d(width, width, hidden_half_kernel_size, True, periodic)
            for _ in range(depth - 1)
        ]
        self.layers = nn.ModuleList(layers)
        self.activations = nn.ModuleList(nn.PReLU(width, 0.5) for _ in range(depth))
        self.output = nn.Conv2d(width, channels, 1)
        #: First-layer weights of the wrap channels (down-wrap, right-wrap; C each):
        #: ``(width, 2 C, 1, 1)``.
        self.wrap = nn.Conv2d(2 * channels, width, 1, bias=False) if periodic else None

    def _wrap_inputs(self, grid: Tensor) -> Tensor:
        """The wrap channels of features ``(B, C, L, L)``: ``(B, 2 C, L, L)``, channels 0..C-1
        holding f(0, c) in the last row, channels C..2C-1 f(r, 0) in the last column, zeros
        elsewhere."""
        batch, channels, L = grid.shape[0], grid.shape[1], self.L
        down = torch.cat([grid.new_zeros(batch, channels, L - 1, L), grid[:, :, :1, :]], dim=2)
        right = torch.cat([grid.new_zeros(batch, channels, L, L - 1), grid[:, :, :, :1]], dim=3)
        return torch.cat([down, right], dim=1)

    def _grid_logits(self, grid: Tensor) -> Tensor:
        """Features ``(B, C, H, L)`` -> logits ``(B, C, H, L)``."""
        first = self.layers[0](grid)
        if self.wrap is not None:
            first = first + self.wrap(self._wrap_inputs(grid))
        h = self.activations[0](first)
        for layer, activation in zip(self.layers[1:], self.activations[1:]):
            update = activation(layer(h))
            h = h + update if self.residual else update
        return self.output(h)

    def _logits(self, features: Tensor) -> Tensor:
        batch, channels = features.shape[0], self.channels
        grid = features.view(batch, self.L, self.L, channels).permute(0, 3, 1, 2)
        return self._grid_logits(grid).permute(0, 2, 3, 1).reshape(batch, -1, channels)

    def site_logits_stream(self, n: int) -> Generator[Tensor, Tensor, None]:
        """Cached: per row, the rows-above part of every layer at once; per site, only the
        current-row part of every layer at that site (a few small products)."""
        L, batch, C = self.L, n, self.channels
        channels = [C] + [self.width] * self.depth
        reference = self._reference()
        grids = [reference.new_zeros(batch, c, L, L) for c in channels]  # features f_0 .. f_D
        halves = [layer.half for layer in self.layers]
        out_weight, out_bias = self.output.weight[:, :, 0, 0], self.output.bias  # (C, W), (C,)
        if self.wrap is not None:
            wrap_down, wrap_right = self.wrap.weight[:, :C, 0, 0], self.wrap.weight[:, C:, 0, 0]
        slopes = [activation.weight for activation in self.activations]
        for r in range(L):
            # the rows-above part of each layer at row r: depends on rows < r only (fixed now)
            above = []
            mode = "circular" if self.periodic else "constant"
            for layer, features in zip(self.layers, grids):
                k = layer.half
                slab = features[:, :, max(0, r - k) : r]
                slab = nnf.pad(slab, (0, 0, k - slab.shape[2], 0))  # zero rows above row 0
                slab = nnf.pad(slab, (k, k, 0, 0), mode=mode)
                above.append(nnf.conv2d(slab, layer.vertical)[:, :, 0] + layer.bias[:, None])
            # current-row buffers, zero-padded on the left by the reading layer's half size
            rows = [nnf.pad(features[:, :, r], (k, 0)) for features, k in zip(grids, halves)]
            for c in range(L):
                h = None
                for index, layer in enumerate(self.layers):
                    k, width = layer.half, layer.half + int(layer.include_center)
                    window = rows[index][:, :, c : c + width]  # columns c-k .. c-1 (or c)
                    pre = above[index][:, :, c] + torch.einsum(
                        "bcj,ocj->bo", window, layer.horizontal[:, :, 0]
                    )
                    if index == 0 and self.wrap is not None:
                        if r == L - 1:  # the bond to the first row, (0, c)
                            pre = pre + grids[0][:, :, 0, c] @ wrap_down.T
                        if c == L - 1:  # the bond to the start of the row, (r, 0)
                            pre = pre + grids[0][:, :, r, 0] @ wrap_right.T
                    update = nnf.prelu(pre, slopes[index])
                    h = h + update if (self.residual and index > 0) else update
                    grids[index + 1][:, :, r, c] = h
                    if index + 1 < self.depth:
                        rows[index + 1][:, :, halves[index + 1] + c] = h
                value = yield h @ out_weight.T + out_bias
                features = self._site_features(value)
                grids[0][:, :, r, c] = features
                rows[0][:, :, halves[0] + c] = features

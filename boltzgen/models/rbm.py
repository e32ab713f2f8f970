r"""Restricted Boltzmann machine with binary hidden units and +-1 or {0, 1} visible units.

Joint energy E(v, h) = -a . v - b . h - v^T W h with hidden units h in {0, 1}^H and visible
units v in {-1, +1}^V (``visible="spin"``) or {0, 1}^V (``visible="binary"``). Summing out h gives
the free energy

    F(v) = -a . v - sum_j softplus(b_j + (v W)_j),        q(v) = exp(-F(v)) / Z_theta,

so that log q~(v) = -F(v) is the model's normalizer-free log-density. Summing out v instead gives
the hidden free energy F_h(h) = -b . h - sum_i g(a_i + (W h)_i) with g = log 2cosh (spins) or
softplus (binary), which is what exact log Z enumerates when H < V.
"""

from __future__ import annotations

import copy
import functools
import math

import torch
import torch.nn.functional as nnf
from torch import Tensor, nn

from ..energy.base import Energy
from ..energy.exact import (
    MAX_ENUMERATION_UNITS,
    ExactDistribution,
    check_enumerable,
    enumerate_states,
)
from ..errors import BoltzgenError
from .base import Model

__all__ = ["RBM", "RBMEnergy"]

_VISIBLE_KINDS = ("spin", "binary")


class RBM(nn.Module, Model):
    """Restricted Boltzmann machine (an unnormalised model with exact free energy).

    As a :class:`~boltzgen.models.base.Model` it is unnormalized and discrete: :meth:`log_prob`
    is log q~(v) = -F(v), :meth:`log_normalizer` the exact log Z_theta (small layers), and
    :meth:`sample` draws exact samples when the visible layer can be enumerated (V <= 24), else
    the states of block-Gibbs chains.

    Arguments:
        n_visible: Number of visible units V.
        n_hidden: Number of hidden units H.
        visible: ``"spin"`` for visible values +-1, ``"binary"`` for {0, 1}. Hidden units are
            always {0, 1}.
        init_std: Standard deviation of the initial Gaussian weights (biases start at 0).
        seed: Seed of the initial weights (``None``: torch's global generator).
        dtype: Parameter dtype (float32 or float64).
    """

    normalized = False
    discrete = True
    #: Block-Gibbs sweeps from uniform states behind :meth:`sample` when V > 24.
    gibbs_sweeps = 1000

    def __init__(
        self,
        n_visible: int,
        n_hidden: int,
        visible: str = "spin",
        init_std: float = 0.01,
        seed: int | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        if n_visible < 1 or n_hidden < 1:
            raise BoltzgenError(
                f"an RBM needs >= 1 visible and hidden units, got {n_visible}, {n_hidden}"
            )
        if visible not in _VISIBLE_KINDS:
            raise BoltzgenError(f"visible must be one of {_VISIBLE_KINDS}, got {visible!r}")
        generator = None if seed is None else torch.Generator().manual_seed(seed)
        self.visible = visible
        self.weight = nn.Parameter(
            init_std * torch.randn(n_visible, n_hidden, generator=generator, dtype=dtype)
        )
        self.visible_bias = nn.Parameter(torch.zeros(n_visible, dtype=dtype))
        self.hidden_bias = nn.Parameter(torch.zeros(n_hidden, dtype=dtype))
        self.event_shape = torch.Size((n_visible,))

    @property
    def n_visible(self) -> int:
        return self.weight.shape[0]

    @property
    def n_hidden(self) -> int:
        return self.weight.shape[1]

    @property
    def spin(self) -> bool:
        """Whether visible units take values +-1 (else {0, 1})."""
        return self.visible == "spin"

    # ----------------------------------------------------------------------------- free energies
    def free_energy(self, v: Tensor, scale: float = 1.0) -> Tensor:
        """F(v) of visible states ``(batch, V)``, shape ``(batch,)``; log q~(v) = -F(v).

        ``scale`` multiplies every parameter (used by AIS: scale 0 is the uniform distribution).
        """
        v = v.to(self.weight.dtype)
        hidden_input = scale * (v @ self.weight + self.hidden_bias)
        return -scale * (v @ self.visible_bias) - nnf.softplus(hidden_input).sum(-1)

    def hidden_free_energy(self, h: Tensor, scale: float = 1.0) -> Tensor:
        """F_h(h) of hidden states ``(batch, H)`` with the visible units summed out,
        ``(batch,)``."""
        h = h.to(self.weight.dtype)
        visible_input = scale * (h @ self.weight.T + self.visible_bias)
        if self.spin:  # sum over v_i = +-1 of exp(v_i x) = 2 cosh x
            a = visible_input.abs()
            per_unit = (a + torch.log1p(torch.exp(-2 * a))).sum(-1)
        else:
            per_unit = nnf.softplus(visible_input).sum(-1)
        return -scale * (h @ self.hidden_bias) - per_unit

    # ----------------------------------------------------------------------------- conditionals
    def hidden_probs(self, v: Tensor, scale: float = 1.0) -> Tensor:
        """p(h_j = 1 | v), shape ``(batch, H)``."""
        return torch.sigmoid(scale * (v.to(self.weight.dtype) @ self.weight + self.hidden_bias))

    def visible_probs(self, h: Tensor, scale: float = 1.0) -> Tensor:
        """p(v_i = +1 | h) (spins) or p(v_i = 1 | h) (binary), shape ``(batch, V)``."""
        x = scale * (h @ self.weight.T + self.visible_bias)
        return torch.sigmoid(2 * x if self.spin else x)

    def sample_hidden(
        self, v: Tensor, generator: torch.Generator | None = None, scale: float = 1.0
    ) -> Tensor:
        """h ~ p(h | v), shape ``(batch, H)``, values {0, 1}."""
        probs = self.hidden_probs(v, scale)
        return (
            torch.rand(probs.shape, generator=generator, device=probs.device, dtype=probs.dtype)
            < probs
        ).to(probs.dtype)

    def sample_visible(
        self, h: Tensor, generator: torch.Generator | None = None, scale: float = 1.0
    ) -> Tensor:
        """v ~ p(v | h), shape ``(batch, V)``, values +-1 or {0, 1}."""
        probs = self.visible_probs(h, scale)
        bits = (
            torch.rand(probs.shape, generator=generator, device=probs.device, dtype=probs.dtype)
            < probs
        ).to(probs.dtype)
        return 2 * bits - 1 if self.spin else bits

    @torch.no_grad()
    def gibbs_step(
        self, v: Tensor, generator: torch.Generator | None = None, scale: float = 1.0
    ) -> Tensor:
        """One block-Gibbs sweep v -> h -> v' (no gradient), shape ``(batch, V)``."""
        return self.sample_visible(self.sample_hidden(v, generator, scale), generator, scale)

    def random_visible(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """Uniformly random visible states, shape ``(n, V)``, on the parameters' device and
        dtype."""
        bits = (
            torch.rand(
                n,
                self.n_visible,
                generator=generator,
                device=self.weight.device,
                dtype=self.weight.dtype,
            )
            < 0.5
        ).to(self.weight.dtype)
        return 2 * bits - 1 if self.spin else bits

    @torch.no_grad()
    def sample(
        self,
        n: int,
        k_steps: int | None = None,
        generator: torch.Generator | None = None,
        init: Tensor | None = None,
    ) -> Tensor:
        """Visible samples ``(n, V)`` in the model's dtype.

        Arguments:
            n: Number of samples.
            k_steps: Block-Gibbs sweeps from ``init`` (default: uniform states). ``None``: exact
                samples by enumeration when V <= 24, else :attr:`gibbs_sweeps` sweeps.
            generator: Random generator on the model's device.
            init: Start states of the chains, ``(n, V)``.
        """
        if k_steps is None and init is None and self.n_visible <= MAX_ENUMERATION_UNITS:
            return self.exact().sample(n, generator).to(self.weight.dtype)
        v = self.random_visible(n, generator) if init is None else init.to(self.weight.dtype)
        for _ in range(self.gibbs_sweeps if k_steps is None else k_steps):
            v = self.gibbs_step(v, generator)
        return v

    def sample_and_log_prob(self, n: int) -> tuple[Tensor, Tensor]:
        """:meth:`sample` and the unnormalized log q~ = -F of the samples."""
        v = self.sample(n)
        return v, self.log_prob(v)

    # ----------------------------------------------------------------------------- normalisation
    def log_z_exact(self) -> Tensor:
        """Exact log Z_theta by enumerating the smaller layer (2**min(V, H) states, <= 2**24).

        Differentiable (autograd flows to the parameters). Returns a 0-d tensor.
        """
        if self.n_hidden <= self.n_visible:
            check_enumerable(self.n_hidden, "exact RBM log Z (enumerating the hidden layer)")
            parts = [
                torch.logsumexp(-self.hidden_free_energy(h), 0)
                for h in enumerate_states(
                    self.n_hidden, False, self.weight.device, self.weight.dtype
                )
            ]
        else:
            check_enumerable(self.n_visible, "exact RBM log Z (enumerating the visible layer)")
            parts = [
                torch.logsumexp(-self.free_energy(v), 0)
                for v in enumerate_states(
                    self.n_visible, self.spin, self.weight.device, self.weight.dtype
                )
            ]
        return torch.logsumexp(torch.stack(parts), 0)

    def log_prob(self, v: Tensor) -> Tensor:
        """Unnormalized log q~(v) = -F(v), ``(batch,)``; log q = log q~ -
        :meth:`log_normalizer`."""
        return -self.free_energy(v)

    def log_normalizer(self) -> Tensor:
        """The exact log Z_theta (:meth:`log_z_exact`)."""
        return self.log_z_exact()

    def exact(self) -> ExactDistribution:
        """The exact visible distribution by enumeration of the visible layer (V <= 24),
        float64."""
        check_enumerable(self.n_visible, "exact RBM visible distribution")
        model = copy.deepcopy(self).to(torch.float64)
        with torch.no_grad():
            return ExactDistribution.from_energy(
                model.free_energy, self.n_visible, self.spin, self.weight.device
            )

    @torch.no_grad()
    def log_z_ais(
        self, n_chains: int = 1000, n_betas: int = 10_000, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        """Annealed importance sampling estimate of log Z_theta (Neal 2001; Salakhutdinov &
        Murray 2008).

        Anneals from the RBM with all parameters scaled by 0 (uniform over 2**(V+H) joint states,
        log Z_0 = (V + H) log 2) to scale 1 on a linear ladder of ``n_betas`` scales, with one
        block-Gibbs sweep at each rung. Unbiased for Z (not log Z): the estimate of log Z is
        biased low by about var(w)/(2 mean(w)^2 n_chains).

        Returns:
            ``(log_z, standard_error)``, 0-d tensors; the error is the delta-method standard error
            std(w) / (mean(w) sqrt(n_chains)) of the log of the mean importance weight.
        """
        scales = torch.linspace(0.0, 1.0, n_betas + 1).tolist()
        v = self.random_visible(n_chains, generator)
        log_w = torch.zeros(n_chains, device=v.device, dtype=v.dtype)
        for previous, current in zip(scales[:-1], scales[1:]):
            log_w = log_w + self.free_energy(v, previous) - self.free_energy(v, current)
            v = self.gibbs_step(v, generator, current)
        log_z0 = (self.n_visible + self.n_hidden) * math.log(2.0)
        log_mean_w = torch.logsumexp(log_w, 0) - math.log(n_chains)
        w = torch.exp(log_w - log_mean_w)
        return log_z0 + log_mean_w, w.std() / math.sqrt(n_chains)


class RBMEnergy(Energy):
    """A frozen copy of an RBM used as a discrete target: u(v) = F(v), p(v) = exp(-F(v)) / Z.

    Arguments:
        rbm: The RBM; its parameters are copied (float64) and frozen, so training a model
            against this target never changes it.
    """

    def __init__(self, rbm: RBM) -> None:
        super().__init__(event_shape=(rbm.n_visible,), temperature=1.0, discrete=True)
        self.rbm = copy.deepcopy(rbm).to(torch.float64).requires_grad_(False)

    def _energy(self, x: Tensor) -> Tensor:
        return self.rbm.free_energy(x).to(x.dtype)

    @functools.cached_property
    def log_z(self) -> float | None:
        """Exact log Z by enumerating the RBM's smaller layer (``None`` when both exceed 24)."""
        if min(self.rbm.n_visible, self.rbm.n_hidden) > MAX_ENUMERATION_UNITS:
            return None
        return float(self.rbm.log_z_exact())

    @property
    def log_z_method(self) -> str | None:
        """``"enumeration"`` of the smaller layer, or ``None``."""
        return "enumeration" if self.log_z is not None else None

    def exact(self) -> ExactDistribution:
        """Exact visible distribution by enumeration (V <= 24)."""
        return self.rbm.exact()

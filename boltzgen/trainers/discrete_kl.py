r"""Forward KL (PCD), reverse KL (score function) and their sum for unnormalised discrete models.

The model is an energy-based model with a free energy F_theta (log q~ = -F_theta, q = q~/Z_theta),
e.g. :class:`boltzgen.models.RBM`; the target p = p~/Z has a reduced energy u (log p~ = -u). With
the normaliser-free log-ratio l(x) = log p~(x) - log q~(x) = -u(x) + F_theta(x):

- **forward KL** KL(p||q): grad = E_p[grad F] - E_q[grad F]. Surrogate
  ``mean F(data) - mean F(model samples)``; the model samples are the negative phase of
  persistent contrastive divergence (PCD-k: persistent Gibbs chains, k sweeps per step).
- **reverse KL** KL(q||p): grad = Cov_q(l, grad F) (the score-function / REINFORCE gradient
  E_q[(log q - log p) grad log q] with grad log q = -grad F + E_q grad F). Surrogate
  ``mean_j (l_j - b_j) F(y_j)`` with l detached and the leave-one-out baseline
  b_j = mean_{k != j} l_k, which makes the estimator unbiased for any batch size >= 2.
- **forward + reverse KL**: the sum of both surrogates on the same model samples.

The surrogate *values* are not the divergences; the named diagnostics are (see each function):
the dropped constants are log Z (target) and log Z_theta (model).
"""

from __future__ import annotations

from typing import Any, Protocol

import torch
from torch import Tensor

from ..energy.base import Energy
from ..errors import BoltzgenError
from .objective import NONFINITE_SAMPLES

__all__ = [
    "FreeEnergyModel",
    "PersistentChains",
    "PersistentChainObjective",
    "forward_kl_surrogate",
    "reverse_kl_surrogate",
    "ForwardKLPCD",
    "ReverseKLScore",
    "ForwardReverseKL",
    "sample_rows",
]


class FreeEnergyModel(Protocol):
    """What the discrete objectives need of a model (an :class:`~boltzgen.models.RBM` has it
    all)."""

    def free_energy(self, v: Tensor) -> Tensor: ...
    def gibbs_step(self, v: Tensor, generator: torch.Generator | None = None) -> Tensor: ...
    def random_visible(self, n: int, generator: torch.Generator | None = None) -> Tensor: ...


def sample_rows(data: Tensor, n: int, generator: torch.Generator | None = None) -> Tensor:
    """``n`` rows of ``data`` drawn uniformly with replacement, shape ``(n, *data.shape[1:])``."""
    index = torch.randint(data.shape[0], (n,), generator=generator, device=data.device)
    return data[index]


class PersistentChains:
    """Persistent Gibbs chains: the negative phase of PCD-k.

    Arguments:
        k_steps: Gibbs sweeps per call of :meth:`sample`.
        generator: Random generator on the model's device (``None``: torch's global one).

    The chains start from uniformly random states on first use (or when the batch size changes)
    and then persist across calls; they are the objective's state (``state_dict``).
    """

    def __init__(self, k_steps: int = 1, generator: torch.Generator | None = None) -> None:
        if k_steps < 1:
            raise BoltzgenError(f"PCD needs k_steps >= 1 Gibbs sweeps per step, got {k_steps}")
        self.k_steps = int(k_steps)
        self.generator = generator
        self.states: Tensor | None = None

    @torch.no_grad()
    def sample(self, model: FreeEnergyModel, n: int) -> Tensor:
        """Advance ``n`` chains by ``k_steps`` sweeps and return their states ``(n, V)``
        (detached)."""
        if self.states is None or self.states.shape[0] != n:
            self.states = model.random_visible(n, self.generator)
        v = self.states
        for _ in range(self.k_steps):
            v = model.gibbs_step(v, self.generator)
        self.states = v
        return v

    def state_dict(self) -> dict[str, Any]:
        return {"k_steps": self.k_steps, "states": self.states}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.k_steps = int(state["k_steps"])
        self.states = state["states"]


def forward_kl_surrogate(
    model: FreeEnergyModel, data: Tensor, model_samples: Tensor
) -> tuple[Tensor, dict[str, Tensor]]:
    """Forward-KL surrogate whose gradient is E_data[grad F] - E_model[grad F].

    Arguments:
        model: The model (free energy F, differentiable in its parameters).
        data: Target samples x ~ p, shape ``(B, V)``.
        model_samples: Model samples y ~ q (detached), shape ``(M, V)``.

    Returns:
        ``(loss, diagnostics)``; diagnostics ``"data_free_energy"`` = mean F(data) (equals the
        NLL minus log Z_theta, i.e. KL(p||q) - H(p) - log Z_theta) and ``"free_energy_gap"``
        = mean F(data) - mean F(model) (zero on average at a stationary point).
    """
    f_data = model.free_energy(data)
    f_model = model.free_energy(model_samples)
    loss = f_data.mean() - f_model.mean()
    return loss, {"data_free_energy": f_data.mean().detach(), "free_energy_gap": loss.detach()}


def reverse_kl_surrogate(
    model: FreeEnergyModel, target: Energy, model_samples: Tensor
) -> tuple[Tensor, dict[str, Tensor]]:
    """Reverse-KL score-function surrogate whose gradient is an unbiased estimate of Cov_q(l, grad
    F).

    Arguments:
        model: The model.
        target: The target energy u (log p~ = -u).
        model_samples: Model samples y ~ q (detached), shape ``(M, V)``, M >= 2.

    Returns:
        ``(loss, diagnostics)``; ``"reverse_kl_shifted"`` = mean(-l) = an unbiased estimate of
        KL(q||p) + log Z_theta - log Z (the reverse KL up to the two dropped log-normalisers),
        and ``"nonfinite_samples"``. Samples with a non-finite log-ratio (a NaN or infinite
        target energy) are left out of the loss, the baseline and the diagnostic; fewer than
        two finite ones give a NaN loss (the step is skipped).
    """
    f = model.free_energy(model_samples)
    log_ratio = (-target.energy(model_samples.to(f.dtype)) + f).detach()
    valid = torch.isfinite(log_ratio)
    m = valid.sum()
    kept = torch.where(valid, log_ratio, torch.zeros_like(log_ratio))
    baseline = (kept.sum() - kept) / (m - 1)
    terms = torch.where(valid, (kept - baseline) * f, torch.zeros_like(f))
    loss = terms.sum() / m
    return loss, {
        "reverse_kl_shifted": -kept.sum() / m,
        NONFINITE_SAMPLES: (~valid).sum().to(torch.float64),
    }


class PersistentChainObjective:
    """Base of the objectives that carry persistent Gibbs chains; the chains are checkpointed.

    Arguments:
        k_steps: Gibbs sweeps of the persistent chains per step.
        generator: Random generator of the chains.
    """

    #: Discrete objectives fit the target at its own temperature.
    temperature: float | None = None

    #: Target-energy evaluations per batch element of one step.
    energy_calls_per_sample = 0

    def __init__(self, k_steps: int = 1, generator: torch.Generator | None = None) -> None:
        self.chains = PersistentChains(k_steps, generator)

    def energy_evaluations(self, batch_size: int) -> int:
        """``energy_calls_per_sample * batch_size``."""
        return self.energy_calls_per_sample * batch_size

    def state_dict(self) -> dict[str, Any]:
        """The persistent chains."""
        return {"chains": self.chains.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the persistent chains."""
        self.chains.load_state_dict(state["chains"])


class ForwardKLPCD(PersistentChainObjective):
    """Forward KL / maximum likelihood on data with a PCD-k negative phase.

    Arguments:
        data: Target samples, shape ``(n_data, V)`` (exact samples or long MCMC).
        k_steps: Gibbs sweeps of the persistent chains per step.
        generator: Random generator on the data's device (batch indices and Gibbs noise).

    ``loss(model, batch_size)`` draws ``batch_size`` data rows and advances ``batch_size``
    persistent chains; it makes no target-energy evaluation.
    """

    name = "forward-kl"

    def __init__(
        self, data: Tensor, k_steps: int = 1, generator: torch.Generator | None = None
    ) -> None:
        super().__init__(k_steps, generator)
        self.data = data
        self.generator = generator

    def loss(self, model: FreeEnergyModel, batch_size: int) -> tuple[Tensor, dict[str, Tensor]]:
        x = sample_rows(self.data, batch_size, self.generator)
        return forward_kl_surrogate(model, x, self.chains.sample(model, batch_size))


class ReverseKLScore(PersistentChainObjective):
    """Reverse KL with the score-function gradient on PCD-k model samples (no data needed).

    Arguments:
        target: Target energy (discrete).
        k_steps: Gibbs sweeps of the persistent chains per step.
        generator: Random generator on the model's device.
    """

    name = "reverse-kl"
    energy_calls_per_sample = 1
    min_batch_size = 2  # the leave-one-out baseline of the score estimator

    def __init__(
        self, target: Energy, k_steps: int = 1, generator: torch.Generator | None = None
    ) -> None:
        super().__init__(k_steps, generator)
        self.target = target

    def loss(self, model: FreeEnergyModel, batch_size: int) -> tuple[Tensor, dict[str, Tensor]]:
        return reverse_kl_surrogate(model, self.target, self.chains.sample(model, batch_size))


class ForwardReverseKL(ForwardKLPCD):
    """KL(p||q) + KL(q||p): both surrogates on the same persistent-chain model samples.

    Arguments:
        target: Target energy.
        data: Target samples, shape ``(n_data, V)``.
        k_steps, generator: As in :class:`ForwardKLPCD`.
    """

    name = "forward+reverse-kl"
    energy_calls_per_sample = 1
    min_batch_size = 2  # the leave-one-out baseline of the score estimator

    def __init__(
        self,
        target: Energy,
        data: Tensor,
        k_steps: int = 1,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(data, k_steps, generator)
        self.target = target

    def loss(self, model: FreeEnergyModel, batch_size: int) -> tuple[Tensor, dict[str, Tensor]]:
        x = sample_rows(self.data, batch_size, self.generator)
        y = self.chains.sample(model, batch_size)
        forward, forward_diagnostics = forward_kl_surrogate(model, x, y)
        reverse, reverse_diagnostics = reverse_kl_surrogate(model, self.target, y)
        return forward + reverse, {**forward_diagnostics, **reverse_diagnostics}

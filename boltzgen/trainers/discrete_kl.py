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

**Normalized models** (``model.normalized``: the autoregressive :class:`~boltzgen.models.MADE`
and :class:`~boltzgen.models.PixelCNN`) use the same objectives with log q~ = log q =
``model.log_prob`` (so F_theta = -log q and log Z_theta = 0) and exact model samples
(``model.sample``) instead of persistent chains (``k_steps`` is then unused):

- forward KL is maximum likelihood, surrogate ``-mean log q(data)`` (no negative phase: its
  expectation E_q[grad log q] is zero);
- reverse KL is the VAN estimator (Wu, Wang & Zhang 2019): beta grad F_q =
  E_q[(u + log q - b) grad log q], surrogate ``mean_j (u_j + log q_j - b_j) log q(y_j)`` with the
  leave-one-out baseline (unbiased) or the batch mean (expectation (M - 1)/M times the
  gradient); optional beta annealing u_t = (1 - a^t) u and a schedule over several betas in one
  run (``betas``, ``steps_per_beta``: each beta trains for its share of steps, warm-started from
  the previous one, ending at the target's); diagnostics add the variational free energy per
  site, its standard error, the importance-weighted log Z estimate and the ESS
  (:func:`~boltzgen.samplers.weights.variational_estimates`), and a schedule keeps them at each
  beta's last step (:meth:`ReverseKLScore.schedule_results`).

An RBM's behaviour is unchanged: for it ``-log_prob`` is exactly ``free_energy``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Protocol

import torch
from torch import Tensor

from ..energy.base import Energy
from ..energy.lattice import DiscreteEnergy
from ..errors import BoltzgenError
from ..parallel import all_reduce_sum, world
from ..samplers.weights import variational_estimates
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
    "BASELINES",
    "SCHEDULE_ESTIMATES",
    "inverse_temperature",
]

#: Baselines b of the score-function estimator of reverse KL.
BASELINES = ("leave-one-out", "mean")

#: Diagnostics of :func:`reverse_kl_surrogate` that a beta schedule keeps at each beta's last
#: step (normalized models).
SCHEDULE_ESTIMATES = (
    "beta",
    "free_energy_per_site",
    "free_energy_standard_error",
    "log_z_estimate",
    "log_z_standard_error",
    "ess",
)


def inverse_temperature(target: Energy) -> float:
    """The beta of a spin or Potts target (``beta``), 1.0 for other targets (free energies in
    kT)."""
    return target.beta if isinstance(target, DiscreteEnergy) else 1.0


class FreeEnergyModel(Protocol):
    """What the discrete objectives need of a model (an :class:`~boltzgen.models.RBM` has it
    all; a normalized model needs ``normalized``, ``log_prob`` and ``sample`` only)."""

    normalized: bool

    def log_prob(self, v: Tensor) -> Tensor: ...
    def sample(self, n: int) -> Tensor: ...
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
    model: FreeEnergyModel, data: Tensor, model_samples: Tensor | None
) -> tuple[Tensor, dict[str, Tensor]]:
    """Forward-KL surrogate whose gradient is E_data[grad F] - E_model[grad F].

    Arguments:
        model: The model (free energy F = -log q~, differentiable in its parameters).
        data: Target samples x ~ p, shape ``(B, V)``.
        model_samples: Model samples y ~ q (detached), shape ``(M, V)``; ``None`` for a
            normalized model, whose surrogate is the negative log-likelihood alone.

    Returns:
        ``(loss, diagnostics)``; diagnostics ``"data_free_energy"`` = mean F(data) (equals the
        NLL minus log Z_theta, i.e. KL(p||q) - H(p) - log Z_theta) and ``"free_energy_gap"``
        = mean F(data) - mean F(model) (zero on average at a stationary point); for a
        normalized model ``"nll"`` = -mean log q(data) = KL(p||q) + H(p) (estimate).
    """
    if model_samples is None:
        nll = -model.log_prob(data).mean()
        return nll, {"nll": nll.detach()}
    f_data = model.free_energy(data)
    f_model = model.free_energy(model_samples)
    loss = f_data.mean() - f_model.mean()
    return loss, {"data_free_energy": f_data.mean().detach(), "free_energy_gap": loss.detach()}


def reverse_kl_surrogate(
    model: FreeEnergyModel,
    target: Energy,
    model_samples: Tensor,
    baseline: str = "leave-one-out",
    energy_scale: float = 1.0,
    beta: float = 1.0,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Reverse-KL score-function surrogate whose gradient is an unbiased estimate of Cov_q(l, grad
    F) (RBM) or of E_q[(u + log q) grad log q] = grad KL(q||p) (normalized model).

    Arguments:
        model: The model; log q~ = ``model.log_prob`` (= -F for an RBM).
        target: The target energy u (log p~ = -u).
        model_samples: Model samples y ~ q (detached), shape ``(M, V)``, M >= 2.
        baseline: ``"leave-one-out"`` (b_j = mean_{k != j} l_k: unbiased) or ``"mean"``
            (b = mean_k l_k: the expectation is (M - 1)/M times the gradient).
        energy_scale: Factor on the target energy (beta annealing: u_t = energy_scale * u).
        beta: The target's inverse temperature (at ``energy_scale = 1``), for the free-energy
            diagnostics of a normalized model.

    Returns:
        ``(loss, diagnostics)``; ``"reverse_kl_shifted"`` = mean(-l) = an unbiased estimate of
        KL(q||p) + log Z_theta - log Z (the reverse KL up to the two dropped log-normalisers),
        and ``"nonfinite_samples"``. For a normalized model also the
        :func:`~boltzgen.samplers.weights.variational_estimates` at the scaled energy
        (``free_energy_per_site``, ``free_energy_standard_error``, ``log_z_estimate``,
        ``ess``) and ``beta`` = energy_scale * beta. Samples with a non-finite log-ratio (a NaN
        or infinite target energy) are left out of the loss, the baseline and the diagnostics;
        fewer than two finite ones give a NaN loss (the step is skipped).
    """
    if baseline not in BASELINES:
        raise BoltzgenError(f"baseline must be one of {BASELINES}, got {baseline!r}")
    log_q = model.log_prob(model_samples)
    f = -log_q
    u = target.energy(model_samples.to(f.dtype))
    if energy_scale != 1.0:
        u = energy_scale * u
    log_ratio = (-u + f).detach()
    valid = torch.isfinite(log_ratio)
    m = valid.sum()
    kept = torch.where(valid, log_ratio, torch.zeros_like(log_ratio))
    # the baseline and the normalisation over the global batch of all ranks (one all-reduce of
    # two numbers; on one process these are the local sums), so that K ranks together compute
    # the one-process estimator exactly, as the loop averages their gradients
    total, m_all = all_reduce_sum(torch.stack([kept.sum(), m.to(kept.dtype)]))
    if baseline == "leave-one-out":
        b = (total - kept) / (m_all - 1)
    else:
        b = total / m_all
    terms = torch.where(valid, (kept - b) * f, torch.zeros_like(f))
    loss = terms.sum() * world().size / m_all
    diagnostics = {
        "reverse_kl_shifted": -kept.sum() / m,
        NONFINITE_SAMPLES: (~valid).sum().to(torch.float64),
    }
    if model.normalized:
        scaled_beta = energy_scale * beta
        diagnostics.update(
            variational_estimates(
                log_q.detach(), u.detach(), scaled_beta, model_samples.shape[-1], valid
            )
        )
        diagnostics["beta"] = torch.full((), scaled_beta, dtype=torch.float64, device=f.device)
    return loss, diagnostics


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

    def model_samples(self, model: FreeEnergyModel, n: int) -> Tensor:
        """``n`` model states ``(n, V)`` (detached): exact samples of a normalized model, else
        the persistent chains advanced by ``k_steps`` sweeps."""
        if model.normalized:
            return model.sample(n)
        return self.chains.sample(model, n)

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
        if model.normalized:  # exact likelihood: no negative phase
            return forward_kl_surrogate(model, x, None)
        return forward_kl_surrogate(model, x, self.chains.sample(model, batch_size))


def _check_beta_schedule(betas: Sequence[float], steps_per_beta: int, beta: float) -> tuple:
    """The schedule as a tuple of floats, or a one-line error naming the bad value."""
    if (
        isinstance(steps_per_beta, bool)
        or not isinstance(steps_per_beta, int)
        or steps_per_beta < 1
    ):
        raise BoltzgenError(
            f"[trainer] steps_per_beta = {steps_per_beta!r}: give a whole number of steps >= 1"
        )
    if not betas:
        raise BoltzgenError("[trainer] betas is empty: list the inverse temperatures to train at")
    for value in betas:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise BoltzgenError(f"[trainer] betas holds {value!r}: every entry must be a number")
        if not (math.isfinite(value) and value > 0):
            raise BoltzgenError(
                f"[trainer] betas holds {value!r}: every beta must be finite and > 0"
            )
    if not beta > 0:
        raise BoltzgenError(
            f"[trainer] betas needs a target with beta > 0 (the schedule rescales its energy); "
            f"the target has beta = {beta:g}"
        )
    if not math.isclose(betas[-1], beta, rel_tol=1e-12):
        raise BoltzgenError(
            f"[trainer] betas ends at {betas[-1]:g} but the target's beta is {beta:g}: end the "
            "schedule at the target's beta (the model is then trained for the target)"
        )
    return tuple(float(value) for value in betas)


class ReverseKLScore(PersistentChainObjective):
    """Reverse KL with the score-function gradient (no data needed): on PCD-k model samples for
    an RBM, on exact samples for a normalized (autoregressive) model (VAN).

    Arguments:
        target: Target energy (discrete).
        k_steps: Gibbs sweeps of the persistent chains per step (RBM only).
        generator: Random generator on the model's device.
        baseline: ``"leave-one-out"`` or ``"mean"`` (see :func:`reverse_kl_surrogate`).
        beta_anneal: ``a`` of the annealing u_t = (1 - a^t) u at step t = 1, 2, ... (so
            beta_t = beta (1 - a^t)); 0 disables it. The step counter is checkpointed.
        betas: Optional schedule of inverse temperatures, ending at the target's beta: steps
            ``k * steps_per_beta + 1 .. (k + 1) * steps_per_beta`` train at ``betas[k]`` (the
            target energy scaled by ``betas[k] / beta``; annealing multiplies on top), the last
            beta holds for any further steps. The free-energy estimates of each beta's last step
            are kept (checkpointed) and returned by :meth:`schedule_results`.
        steps_per_beta: Steps at each beta of the schedule.
    """

    name = "reverse-kl"
    energy_calls_per_sample = 1
    min_batch_size = 2  # the leave-one-out baseline of the score estimator

    def __init__(
        self,
        target: Energy,
        k_steps: int = 1,
        generator: torch.Generator | None = None,
        baseline: str = "leave-one-out",
        beta_anneal: float = 0.0,
        betas: Sequence[float] | None = None,
        steps_per_beta: int = 1,
    ) -> None:
        super().__init__(k_steps, generator)
        if baseline not in BASELINES:
            raise BoltzgenError(
                f"[trainer] baseline = {baseline!r}; choose one of: {', '.join(BASELINES)}"
            )
        if not 0.0 <= beta_anneal < 1.0:
            raise BoltzgenError(f"[trainer] beta_anneal = {beta_anneal!r} must be in [0, 1)")
        self.target = target
        self.baseline = baseline
        self.beta_anneal = float(beta_anneal)
        self.beta = inverse_temperature(target)
        self.betas = (
            None if betas is None else _check_beta_schedule(betas, steps_per_beta, self.beta)
        )
        self.steps_per_beta = int(steps_per_beta)
        self.estimates: list[dict[str, Tensor] | None] = [None] * len(self.betas or ())
        self.step = 0

    def schedule_index(self, step: int) -> int:
        """Index into ``betas`` of step ``step`` (1-based); 0 without a schedule."""
        if self.betas is None:
            return 0
        return min((step - 1) // self.steps_per_beta, len(self.betas) - 1)

    def energy_scale(self, step: int) -> float:
        """The factor on the target energy at step ``step`` (1-based): (1 - a^step), times
        ``betas[k] / beta`` under a schedule."""
        scale = 1.0 - self.beta_anneal**step if self.beta_anneal > 0 else 1.0
        if self.betas is not None:
            scale *= self.betas[self.schedule_index(step)] / self.beta
        return scale

    def loss(self, model: FreeEnergyModel, batch_size: int) -> tuple[Tensor, dict[str, Tensor]]:
        self.step += 1
        loss, diagnostics = reverse_kl_surrogate(
            model,
            self.target,
            self.model_samples(model, batch_size),
            self.baseline,
            self.energy_scale(self.step),
            self.beta,
        )
        if self.betas is not None and model.normalized:  # device tensors: no sync
            self.estimates[self.schedule_index(self.step)] = {
                key: diagnostics[key].detach() for key in SCHEDULE_ESTIMATES
            }
        return loss, diagnostics

    def schedule_results(self) -> list[dict[str, float]]:
        """The estimates at the last step of each beta trained so far (schedule order): ``beta``
        (the beta of that step, annealing included), ``schedule_beta`` (the schedule's entry) and
        the :data:`SCHEDULE_ESTIMATES` of one batch, as floats; empty without a schedule."""
        return [
            {"schedule_beta": beta, **{key: float(value) for key, value in estimates.items()}}
            for beta, estimates in zip(self.betas or (), self.estimates, strict=True)
            if estimates is not None
        ]

    def state_dict(self) -> dict[str, Any]:
        """The persistent chains, the step and the schedule's estimates."""
        return {**super().state_dict(), "step": self.step, "estimates": self.estimates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.step = int(state.get("step", 0))
        estimates = state.get("estimates", [])
        if len(estimates) != len(self.estimates):
            raise BoltzgenError(
                f"the checkpoint holds estimates for {len(estimates)} betas but [trainer] betas "
                f"lists {len(self.estimates)}: resume with the schedule the run started with"
            )
        self.estimates = list(estimates)


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
        y = self.model_samples(model, batch_size)
        forward, forward_diagnostics = forward_kl_surrogate(
            model, x, None if model.normalized else y
        )
        reverse, reverse_diagnostics = reverse_kl_surrogate(model, self.target, y)
        return forward + reverse, {**forward_diagnostics, **reverse_diagnostics}

r"""Evaluation of discrete models against discrete targets.

- **Exact divergences** (enumeration, N <= 24): forward KL(p||q), reverse KL(q||p) and the ratio
  divergence RD = Var_p(l) + Var_q(l) + (E_p l - E_q l)^2 with l = log p - log q, from the
  log-probabilities of all 2**N states. They are differentiable in the model's log-probabilities,
  which is how the gradient estimators of :mod:`boltzgen.trainers` are tested.
- **Monte Carlo divergences** with standard errors, for large N where Z and Z_theta are known
  exactly but the states cannot be enumerated (e.g. Ising with Kaufman's log Z and an RBM whose
  hidden layer is enumerable): KL(p||q) = E_p[log p - log q] on target samples, KL(q||p) on
  model samples.
- **Energy fitting**: how well -F_theta tracks -u up to a constant, over a set of states: the
  standard deviation of l = -u + F_theta (0 for a perfect fit; Z-independent) and one minus the
  Pearson correlation of u and F_theta.
- **Mode coverage**: states are assigned to the nearest of a few reference modes (Hamming
  distance; e.g. the two ordered states of a ferromagnet, or the lowest local minima of a spin
  glass); mode masses of target and model, and their overlap sum_k min(p_k, q_k).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from ..energy.base import Energy
from ..energy.exact import (
    ExactDistribution,
    check_enumerable,
    enumerate_states,
    log_weights_by_enumeration,
)
from ..energy.lattice import DiscreteEnergy, PairwiseSpinEnergy
from ..samplers.weights import variational_estimates
from ..trainers.discrete_kl import inverse_temperature

__all__ = [
    "exact_discrete_metrics",
    "free_energy_metrics",
    "beta_schedule_metrics",
    "enumerated_log_prob",
    "exact_forward_kl",
    "exact_reverse_kl",
    "exact_ratio_divergence",
    "monte_carlo_kl",
    "energy_fitting",
    "lowest_local_minima",
    "ferromagnet_modes",
    "nearest_mode",
    "mode_masses",
    "exact_mode_masses",
    "mode_overlap",
]


def enumerated_log_prob(
    log_unnormalized: Callable[[Tensor], Tensor],
    n_units: int,
    spin: bool = True,
    dtype: torch.dtype = torch.float64,
) -> Tensor:
    """Normalised log-probabilities of all 2**n states, ``(2**n,)``, differentiable through the
    callable.

    For a model: ``enumerated_log_prob(lambda v: -rbm.free_energy(v), V, rbm.spin)``.
    """
    log_w = log_weights_by_enumeration(log_unnormalized, n_units, spin, dtype=dtype)
    return log_w - torch.logsumexp(log_w, 0)


def exact_forward_kl(log_p: Tensor, log_q: Tensor) -> Tensor:
    """KL(p||q) = sum_s p (log p - log q) from log-probabilities of all states (nats)."""
    return (log_p.exp() * (log_p - log_q)).sum()


def exact_reverse_kl(log_p: Tensor, log_q: Tensor) -> Tensor:
    """KL(q||p) = sum_s q (log q - log p) from log-probabilities of all states (nats)."""
    return (log_q.exp() * (log_q - log_p)).sum()


def exact_ratio_divergence(log_p: Tensor, log_q: Tensor) -> Tensor:
    """RD = E_p E_q[(l(x) - l(y))^2], l = log p - log q, exactly: Var_p l + Var_q l + (E_p l - E_q
    l)^2."""
    p, q, log_ratio = log_p.exp(), log_q.exp(), log_p - log_q
    mean_p, mean_q = (p * log_ratio).sum(), (q * log_ratio).sum()
    var_p = (p * (log_ratio - mean_p) ** 2).sum()
    var_q = (q * (log_ratio - mean_q) ** 2).sum()
    return var_p + var_q + (mean_p - mean_q) ** 2


def monte_carlo_kl(
    log_numerator: Tensor, log_denominator: Tensor, n_effective: int | None = None
) -> tuple[float, float]:
    """Monte Carlo KL = mean(log_numerator - log_denominator) over samples of the numerator's
    distribution.

    Arguments:
        log_numerator: Normalised log-density of the sampling distribution at its samples,
            ``(n,)``.
        log_denominator: Normalised log-density of the other distribution there, ``(n,)``.
        n_effective: Number of independent samples for the standard error (default ``n``; pass
            the number of independent chains when samples are correlated in time).

    Returns:
        ``(estimate, standard_error)`` in nats.
    """
    d = (log_numerator - log_denominator).double()
    n = d.shape[0] if n_effective is None else n_effective
    return float(d.mean()), float(d.std() / math.sqrt(n))


def energy_fitting(target_energy: Tensor, model_free_energy: Tensor) -> dict[str, float]:
    """Fit of F_theta to u up to a constant over a set of states (both ``(n,)``).

    Returns:
        ``{"log_ratio_std": std(-u + F), "one_minus_correlation": 1 - corr(u, F)}``.
    """
    u, f = target_energy.double(), model_free_energy.double()
    corr = torch.corrcoef(torch.stack([u, f]))[0, 1]
    return {"log_ratio_std": float((f - u).std()), "one_minus_correlation": float(1 - corr)}


def lowest_local_minima(energy: PairwiseSpinEnergy, k: int) -> Tensor:
    """The ``k`` lowest-energy single-spin-flip local minima, by enumeration (N <= 24), ``(k, N)``.

    A state is a local minimum when every spin is aligned with its local field. Both members of
    a +- pair count separately (a zero-field model has its minima in pairs).
    """
    best_states, best_energies = [], []
    check_enumerable(energy.n_spins, "lowest_local_minima")
    for states in enumerate_states(energy.n_spins):
        is_min = ((states * energy.local_fields(states)) >= 0).all(-1)
        best_states.append(states[is_min])
        best_energies.append(energy.coupling_energy(states[is_min]))
    states, energies = torch.cat(best_states), torch.cat(best_energies)
    order = torch.argsort(energies, stable=True)[:k]
    return states[order]


def ferromagnet_modes(n_spins: int, dtype: torch.dtype = torch.float64) -> Tensor:
    """The two ordered states (all +1, all -1), shape ``(2, N)``."""
    ones = torch.ones(n_spins, dtype=dtype)
    return torch.stack([ones, -ones])


def nearest_mode(states: Tensor, modes: Tensor) -> Tensor:
    """Index of the nearest mode (Hamming distance; ties go to the lower index), ``(batch,)``."""
    overlap = states.to(modes.dtype) @ modes.T  # N - 2 * Hamming distance for +-1 spins
    return overlap.argmax(-1)


def mode_masses(states: Tensor, modes: Tensor) -> Tensor:
    """Fraction of ``states`` nearest to each mode, ``(n_modes,)`` (a Monte Carlo estimate)."""
    counts = torch.bincount(nearest_mode(states, modes), minlength=modes.shape[0])
    return counts.to(torch.float64) / states.shape[0]


def exact_mode_masses(distribution: ExactDistribution, modes: Tensor) -> Tensor:
    """Exact probability of the basin (nearest-mode set) of each mode, ``(n_modes,)``."""
    one_hot = lambda s: torch.nn.functional.one_hot(nearest_mode(s, modes), modes.shape[0]).to(
        torch.float64
    )
    return distribution.expectation(one_hot)


def mode_overlap(target_masses: Tensor, model_masses: Tensor) -> float:
    """sum_k min(p_k, q_k) / sum_k p_k: 1 when the model puts the target's mass on every mode."""
    return float(torch.minimum(target_masses, model_masses).sum() / target_masses.sum())


def exact_discrete_metrics(target: Energy, model: torch.nn.Module) -> dict[str, Any]:
    """Exact log Z, log Z_theta, KL(p||q), KL(q||p) and ratio divergence (nats) by enumeration (N
    <= 24)."""
    log_p = target.exact().log_prob
    model_distribution = model.exact()
    log_q = model_distribution.log_prob
    return {
        "log_z": float(target.log_z),
        "log_z_model": float(model_distribution.log_z),
        "exact_forward_kl": float(exact_forward_kl(log_p, log_q)),
        "exact_reverse_kl": float(exact_reverse_kl(log_p, log_q)),
        "exact_ratio_divergence": float(exact_ratio_divergence(log_p, log_q)),
    }


def free_energy_metrics(target: Energy, log_q: Tensor, reduced_energies: Tensor) -> dict[str, Any]:
    """VAN's free-energy metrics of samples x ~ q of a normalized model at the target's own
    temperature (:func:`~boltzgen.samplers.weights.variational_estimates`), with the exact
    values and errors where the target knows log Z (Kaufman, enumeration, magnetisation sum).

    Arguments:
        target: The discrete target (beta: :func:`~boltzgen.trainers.discrete_kl.
            inverse_temperature`; free energies in units of J for spin models, kT otherwise).
        log_q: Normalized log q of the samples, ``(n,)``.
        reduced_energies: u of the samples, ``(n,)``.

    Returns:
        ``free_energy_per_site`` (F_q = E_q[E + log q / beta] / N, an upper bound on F),
        ``free_energy_standard_error``, ``log_z_estimate`` (log of the importance-sampling mean,
        unbiased in Z), ``log_z_standard_error``, ``beta``; and with a known log Z
        ``exact_free_energy_per_site`` (-log Z / (beta N)), ``free_energy_error`` (F_q - F,
        = KL(q||p) / (beta N) up to Monte Carlo error), ``free_energy_relative_error``
        (|F_q - F| / |F|) and ``log_z_error`` (estimate - exact).
    """
    beta, n_sites = inverse_temperature(target), target.dim
    estimates = variational_estimates(log_q, reduced_energies, beta, n_sites)
    metrics: dict[str, Any] = {
        key: float(estimates[key])
        for key in (
            "free_energy_per_site",
            "free_energy_standard_error",
            "log_z_estimate",
            "log_z_standard_error",
        )
    }
    metrics["beta"] = beta
    return _with_exact_values(metrics, target.log_z, beta, n_sites)


def _with_exact_values(
    metrics: dict[str, Any], log_z: float | None, beta: float, n_sites: int
) -> dict[str, Any]:
    """``metrics`` (with ``free_energy_per_site`` and ``log_z_estimate``) plus the exact values
    and errors of :func:`free_energy_metrics` when ``log_z`` is known."""
    if log_z is not None:
        exact = -log_z / (beta * n_sites)
        metrics["exact_free_energy_per_site"] = exact
        metrics["free_energy_error"] = metrics["free_energy_per_site"] - exact
        metrics["free_energy_relative_error"] = abs(metrics["free_energy_error"] / exact)
        metrics["log_z_error"] = metrics["log_z_estimate"] - log_z
    return metrics


def beta_schedule_metrics(target: Energy, results: list[dict[str, float]]) -> list[dict[str, Any]]:
    """The estimates a beta schedule kept at each beta
    (:meth:`~boltzgen.trainers.ReverseKLScore.schedule_results`: one batch each, at the beta of
    that step) with the exact free energy per site and the errors at that beta where the target
    knows its log Z there (:meth:`~boltzgen.energy.lattice.DiscreteEnergy.with_beta`)."""
    rows = []
    for result in results:
        row: dict[str, Any] = dict(result)
        log_z = None
        if isinstance(target, DiscreteEnergy) and row["beta"] > 0:
            log_z = target.with_beta(row["beta"]).log_z
        rows.append(_with_exact_values(row, log_z, row["beta"], target.dim))
    return rows

r"""Cumulant-GAN objective (Pantazis et al., "Cumulant GAN") in stable log-mean-exp form.

L(beta, gamma) = -(1/beta) log E_P[exp(-beta D)] - (1/gamma) log E_Q[exp(gamma D)];
each term is the plain mean of -D (resp. D) at beta = 0 (resp. gamma = 0). At the optimal
D* = log(p/q)/(beta+gamma) + const, L = (1/gamma) R_a(P||Q) with a = gamma/(beta+gamma)
(checked: both expectations equal I = int p^a q^(1-a), so L = -(beta+gamma)/(beta gamma) log I,
and R_a(P||Q) = log I / (a - 1) = -(beta+gamma)/beta log I).

Every log-mean-exp subtracts the maximum first, so ``|t d| ~ 1e3`` stays finite. Entries left
out by a ``keep`` mask (non-finite scores, top-k drops) contribute nothing, on the device.

:func:`score_coefficients` is the shared score-function estimator of the gradient of
``(1/t) log E_q[exp(t s)]`` for a model with exact samples (the generator step of the GAN for
discrete models with s = D, and the energy-informed Rényi objective with s = log p~ - log q).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..errors import BoltzgenError

__all__ = ["log_mean_exp", "cumulant_term", "cumulant_objective", "score_coefficients"]


def log_mean_exp(x: Tensor, keep: Tensor | None = None) -> Tensor:
    """log mean exp over the last axis, max-subtracted; x: (..., n) -> (...).

    ``keep`` (bool, x's shape) leaves entries out of the mean; no kept entry gives NaN.
    """
    if keep is None:
        keep = torch.ones_like(x, dtype=torch.bool)
    kept = torch.where(keep, x, torch.full_like(x, -math.inf))
    m = kept.detach().amax(dim=-1, keepdim=True)
    m = torch.where(torch.isfinite(m), m, torch.zeros_like(m))
    total = torch.where(keep, torch.exp(kept - m), torch.zeros_like(x)).sum(dim=-1, keepdim=True)
    count = keep.sum(dim=-1, keepdim=True).to(x.dtype)
    return (torch.log(total / count) + m).squeeze(-1)


def cumulant_term(d: Tensor, t: float, keep: Tensor | None = None) -> Tensor:
    """(1/t) log E[exp(t d)] over the last axis of ``d`` ``(n,)``; the plain mean at t = 0."""
    if t == 0.0:
        if keep is None:
            return d.mean(dim=-1)
        return torch.where(keep, d, torch.zeros_like(d)).sum(dim=-1) / keep.sum(dim=-1)
    return log_mean_exp(t * d, keep) / t


def cumulant_objective(d_p: Tensor, d_q: Tensor, beta: float, gamma: float) -> Tensor:
    """L(beta, gamma) from D on data (d_p: (n,)) and on model samples (d_q: (m,))."""
    if not (math.isfinite(beta) and math.isfinite(gamma)) or beta < 0 or gamma < 0:
        raise BoltzgenError(f"beta={beta}, gamma={gamma}: both must be finite and >= 0")
    return -cumulant_term(-d_p, beta) - cumulant_term(d_q, gamma)


def score_coefficients(scores: Tensor, t: float, keep: Tensor) -> Tensor:
    r"""Per-sample coefficients c_j of the score-function gradient of (1/t) log E_q[exp(t s)].

    With exact samples y_j ~ q (M kept ones), sum_j c_j grad log q(y_j) / M estimates
    grad_theta (1/t) log E_q[exp(t s)] at fixed s (s does not depend on theta). The numerator
    E_q[exp(t s) grad log q] gets the leave-one-out baseline (unbiased), the denominator is the
    batch mean: c_j = (M / (M - 1)) (M softmax(t s)_j - 1) / t, a ratio estimator with O(1/M)
    bias. At t = 0 it is exactly unbiased: c_j = s_j - mean_{k != j} s_k.

    Arguments:
        scores: s(y_j), shape ``(M,)``, detached.
        t: The cumulant order (>= 0).
        keep: Bool mask ``(M,)`` of the samples that count; the others get c_j = 0.

    Returns:
        ``(M,)`` coefficients (NaN when fewer than two samples are kept: the step is skipped).
    """
    m = keep.sum().to(scores.dtype)
    s = torch.where(keep, scores, torch.zeros_like(scores))
    if t == 0.0:
        c = s - (s.sum() - s) / (m - 1)
    else:
        weights = torch.softmax(torch.where(keep, t * s, torch.full_like(s, -math.inf)), dim=0)
        c = (m / (m - 1)) * (m * weights - 1) / t
    return torch.where(keep, c, torch.zeros_like(c))

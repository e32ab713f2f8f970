"""Cumulant-GAN objective (Pantazis et al., "Cumulant GAN") in stable log-mean-exp form.

L(beta, gamma) = -(1/beta) log E_P[exp(-beta D)] - (1/gamma) log E_Q[exp(gamma D)];
each term is the plain mean of -D (resp. D) at beta = 0 (resp. gamma = 0). At the optimal
D* = log(p/q)/(beta+gamma) + const, L = (1/gamma) R_a(P||Q) with a = gamma/(beta+gamma)
(checked: both expectations equal I = int p^a q^(1-a), so L = -(beta+gamma)/(beta gamma) log I).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from boltzgen.errors import BoltzgenError

__all__ = ["log_mean_exp", "cumulant_term", "cumulant_objective"]


def log_mean_exp(x: Tensor) -> Tensor:
    """log mean exp over the last axis, max-subtracted; x: (..., n) -> (...)."""
    m = x.detach().amax(dim=-1, keepdim=True)
    return (torch.log(torch.exp(x - m).mean(dim=-1, keepdim=True)) + m).squeeze(-1)


def cumulant_term(d: Tensor, t: float) -> Tensor:
    """(1/t) log E[exp(t d)] over the last axis; the plain mean of d at t = 0."""
    if t == 0.0:
        return d.mean(dim=-1)
    return log_mean_exp(t * d) / t


def cumulant_objective(d_p: Tensor, d_q: Tensor, beta: float, gamma: float) -> Tensor:
    """L(beta, gamma) from D on data (d_p: (n,)) and on model samples (d_q: (m,))."""
    if not (math.isfinite(beta) and math.isfinite(gamma)) or beta < 0 or gamma < 0:
        raise BoltzgenError(f"beta={beta}, gamma={gamma}: both must be finite and >= 0")
    return -cumulant_term(-d_p, beta) - cumulant_term(d_q, gamma)

"""Normalizing flows on mixed real / interval / circular features, their priors, and an adapter
for nflows models."""

from __future__ import annotations

from .coupling import CouplingFlow
from .domains import Domain, circular, interval, real
from .nflows_adapter import NflowsAdapter
from .priors import Prior, make_prior

__all__ = [
    "Domain",
    "real",
    "interval",
    "circular",
    "Prior",
    "make_prior",
    "CouplingFlow",
    "NflowsAdapter",
]

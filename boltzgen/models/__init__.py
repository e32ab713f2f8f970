"""Discrete models: restricted Boltzmann machines (block Gibbs sampling, PCD, exact and AIS log
Z)."""

from __future__ import annotations

from .rbm import RBM, RBMEnergy

__all__ = ["RBM", "RBMEnergy"]

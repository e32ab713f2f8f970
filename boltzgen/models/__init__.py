"""Discrete models: restricted Boltzmann machines (block Gibbs sampling, PCD, exact and AIS log
Z) and autoregressive models (MADE, PixelCNN: exact samples and normalized log q)."""

from __future__ import annotations

from .autoregressive import MADE, AutoregressiveModel, PixelCNN
from .rbm import RBM, RBMEnergy

__all__ = ["RBM", "RBMEnergy", "AutoregressiveModel", "MADE", "PixelCNN"]

"""Targets: the :class:`Energy` interface and its implementations."""

from __future__ import annotations

from .base import Energy
from .teacher import LogProbEnergy
from .toy import DoubleWell, GaussianMixture2D, ManyWell

__all__ = ["Energy", "LogProbEnergy", "GaussianMixture2D", "DoubleWell", "ManyWell"]

"""Training objectives behind one protocol, and the shared training loop."""

from __future__ import annotations

from .forward_kl import ForwardKL
from .loop import NonFiniteTraining, NonFiniteWarning, Trainer, TrainingInterrupted, TrainSettings
from .objective import Objective
from .reverse_kl import ReverseKL

__all__ = [
    "Objective",
    "Trainer",
    "TrainSettings",
    "TrainingInterrupted",
    "NonFiniteTraining",
    "NonFiniteWarning",
    "ReverseKL",
    "ForwardKL",
]

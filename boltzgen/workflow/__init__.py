"""Runs from configs: the registry, run directories, and the train/sample/evaluate workflow.

Importing the package registers every config factory (:mod:`.targets`, :mod:`.models`,
:mod:`.objectives`, :mod:`.discrete`, :mod:`.distillation`,
:mod:`.adversarial`) in :mod:`.registry`.
"""

from __future__ import annotations

from . import (  # noqa: F401  (registrations)
    adversarial,
    discrete,
    distillation,
    models,
    objectives,
    targets,
)
from .registry import resolve_config
from .runs import load_run, train_run

__all__ = ["resolve_config", "train_run", "load_run"]

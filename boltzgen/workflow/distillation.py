"""Config registration of the distillation objective ``[trainer] name = "distill"``.

The teacher is the trained model of another run directory (``teacher = RUN_DIR``), loaded as
``boltzgen sample`` loads one (:func:`~boltzgen.workflow.load_run`). A discrete target takes a
normalized discrete teacher over the same units and an autoregressive student
(:class:`~boltzgen.trainers.distillation.Distill`); a continuous target (a molecule) takes a
normalized continuous teacher over the same states, such as a flow of the same molecule, and a
flow student (:class:`~boltzgen.trainers.flow_distillation.FlowDistill`).
"""

from __future__ import annotations

from typing import Any

import torch

from ..energy.base import Energy
from ..errors import BoltzgenError
from ..trainers.distillation import Distill
from ..trainers.flow_distillation import FlowDistill
from .discrete import device_and_dtype, unit_levels, visible_kind
from .registry import register

__all__: list[str] = []


@register("trainer", "distill")
def _distill(
    target: Energy,
    divergence: str = "forward",
    skew_lambda: float = 0.1,
    mix_alpha: float = 0.2,
    prefix_weights: str = "exact",
    length_normalize: bool = False,
    teacher_samples: int = 0,
    ppo_epochs: int = 1,
    clip_ratio: float = 0.2,
    *,
    teacher: str,
) -> Any:
    """Distil the trained model of the run directory ``teacher`` into the student.

    Arguments:
        divergence: "forward" (maximum likelihood on teacher samples), "reverse" (KL(q||p) on
            student samples: score function for discrete students, pathwise for flows),
            "skew-forward", "skew-reverse" (skewed KLs; per-site conditionals for discrete
            students, densities for flows), "dkdr" (per-site dynamic forward/reverse mix) or
            "minillm" (KL(q||p) by MiniLLM's estimator); the last two for discrete students only.
        skew_lambda: lam of the skewed KLs, in [0, 1).
        mix_alpha: MiniLLM: each site drawn from alpha p + (1 - alpha) q, in [0, 1).
        prefix_weights: MiniLLM: "exact" prefix-product importance weights (unbiased) or the
            paper's "per-token" approximation.
        length_normalize: MiniLLM: the future reward divided by the remaining sites.
        teacher_samples: The divergences on teacher samples ("forward", "skew-forward",
            "dkdr"): 0 draws fresh teacher samples every step, N > 0 a buffer of N once.
        ppo_epochs: MiniLLM: optimiser steps per teacher-mixed batch, PPO-clipped (1: none).
        clip_ratio: MiniLLM with ppo_epochs > 1: the ratio is clipped to 1 -+ clip_ratio.
        teacher: A finished or checkpointed run directory whose model is normalized and over
            the same states as this target.
    """
    from .runs import load_run  # runs imports the registry: no import loop at module level

    _, teacher_target, model = load_run(teacher)
    device, dtype = device_and_dtype(target)
    if not target.is_discrete:
        _check_continuous_teacher(teacher, model, teacher_target, target)
        if ppo_epochs != 1:
            raise BoltzgenError(
                f'[trainer] ppo_epochs = {ppo_epochs} belongs to divergence = "minillm", which '
                "flows do not have: leave it at 1"
            )
        return FlowDistill(model.to(device, dtype), divergence, skew_lambda, teacher_samples)
    kind = visible_kind(target, "trainer")
    if not (
        getattr(model, "discrete", False)
        and getattr(model, "normalized", False)
        and tuple(getattr(model, "event_shape", ())) == (target.dim,)
        and getattr(model, "visible", kind) == kind
        and getattr(model, "n_states", 2) == unit_levels(target)
    ):
        raise BoltzgenError(
            f"[trainer] teacher = {teacher!r}: its model ({type(model).__name__}) is not a "
            f"normalized discrete model over {target.dim} {kind} units like this target; use "
            "an autoregressive (made, pixelcnn) run of a target of the same size"
        )
    return Distill(
        model.to(device, dtype),
        divergence,
        skew_lambda,
        mix_alpha,
        prefix_weights,
        length_normalize,
        teacher_samples,
        ppo_epochs,
        clip_ratio,
    )


def _check_continuous_teacher(
    teacher: str, model: torch.nn.Module, teacher_target: Energy, target: Energy
) -> None:
    """Refuse, in one line, a teacher that is not a normalized continuous model over the
    target's states (for a molecule: a model of a molecule with the same atoms)."""
    shape = tuple(target.event_shape)
    same_states = (
        not getattr(model, "discrete", True)
        and getattr(model, "normalized", False)
        and tuple(getattr(model, "event_shape", ())) == shape
        and _atoms(teacher_target) == _atoms(target)
    )
    if not same_states:
        raise BoltzgenError(
            f"[trainer] teacher = {teacher!r}: its model ({type(model).__name__}) is not a "
            f"normalized continuous model over this target's states (shape {shape}); use a "
            "trained flow run of the same target"
        )


def _atoms(target: Energy) -> list[tuple[str, str]] | None:
    """(residue name, atom name) of every atom of a molecule target; ``None`` for others."""
    molecule = getattr(target, "molecule", None)
    if molecule is None:
        return None
    return [(atom.residue.name, atom.name) for atom in molecule.topology.atoms()]

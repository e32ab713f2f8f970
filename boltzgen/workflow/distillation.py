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


@register("trainer", "distill", keys_from=[Distill])
def _distill(target: Energy, *, teacher: str, **options: Any) -> Any:
    """Distil the trained model of the run directory ``teacher`` into the student: a discrete
    teacher into an autoregressive student (:class:`~boltzgen.trainers.distillation.Distill`'s
    keys), a flow into a flow (``divergence`` "forward", "reverse", "skew-forward" or
    "skew-reverse", ``skew_lambda``, ``teacher_samples``; :class:`FlowDistill`).

    Arguments:
        teacher: A finished or checkpointed run directory whose model is normalized and over
            the same states as this target.
    """
    from .runs import load_run  # runs imports the registry: no import loop at module level

    _, teacher_target, model = load_run(teacher)
    device, dtype = device_and_dtype(target)
    if not target.is_discrete:
        _check_continuous_teacher(teacher, model, teacher_target, target)
        if options["ppo_epochs"] != 1:
            raise BoltzgenError(
                f"[trainer] ppo_epochs = {options['ppo_epochs']} belongs to divergence = "
                '"minillm", which flows do not have: leave it at 1'
            )
        flow_keys = ("divergence", "skew_lambda", "teacher_samples")
        return FlowDistill(model.to(device, dtype), **{k: options[k] for k in flow_keys})
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
    return Distill(model.to(device, dtype), **options)


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

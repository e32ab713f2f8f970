"""Config registrations of the continuous models: the coupling flow and the molecular flow.

Their config keys are the constructors' arguments (:func:`~boltzgen.workflow.registry.register`'s
``keys_from``), so a config default is the library default. The RBM is in :mod:`.discrete`.
"""

from __future__ import annotations

from typing import Any

import torch

from ..energy.base import Energy
from ..errors import BoltzgenError
from ..flows import CouplingFlow, make_prior, real
from .registry import register

__all__: list[str] = []


@register("model", "coupling-flow", keys_from=[CouplingFlow], exclude=["domains", "prior"])
def _coupling_flow(
    target: Energy, prior_scale: float = 1.0, **flow_options: Any
) -> torch.nn.Module:
    """Spline coupling flow over the target's real features with a N(0, prior_scale^2) prior;
    the other keys are :class:`~boltzgen.flows.CouplingFlow`'s arguments and defaults."""
    if target.is_discrete or len(target.event_shape) != 1:
        raise BoltzgenError(
            "[model] coupling-flow needs a continuous target with flat states (event_shape (d,))"
        )
    domains = [real()] * target.dim
    prior = make_prior(domains, kind="normal", loc=0.0, scale=prior_scale)
    return CouplingFlow(domains, prior=prior, **flow_options)


@register(
    "model",
    "molecular-flow",
    keys_from=["boltzgen.flows.molecular:MolecularFlow"],
    exclude=["molecule"],
)
def _molecular_flow(target: Energy, **flow_options: Any) -> torch.nn.Module:
    """TA-BG's internal-coordinate spline flow around the molecule's minimised structure
    (:class:`~boltzgen.flows.MolecularFlow`'s arguments and defaults)."""
    from ..flows.molecular import MolecularFlow

    if target.molecule is None:
        raise BoltzgenError(
            '[model] molecular-flow needs a molecule target ([target] name = "molecule")'
        )
    return MolecularFlow(target.molecule, **flow_options)

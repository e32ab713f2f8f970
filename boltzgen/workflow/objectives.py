"""Config registrations of the continuous objectives: reverse KL and forward KL.

Every ``[trainer]`` table also takes the :class:`~boltzgen.trainers.TrainSettings` keys; the
TA-BG protocol (``name = "tabg"``) is :class:`~boltzgen.trainers.AnnealingSettings`. The discrete
objectives are in :mod:`.discrete`.
"""

from __future__ import annotations

from typing import Any

from ..energy.base import Energy
from ..errors import BoltzgenError
from ..io import load_samples
from ..trainers.forward_kl import ForwardKL
from ..trainers.reverse_kl import ReverseKL
from .registry import register

__all__: list[str] = []


@register("trainer", "reverse-kl", keys_from=[ReverseKL], exclude=["target"])
def _reverse_kl(target: Energy, **options: Any) -> Any:
    """KL(q||p) by reparameterized samples (:class:`~boltzgen.trainers.ReverseKL`'s keys)."""
    return ReverseKL(target, **options)


@register("trainer", "forward-kl")
def _forward_kl(
    target: Energy, data: str = "exact", n_data: int = 100_000, data_key: str = "samples"
) -> Any:
    """Maximum likelihood on ``data``: a file (.pt/.npy/.npz) or 'exact' samples of the target."""
    if data == "exact":
        if not target.can_sample:
            raise BoltzgenError(
                f"[trainer] data = 'exact', but the target {type(target).__name__} has no exact "
                "sampler; give a data file"
            )
        samples = target.sample(n_data)
    else:
        samples = load_samples(data, key=data_key)
    return ForwardKL(samples)

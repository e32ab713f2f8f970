"""Constant float buffers that keep full precision through ``.to(dtype)``.

Domain bounds, periods and prior constants are exact Python floats. A module built in float32
and moved to float64 would otherwise carry float32-rounded values (e.g. a period of
6.2831854820 instead of 2 pi, which breaks periodicity at the 1e-7 level); this base class
re-creates such buffers from the floats after every dtype or device change.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["ExactConstants"]


class ExactConstants(nn.Module):
    """An ``nn.Module`` whose :meth:`register_constant` buffers are re-made from Python floats.

    Constants are created in the default dtype; after ``.to(...)``, ``.double()``, ``.cuda()``
    and the like they take the new dtype and device, rounded once from the exact values.
    """

    def __init__(self) -> None:
        super().__init__()
        self._constants: dict[str, list[Any]] = {}

    def register_constant(self, name: str, values: Sequence[Any]) -> None:
        """Register ``values`` (floats, or rows of floats) as a float buffer ``name``."""
        self._constants[name] = [list(v) if isinstance(v, Sequence) else float(v) for v in values]
        self.register_buffer(
            name, torch.tensor(self._constants[name], dtype=torch.get_default_dtype())
        )

    def _apply(self, fn: Callable[[Tensor], Tensor], recurse: bool = True) -> ExactConstants:
        super()._apply(fn, recurse)
        for name, values in self._constants.items():
            moved = getattr(self, name)
            setattr(self, name, torch.tensor(values, dtype=moved.dtype, device=moved.device))
        return self

"""The interface of one compiled OpenMM force: a module from positions to energies in kJ/mol.

Terms work in the *batch-last* layout: positions ``xt`` of shape ``(3, N, batch)`` (x, y, z
planes), per-pair and per-atom quantities of shape ``(P, batch)`` and ``(N, batch)``. Gathers
along the atom axis then copy contiguous rows, and parameters of shape ``(M, 1)`` broadcast over
the batch; on CPU this is about twice as fast as the batch-first layout (gathers along a middle
axis are slow in eager CPU torch).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

__all__ = ["ForceTerm", "column"]


def column(values: np.ndarray | list[float]) -> Tensor:
    """Per-item parameters as a float64 column, shape ``(M, 1)``, to broadcast over the batch."""
    return torch.as_tensor(np.asarray(values, dtype=np.float64).reshape(-1, 1))


class ForceTerm(torch.nn.Module):
    """One OpenMM force, compiled: parameters as buffers (float64 until moved), energies in kJ/mol.

    Subclasses set ``force_name`` (the OpenMM class name the term reproduces, the key of
    :meth:`TorchForceField.energy_terms`) and ``uses_pairs`` (whether :meth:`forward` reads the
    shared all-pairs distances of :class:`~boltzgen.energy.forcefield.pairs.PairList`).
    """

    force_name: str = ""
    uses_pairs: bool = False
    #: Pair terms with ``energy_and_gradient`` use it under autograd when this is set
    #: (:meth:`TorchForceField.use_analytic_gradients`); the autograd path is the reference.
    analytic_gradient: bool = False

    def forward(self, xt: Tensor, pair_distances: Tensor | None) -> Tensor:
        """Energy of each configuration.

        Arguments:
            xt: Positions in the batch-last layout, shape ``(3, N, batch)``, nm.
            pair_distances: Distances of all pairs i < j, shape ``(N(N-1)/2, batch)``, nm, when
                ``uses_pairs`` (else ``None``).

        Returns:
            Energies, shape ``(batch,)``, kJ/mol, dtype and device of ``xt``.
        """
        raise NotImplementedError

    def uses_analytic_gradient(self, pair_distances: Tensor) -> bool:
        """Whether :meth:`forward` goes through
        :class:`~boltzgen.energy.forcefield.analytic.AnalyticPairEnergy`: when enabled, a
        gradient is needed and ``torch.compile`` is not tracing (it fuses the autograd path)."""
        return (
            self.analytic_gradient
            and pair_distances.requires_grad
            and not torch.compiler.is_compiling()
        )

    def parameter(self, name: str, like: Tensor) -> Tensor:
        """The buffer ``name`` on the device and in the dtype of ``like`` (no copy if they
        match)."""
        buffer: Tensor = getattr(self, name)
        if buffer.is_floating_point():
            return buffer.to(device=like.device, dtype=like.dtype)
        return buffer.to(device=like.device)

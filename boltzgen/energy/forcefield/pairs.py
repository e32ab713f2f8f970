"""All unordered atom pairs of a molecule as index tensors, shared by the pair terms."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

__all__ = ["PairList"]


class PairList(torch.nn.Module):
    """The P = N(N-1)/2 unordered atom pairs (i, j), i < j, in row-major order.

    Every all-pairs term (Coulomb + Lennard-Jones, generalized Born) reads its per-pair parameters
    in this order, so that the pair distances are computed once per evaluation.

    Arguments:
        n_atoms: Number of atoms N.
    """

    def __init__(self, n_atoms: int) -> None:
        super().__init__()
        first, second = torch.triu_indices(n_atoms, n_atoms, offset=1)
        self.n_atoms = int(n_atoms)
        self.register_buffer("first", first, persistent=False)
        self.register_buffer("second", second, persistent=False)

    @property
    def n_pairs(self) -> int:
        """Number of pairs P."""
        return int(self.first.numel())

    def index(self, i: np.ndarray, j: np.ndarray) -> np.ndarray:
        """Positions in the pair list of the pairs (i, j), in either order.

        Arguments:
            i, j: Atom indices, integer arrays of equal shape, i != j.

        Returns:
            Pair indices, same shape, into the P pairs.
        """
        low, high = np.minimum(i, j), np.maximum(i, j)
        return low * self.n_atoms - low * (low + 1) // 2 + (high - low - 1)

    def distances(self, xt: Tensor) -> Tensor:
        """Pair distances r_ij.

        Arguments:
            xt: Positions in the batch-last layout, shape ``(3, N, batch)``, nm.

        Returns:
            Distances, shape ``(P, batch)``, nm.
        """
        difference = xt.index_select(1, self.second.to(xt.device)) - xt.index_select(
            1, self.first.to(xt.device)
        )
        return (difference * difference).sum(0).sqrt()

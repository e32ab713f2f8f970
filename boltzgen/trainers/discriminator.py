"""Discriminators of the adversarial trainers: an MLP on features of the target's states.

Features, per kind of target (:func:`feature_map`):

* a molecule: its internal coordinates (:class:`~boltzgen.molecule.coordinates.InternalCoordinates`
  of the minimised structure), bonds and angles centred on the reference and divided by the
  flow's prior widths (0.007 nm, 0.18 rad), torsions as (cos, sin): invariant under rigid
  motion and periodic in every torsion, so D cannot tell samples apart by frame or by the
  +-pi cut;
* K-state units (a Potts target): their one-hot codes;
* anything else (spins, 2-D toys): the flattened state.
"""

from __future__ import annotations

import torch
import torch.nn.functional as nnf
from torch import Tensor, nn

from ..energy.base import Energy
from ..errors import BoltzgenError

__all__ = ["Discriminator", "MoleculeFeatures", "FlatFeatures", "OneHotFeatures", "feature_map"]


class FlatFeatures(nn.Module):
    """States ``(B, *event_shape)`` -> ``(B, prod(event_shape))`` features, as floats."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, x: Tensor) -> Tensor:
        return x.flatten(1)


class OneHotFeatures(nn.Module):
    """K-state units ``(B, N)`` with values 0 .. K-1 -> their one-hot codes ``(B, N K)``."""

    def __init__(self, n_units: int, levels: int) -> None:
        super().__init__()
        self.levels = levels
        self.dim = n_units * levels

    def forward(self, x: Tensor) -> Tensor:
        return nnf.one_hot(x.long(), self.levels).flatten(1).to(x.dtype)


class MoleculeFeatures(nn.Module):
    """Positions ``(B, N, 3)`` in nm -> internal-coordinate features ``(B, F)``.

    F = bonds + angles + 2 x torsions; bonds and angles as ``(value - reference) / sigma``.
    """

    def __init__(self, molecule: object) -> None:
        super().__init__()
        from ..flows.molecular import ANGLE_SIGMA, BOND_SIGMA
        from ..molecule.coordinates import InternalCoordinates

        self.coordinates = InternalCoordinates(
            molecule.topology, molecule.positions, molecule.constrained_bonds()
        )
        kinds = self.coordinates.feature_kinds
        linear = [i for i, k in enumerate(kinds) if k != "torsion"]
        torsions = [i for i, k in enumerate(kinds) if k == "torsion"]
        sigma = [BOND_SIGMA if kinds[i] == "bond" else ANGLE_SIGMA for i in linear]
        reference = self.coordinates.reference_features
        self.register_buffer("linear", torch.tensor(linear, dtype=torch.long))
        self.register_buffer("torsions", torch.tensor(torsions, dtype=torch.long))
        self.register_buffer("loc", reference[self.linear].clone())
        self.register_buffer("scale", torch.tensor(sigma, dtype=torch.float64))
        self.dim = len(linear) + 2 * len(torsions)

    def forward(self, x: Tensor) -> Tensor:
        features, _ = self.coordinates(x)
        z = (features[:, self.linear] - self.loc.to(x.dtype)) / self.scale.to(x.dtype)
        t = features[:, self.torsions]
        return torch.cat([z, t.cos(), t.sin()], dim=1)


def feature_map(target: Energy) -> nn.Module:
    """The discriminator features of ``target``'s states (module docstring)."""
    if target.molecule is not None:
        return MoleculeFeatures(target.molecule)
    if getattr(target, "levels", 2) > 2:
        return OneHotFeatures(target.dim, target.levels)
    return FlatFeatures(target.dim)


class Discriminator(nn.Module):
    """D(x) = MLP(features(x)): states ``(B, *event_shape)`` -> scores ``(B,)``.

    Arguments:
        features: A module mapping states to ``(B, features.dim)`` (see :func:`feature_map`).
        hidden: Width of the hidden layers.
        depth: Number of hidden layers (>= 1).
    """

    def __init__(self, features: nn.Module, hidden: int = 128, depth: int = 2) -> None:
        super().__init__()
        if depth < 1 or hidden < 1:
            raise BoltzgenError(
                f"discriminator needs depth >= 1 and hidden >= 1, got {depth} and {hidden}"
            )
        self.features = features
        layers: list[nn.Module] = []
        width = features.dim
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), nn.SiLU()]
            width = hidden
        layers.append(nn.Linear(width, 1))
        self.head = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.score(self.features(x))

    def score(self, z: Tensor, frozen: bool = False) -> Tensor:
        """D on features ``z`` ``(B, F)`` -> ``(B,)``; ``frozen``: through detached parameters
        (the generator step: gradients reach ``z`` but not D's parameters)."""
        if not frozen:
            return self.head(z).squeeze(-1)
        params = {name: p.detach() for name, p in self.head.named_parameters()}
        return torch.func.functional_call(self.head, params, (z,)).squeeze(-1)

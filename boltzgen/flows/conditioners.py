"""Conditioner networks of coupling layers: plain or residual MLPs, identity-initialised.

The last layer of every conditioner starts at zero, so a fresh coupling flow is the identity
map (zero spline parameters give uniform bins and unit derivatives: f(u) = u).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ..errors import BoltzgenError

__all__ = ["Conditioner", "ACTIVATIONS"]

ACTIVATIONS = {"relu": nn.ReLU, "silu": nn.SiLU}


class _ResidualBlock(nn.Module):
    """``h + W2 act(W1 act(h))`` on hidden features, shape ``(n, width) -> (n, width)``."""

    def __init__(self, width: int, activation: type[nn.Module]) -> None:
        super().__init__()
        self.body = nn.Sequential(
            activation(), nn.Linear(width, width), activation(), nn.Linear(width, width)
        )

    def forward(self, h: Tensor) -> Tensor:
        return h + self.body(h)


class Conditioner(nn.Sequential):
    """An MLP ``(n, in_features) -> (n, out_features)`` whose last layer is zero-initialised.

    Arguments:
        in_features: Input width.
        out_features: Output width (spline parameters of the transformed features).
        hidden: Width of the hidden layers.
        depth: Number of hidden layers (plain) or of residual blocks (``resnet=True``, each two
            linear layers with a skip connection, as nflows' ``ResidualNet``).
        activation: ``"relu"`` or ``"silu"``.
        resnet: Use residual blocks.
        generator: Random generator for the (uniform, PyTorch-default scale) initialisation.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        hidden: int,
        depth: int,
        activation: str,
        resnet: bool,
        generator: torch.Generator,
    ) -> None:
        if activation not in ACTIVATIONS:
            raise BoltzgenError(
                f"unknown activation {activation!r}: use one of {', '.join(ACTIVATIONS)}"
            )
        if hidden < 1 or depth < 1:
            raise BoltzgenError(f"hidden and depth must be >= 1, got {hidden} and {depth}")
        act = ACTIVATIONS[activation]
        layers: list[nn.Module] = [nn.Linear(in_features, hidden)]
        if resnet:
            layers += [_ResidualBlock(hidden, act) for _ in range(depth)]
        else:
            for _ in range(depth - 1):
                layers += [act(), nn.Linear(hidden, hidden)]
        layers += [act(), nn.Linear(hidden, out_features)]
        super().__init__(*layers)
        with torch.no_grad():
            for module in self.modules():
                if isinstance(module, nn.Linear):
                    bound = 1 / math.sqrt(module.in_features)
                    module.weight.uniform_(-bound, bound, generator=generator)
                    module.bias.uniform_(-bound, bound, generator=generator)
            self.output_layer.weight.zero_()
            self.output_layer.bias.zero_()

    @property
    def output_layer(self) -> nn.Linear:
        """The last, zero-initialised linear layer."""
        last = self[-1]
        assert isinstance(last, nn.Linear)
        return last

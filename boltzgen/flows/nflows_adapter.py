"""Use an nflows ``Flow`` wherever boltzgen expects a model (``sample``, ``log_prob``,
``sample_and_log_prob``, ``dim``), and build nflows' standard RQ-spline coupling flow.

nflows is optional (``pip install 'boltzgen[nflows]'``); it is imported lazily, here only.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import BoltzgenError
from ..models.base import Model

__all__ = ["NflowsAdapter", "nflows_rq_coupling_flow"]


def _import_nflows() -> ModuleType:
    try:
        import nflows
        import nflows.distributions
        import nflows.flows
        import nflows.nn.nets
        import nflows.transforms
        import nflows.utils
    except ImportError as error:
        raise BoltzgenError("nflows is not installed: pip install 'boltzgen[nflows]'") from error
    return nflows


class NflowsAdapter(nn.Module, Model):
    """Wraps an unconditional ``nflows.flows.Flow`` over vectors of ``dim`` features.

    Arguments:
        flow: The nflows flow; its base distribution must have a 1-D event shape.

    ``parameters()``, ``.to(...)`` and ``state_dict()`` reach the wrapped flow (it is a
    submodule).
    """

    reparameterized = True

    def __init__(self, flow: Any) -> None:
        super().__init__()
        nflows = _import_nflows()
        if not isinstance(flow, nflows.flows.Flow):
            raise BoltzgenError(
                f"NflowsAdapter wraps an nflows.flows.Flow, got {type(flow).__name__}"
            )
        shape = getattr(flow._distribution, "_shape", None)
        if shape is None or len(shape) != 1:
            raise BoltzgenError(
                "NflowsAdapter needs a flow whose base distribution has a 1-D event shape "
                f"(e.g. StandardNormal([dim])), got shape {shape}"
            )
        self.flow = flow
        self.dim = int(shape[0])
        self.event_shape = torch.Size((self.dim,))

    @torch.no_grad()
    def sample(self, n: int) -> Tensor:
        """Draw ``n`` samples, shape ``(n, dim)``, without building a graph."""
        return self.flow.sample(n)

    def log_prob(self, x: Tensor) -> Tensor:
        """Exact log-density, shape ``(n, dim) -> (n,)``."""
        return self.flow.log_prob(x)

    def sample_and_log_prob(self, n: int) -> tuple[Tensor, Tensor]:
        """Samples ``(n, dim)`` and their log q ``(n,)`` in one reparameterized pass."""
        return self.flow.sample_and_log_prob(n)


def nflows_rq_coupling_flow(
    dim: int,
    n_layers: int = 8,
    hidden: int = 256,
    n_blocks: int = 2,
    bins: int = 8,
    tail_bound: float = 5.0,
) -> NflowsAdapter:
    """nflows' standard rational-quadratic spline coupling flow, wrapped.

    Alternating binary masks, ``PiecewiseRationalQuadraticCouplingTransform`` with linear tails
    outside [-tail_bound, tail_bound], ``ResidualNet`` conditioners (``n_blocks`` ReLU blocks of
    width ``hidden``) and a standard normal base distribution; the setting of Durkan et al.'s
    neural spline flows.

    Arguments:
        dim: Number of (real) features, >= 2.
        n_layers: Coupling layers.
        hidden: Conditioner width.
        n_blocks: Residual blocks per conditioner.
        bins: Spline bins.
        tail_bound: Half-width of the splines' interval.

    Returns:
        The flow in an :class:`NflowsAdapter`.
    """
    nflows = _import_nflows()
    if dim < 2:
        raise BoltzgenError(f"a coupling flow needs at least 2 features, got {dim}")

    def conditioner(in_features: int, out_features: int) -> nn.Module:
        return nflows.nn.nets.ResidualNet(
            in_features, out_features, hidden_features=hidden, num_blocks=n_blocks
        )

    layers = [
        nflows.transforms.PiecewiseRationalQuadraticCouplingTransform(
            mask=nflows.utils.torchutils.create_alternating_binary_mask(dim, even=layer % 2 == 0),
            transform_net_create_fn=conditioner,
            num_bins=bins,
            tails="linear",
            tail_bound=tail_bound,
        )
        for layer in range(n_layers)
    ]
    flow = nflows.flows.Flow(
        nflows.transforms.CompositeTransform(layers),
        nflows.distributions.StandardNormal([dim]),
    )
    return NflowsAdapter(flow)

r"""Forward KL divergence (maximum likelihood) on samples of the target.

Minimises -E_{x~data}[log q(x)] = KL(p || q) + H(p); the reported ``loss``/``nll`` is the mean
negative log-likelihood in nats (the entropy H(p) of the target is the dropped constant, so the
NLL is not a divergence and is not zero at the optimum). Needs no target energy evaluations.

Data must be finite (checked once, when the objective is built). Data points where the model's
log-density is not finite (outside its support) are left out of the loss and of ``nll`` and
counted (``nonfinite_samples``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ..errors import BoltzgenError
from .objective import NONFINITE_SAMPLES, StepOutput, finite_mean

__all__ = ["ForwardKL", "check_data"]


def check_data(data: Tensor, objective: str) -> Tensor:
    """``data`` ``(n, ...)`` if every sample is finite; else one line naming the first bad one."""
    if data.dim() < 2 or data.shape[0] < 1:
        raise BoltzgenError(f"{objective} needs data of shape (n, ...), got {tuple(data.shape)}")
    finite = torch.isfinite(data).flatten(1).all(dim=1)
    n_bad = int((~finite).sum())
    if n_bad:
        first = int(torch.nonzero(~finite)[0, 0])
        raise BoltzgenError(
            f"{objective} data has {n_bad} of {data.shape[0]} samples with NaN or infinite "
            f"values (the first is sample {first}): remove them from the data"
        )
    return data


class ForwardKL:
    """Maximum likelihood on a fixed data set, minibatches drawn uniformly with replacement.

    Arguments:
        data: Training samples, shape (n, *event_shape); moved to the model's device/dtype on use.
    """

    name = "forward-kl"
    #: The data's temperature is not known here: the target's own, unless the caller knows better.
    temperature: float | None = None

    def __init__(self, data: Tensor) -> None:
        self.data = check_data(data, self.name)

    def loss(self, model: torch.nn.Module, batch_size: int) -> StepOutput:
        """Mean negative log-likelihood of a random minibatch."""
        parameter = next(model.parameters())
        if self.data.device != parameter.device or self.data.dtype != parameter.dtype:
            self.data = self.data.to(parameter.device, parameter.dtype)
        index = torch.randint(self.data.shape[0], (batch_size,), device=self.data.device)
        log_likelihood, nonfinite = finite_mean(model.log_prob(self.data[index]))
        nll = -log_likelihood
        return nll, {"nll": nll.detach(), NONFINITE_SAMPLES: nonfinite}

    def energy_evaluations(self, batch_size: int) -> int:
        """Maximum likelihood evaluates no target energy."""
        return 0

    def state_dict(self) -> dict[str, Any]:
        """Stateless (the minibatch stream follows the global RNG, which checkpoints save)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Stateless."""

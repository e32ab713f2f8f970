"""Sync-free optimisation: Adam(W) whose update is masked on the device, and its schedule.

A non-finite loss or gradient must not corrupt the parameters, and on a GPU we may not branch on
it in Python (that would synchronise every step). :class:`MaskedAdam` therefore takes a 0-d bool
tensor ``ok`` and applies ``where(ok, updated, old)`` to parameters and moments, counting its own
accepted steps on the device (for bias correction). An update whose result would not be finite is
refused the same way, so the parameters can never become NaN or infinite.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor

__all__ = ["MaskedAdam", "warmup_cosine"]


def warmup_cosine(
    step: int, total_steps: int, warmup_steps: int = 0, min_factor: float = 0.0
) -> float:
    """Learning-rate factor: linear warm-up over ``warmup_steps``, then cosine decay to
    ``min_factor``.

    Computed from the Python step counter, so it never reads the device.
    """
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    span = max(total_steps - warmup_steps, 1)
    progress = min(max(step - warmup_steps, 0) / span, 1.0)
    return min_factor + (1 - min_factor) * 0.5 * (1 + math.cos(math.pi * progress))


class MaskedAdam:
    """Adam with decoupled weight decay (AdamW) and a device-side "accept this step" mask.

    Arguments:
        params: The parameters to optimise.
        lr: Base learning rate; :meth:`step` takes the scheduled value.
        betas: Adam's moment decay rates.
        eps: Adam's epsilon.
        weight_decay: Decoupled weight decay (multiplies lr).
    """

    def __init__(
        self,
        params: Iterable[torch.nn.Parameter],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        self.params = [p for p in params if p.requires_grad]
        if not self.params:
            raise ValueError("MaskedAdam got no trainable parameters")
        self.lr, self.betas, self.eps, self.weight_decay = lr, betas, eps, weight_decay
        self.exp_avg = [torch.zeros_like(p) for p in self.params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in self.params]
        self.accepted = torch.zeros((), dtype=torch.float64, device=self.params[0].device)

    def zero_grad(self) -> None:
        """Drop the gradients (set to ``None``)."""
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self, ok: Tensor, lr: float | None = None) -> Tensor:
        """One update, applied only where the 0-d bool tensor ``ok`` is true (no host sync).

        An update that would make a parameter or a moment non-finite (an overflow from a huge
        learning rate or gradient) is refused as well: the parameters stay finite.

        Returns:
            The 0-d bool tensor of whether the update was applied.
        """
        lr = self.lr if lr is None else lr
        beta1, beta2 = self.betas
        count = self.accepted + 1
        bias1 = 1 - beta1**count
        bias2 = 1 - beta2**count
        candidates = []
        for p, m, v in zip(self.params, self.exp_avg, self.exp_avg_sq):
            g = p.grad if p.grad is not None else torch.zeros_like(p)
            m_new = torch.lerp(m, g, 1 - beta1)
            v_new = v * beta2 + (1 - beta2) * g * g
            denom = (v_new / bias2.to(p.dtype)).sqrt().add_(self.eps)
            update = (m_new / bias1.to(p.dtype)) / denom + self.weight_decay * p
            candidates.append((p - lr * update, m_new, v_new))
        # With ``ok`` the gradient is finite, so m_new (a convex combination) is too; p_new and
        # v_new (g * g) can still overflow.
        finite = torch.stack(
            [torch.isfinite(t).all() for p_new, _, v_new in candidates for t in (p_new, v_new)]
        ).all()
        accept = ok & finite
        for (p_new, m_new, v_new), p, m, v in zip(
            candidates, self.params, self.exp_avg, self.exp_avg_sq
        ):
            m.copy_(torch.where(accept, m_new, m))
            v.copy_(torch.where(accept, v_new, v))
            p.copy_(torch.where(accept, p_new, p))
        self.accepted += accept.to(self.accepted.dtype)
        return accept

    def state_dict(self) -> dict[str, Any]:
        """Moments and the accepted-step count (tensors only: safe to load with weights_only)."""
        return {"exp_avg": self.exp_avg, "exp_avg_sq": self.exp_avg_sq, "accepted": self.accepted}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`, checking that shapes match the parameters."""
        for name in ("exp_avg", "exp_avg_sq"):
            saved = state[name]
            if len(saved) != len(self.params) or any(
                s.shape != p.shape for s, p in zip(saved, self.params)
            ):
                raise ValueError(f"optimizer state '{name}' does not match the model's parameters")
            for mine, theirs in zip(getattr(self, name), saved):
                mine.copy_(theirs)
        self.accepted.copy_(state["accepted"])

r"""Importance weights and resampling of samples sharded over the ranks of a ``torchrun`` launch.

Under K processes each rank draws its share of the N model samples of a TA-BG rung. The buffer
statistics are those of all N samples, computed with collectives on small tensors only (the
samples never leave their rank for the statistics):

- the clipping threshold, the k-th largest of all kept log-weights (k = floor(fraction N_kept)):
  each rank contributes its ``k_max`` largest values (``k_max`` from the number drawn, an upper
  bound of k), the k-th largest of the gathered K k_max candidates is the global one;
- the normalizer log sum w, by an all-reduced maximum and sum of exp(log w - max); the ESS and
  the largest normalised weight from it;
- counts (kept, finite, unique resampled) by all-reduced sums.

Resampling draws the global multinomial buffer of M states: draw m of the buffer lands on rank
d = m // (M/K) (each rank holds M/K), its source rank s is drawn with probability W_s / W (W_s
the sum of rank s's clipped weights) from a generator that is identical on every rank, so every
rank knows the whole K x K count matrix; rank s then draws its outgoing states from its own
weights with its own random stream and one all-to-all moves them. Every buffer state is thus an
independent draw with probability w_i / W, as in the one-process buffer.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..errors import BoltzgenError
from ..parallel import (
    all_gather_tensor,
    all_reduce_max,
    all_reduce_sum,
    all_to_all_rows,
    broadcast_object,
    world,
)
from .weights import as_float64, importance_resample

__all__ = [
    "ShardedWeights",
    "sharded_log_sum_exp",
    "sharded_resample",
    "local_share",
]


def local_share(total: int, rank: int, size: int) -> int:
    """Rank ``rank``'s share of ``total`` items split as evenly as possible over ``size`` ranks
    (the first ``total % size`` ranks hold one more)."""
    return total // size + int(rank < total % size)


def sharded_log_sum_exp(values: Tensor) -> Tensor:
    """log sum exp of ``values`` ``(n,)`` over all ranks' shards (0-dim; ``-inf`` when every
    value is ``-inf``); the identity of :func:`torch.logsumexp` on one process."""
    local_max = values.max() if values.numel() else values.new_tensor(-math.inf)
    peak = all_reduce_max(local_max.reshape(1).clone())[0]
    shift = torch.where(torch.isfinite(peak), peak, torch.zeros_like(peak))
    total = all_reduce_sum(torch.exp(values - shift).sum().reshape(1))[0]
    return torch.log(total) + shift


class ShardedWeights:
    """This rank's clipped log-weights and the statistics of all ranks' log-weights together.

    Arguments:
        log_w: This rank's unnormalised log-weights ``(n_r,)``; NaN and +inf are dropped (zero
            weight, left out of N), -inf stays, as in :mod:`boltzgen.samplers.weights`.
        clip_fraction: Fraction of the largest kept log-weights (of all ranks) clipped to the
            k-th largest, in ``[0, 1)``.

    Attributes (0-dim float64 tensors, equal on every rank unless said otherwise):
        clipped: This rank's clipped log-weights ``(n_r,)``, aligned with ``log_w``.
        threshold: The k-th largest kept log-weight of all ranks (+inf when k <= 1: no clip).
        n_samples: N, all drawn samples; ``n_kept``: those not dropped; ``n_clipped``: k when
            k > 1, else 0; ``n_finite``: samples with a positive finite weight.
        log_normalizer: log of the sum of all clipped weights.
        ess: Reverse ESS fraction (sum w)^2 / (N_kept sum w^2) of the clipped weights.
        max_weight_fraction: Largest normalised clipped weight.
    """

    def __init__(self, log_w: Tensor, clip_fraction: float) -> None:
        if not 0.0 <= clip_fraction < 1.0:
            raise BoltzgenError(f"clip fraction must be in [0, 1), got {clip_fraction!r}")
        log_w = as_float64(log_w, "log_w")
        undefined = torch.isnan(log_w) | torch.isposinf(log_w)
        kept = torch.where(undefined, torch.full_like(log_w, -math.inf), log_w)
        counts = torch.stack([torch.ones_like(log_w).sum(), (~undefined).sum().to(log_w.dtype)])
        self.n_samples, self.n_kept = all_reduce_sum(counts)
        k = torch.floor(self.n_kept * clip_fraction)
        # k_max bounds k on every rank alike: it is read from the device once per buffer.
        k_max = max(1, math.floor(float(self.n_samples) * clip_fraction))
        top = torch.topk(kept, min(k_max, kept.numel())).values
        padded = torch.cat([top, top.new_full((k_max - top.numel(),), -math.inf)])
        candidates = torch.sort(all_gather_tensor(padded).reshape(-1), descending=True).values
        kth = candidates.index_select(0, (k - 1).clamp(min=0).to(torch.long).reshape(1))[0]
        self.threshold = torch.where(k > 1, kth, torch.full_like(kth, math.inf))
        self.clipped = torch.minimum(kept, self.threshold)
        self.n_clipped = torch.where(k > 1, k, torch.zeros_like(k))
        self.n_finite = all_reduce_sum(torch.isfinite(self.clipped).sum().to(log_w.dtype))
        self.log_normalizer = sharded_log_sum_exp(self.clipped)
        log_ess = (
            2.0 * self.log_normalizer
            - sharded_log_sum_exp(2.0 * self.clipped)
            - torch.log(self.n_kept)
        )
        self.ess = torch.nan_to_num(torch.exp(log_ess), nan=0.0).clamp(0.0, 1.0)
        local_max = self.clipped.max().reshape(1).clone()
        self.max_weight_fraction = torch.exp(all_reduce_max(local_max)[0] - self.log_normalizer)


def _shared_draws(weights: ShardedWeights) -> tuple[Tensor, torch.Generator]:
    """The shard masses W_s / W ``(K,)`` (CPU, float64; all-gathered) and a CPU generator in the
    same state on every rank (seeded from rank 0's stream), from which every rank draws the
    same source ranks of the buffer draws."""
    share = torch.logsumexp(weights.clipped, 0) - weights.log_normalizer
    masses = torch.exp(all_gather_tensor(share.reshape(1)).reshape(-1)).cpu()
    seed = broadcast_object(int(torch.randint(2**62, (1,))) if world().is_main else None)
    return masses, torch.Generator().manual_seed(seed)


def sharded_resample(
    samples: Tensor,
    weights: ShardedWeights,
    size: int,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, int]:
    """This rank's share of a buffer of ``size`` states drawn with replacement from all ranks'
    samples with probabilities proportional to their clipped weights (a collective).

    On one process this is :func:`~boltzgen.samplers.weights.importance_resample` of the
    clipped log-weights.

    Arguments:
        samples: This rank's samples ``(n_r, *event_shape)``, aligned with the log-weights of
            ``weights``.
        weights: The :class:`ShardedWeights` of this rank's log-weights.
        size: M, the global buffer size, a multiple of the number of ranks.
        generator: Generator of this rank's draws from its own samples (``None``: the global
            one), on the device of the log-weights.

    Returns:
        ``(buffer, unique)``: this rank's ``M / K`` buffer states ``(M / K, *event_shape)`` on
        the samples' device, and the number of distinct drawn samples in the whole buffer.
    """
    ranks = world()
    if size % ranks.size:
        raise BoltzgenError(
            f"the resampled buffer of {size} states does not split over {ranks.size} "
            f"processes: give a resample_size that is a multiple of {ranks.size}"
        )
    if not ranks.distributed:
        index = importance_resample(weights.clipped, size, generator)
        return samples[index.to(samples.device)], int(torch.unique(index).numel())
    masses, shared = _shared_draws(weights)
    # counts[d][s]: states of rank d's share drawn from rank s's samples (the same everywhere).
    counts = [
        torch.bincount(
            torch.multinomial(masses, size // ranks.size, True, generator=shared),
            minlength=ranks.size,
        ).tolist()
        for _ in range(ranks.size)
    ]
    send = [counts[d][ranks.rank] for d in range(ranks.size)]
    index = importance_resample(weights.clipped, sum(send), generator)
    distinct = torch.tensor(float(torch.unique(index).numel()), device=index.device)
    buffer = all_to_all_rows(samples[index.to(samples.device)], send, counts[ranks.rank])
    return buffer, int(all_reduce_sum(distinct))

r"""Importance weights of model samples at another temperature, and resampled training buffers.

The temperature-annealed Boltzmann generator (:mod:`boltzgen.trainers.annealing`) moves a flow
that samples the target at T_k towards T_{k+1}: draw N samples x ~ q, weight them by
log w = -u_{T_{k+1}}(x) - log q(x), clip the heaviest weights, and resample a buffer of M
samples with replacement on which the flow is then trained by maximum likelihood.

N is large (5e6 for alanine dipeptide), so samples are drawn in chunks without autograd graphs;
the samples, log q and energies stay on the model's device (or a ``storage`` device), batched.
The weight functions (dropping NaN, clipping, ESS, multinomial resampling) are those of
:mod:`boltzgen.diagnostics.metrics`, so training buffers and reported metrics agree by
construction.

Chunking and randomness: a chunked draw consumes the global torch RNG stream chunk by chunk. On
the CPU, ``torch.randn`` gives the same numbers for one call of n values as for consecutive calls
of n_i values when every n_i is a multiple of 16, so a chunked draw then equals the unchunked one
exactly; otherwise (and on CUDA, whose generator offsets per call) the two have the same
distribution but not the same values.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor

from ..energy.base import Energy
from ..errors import BoltzgenError
from .sharded import ShardedWeights, sharded_resample

__all__ = ["WeightedSamples", "BufferStatistics", "draw_weighted_samples", "resample_buffer"]


@dataclasses.dataclass
class WeightedSamples:
    """Model samples with their log-density and reduced energy at one temperature.

    Attributes:
        samples: States x ~ q, shape ``(n, *event_shape)``.
        log_q: Model log-densities log q(x), shape ``(n,)``.
        reduced_energies: Target reduced energies u_T(x) in kT at ``temperature``, shape ``(n,)``.
        temperature: The temperature of ``reduced_energies`` (target units).
    """

    samples: Tensor
    log_q: Tensor
    reduced_energies: Tensor
    temperature: float

    @property
    def log_weights(self) -> Tensor:
        """Unnormalised log importance weights -u_T(x) - log q(x), shape ``(n,)``, float64."""
        return -self.reduced_energies.to(torch.float64) - self.log_q.to(torch.float64)


@dataclasses.dataclass
class BufferStatistics:
    """What one buffer resampling saw (plain numbers, read from the device once).

    Attributes:
        n_samples: Model samples drawn (each one energy evaluation).
        n_dropped: Samples whose log-weight was NaN or +inf (zero weight, left out of N).
        n_clipped: Log-weights clipped to the k-th largest, k = floor(clip_fraction * N kept)
            (0 when k <= 1).
        ess: Reverse ESS fraction (sum w)^2 / (N sum w^2) of the clipped weights.
        max_weight_fraction: Largest normalised (clipped) weight, w_max / sum w.
        resample_size: Buffer size M.
        unique_samples: Distinct drawn samples in the buffer.
    """

    n_samples: int
    n_dropped: int
    n_clipped: int
    ess: float
    max_weight_fraction: float
    resample_size: int
    unique_samples: int


@torch.no_grad()
def draw_weighted_samples(
    model: torch.nn.Module,
    target: Energy,
    n: int,
    temperature: float | None = None,
    chunk_size: int = 65536,
    storage: torch.device | str | None = None,
) -> WeightedSamples:
    """Draw ``n`` model samples in chunks, with log q and reduced energies at ``temperature``.

    Arguments:
        model: A :class:`~boltzgen.models.base.Model`; an unnormalized one (an RBM) has its
            :meth:`~boltzgen.models.base.Model.log_normalizer` subtracted, so log q is always
            normalized.
        target: The target energy; evaluated once per sample.
        n: Number of samples.
        temperature: Temperature of the energies (target units; ``None``: the target's own).
        chunk_size: Samples per model/energy call (bounds the memory of one pass).
        storage: Device that holds the result (``None``: the device the model samples on).

    Returns:
        :class:`WeightedSamples` with tensors of leading size ``n``.
    """
    if n < 1 or chunk_size < 1:
        raise BoltzgenError(
            f"need at least one sample and a positive chunk size, got n={n}, "
            f"chunk_size={chunk_size}"
        )
    was_training = model.training
    model.eval()
    log_normalizer = None if model.normalized else model.log_normalizer().detach()
    samples = log_q = energies = None
    for start in range(0, n, chunk_size):
        x, lq = model.sample_and_log_prob(min(chunk_size, n - start))
        if log_normalizer is not None:
            lq = lq - log_normalizer.to(lq)
        u = target.energy(x, temperature)
        if samples is None:
            where = x.device if storage is None else torch.device(storage)
            samples = x.new_empty((n, *x.shape[1:]), device=where)
            log_q = lq.new_empty(n, device=where)
            energies = u.new_empty(n, device=where)
        stop = start + x.shape[0]
        samples[start:stop] = x
        log_q[start:stop] = lq
        energies[start:stop] = u
    model.train(was_training)
    used = target.temperature if temperature is None else float(temperature)
    return WeightedSamples(samples, log_q, energies, used)


def resample_buffer(
    drawn: WeightedSamples,
    size: int,
    clip_fraction: float = 1e-4,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, BufferStatistics]:
    """Clip the log-weights of ``drawn`` and resample a buffer of ``size`` states with replacement.

    NaN and +inf log-weights are dropped (zero weight), the largest floor(clip_fraction * N)
    log-weights are clipped to the k-th largest
    (:func:`~boltzgen.diagnostics.metrics.clip_log_weights`),
    and indices are drawn with probabilities proportional to the clipped weights (multinomial,
    :func:`~boltzgen.diagnostics.metrics.importance_resample`).

    Under several ranks (``torchrun``) ``drawn`` is this rank's share of the samples; the
    clipping, the statistics and the multinomial draw are those of all ranks' samples together,
    and this rank receives its ``size / K`` states of the buffer (:mod:`.sharded`; a collective).

    Arguments:
        drawn: Weighted model samples (this rank's).
        size: Buffer size M (of all ranks).
        clip_fraction: Fraction of the largest log-weights to clip (1e-4 in TA-BG).
        generator: Random generator on the device of the weights (``None``: the global one).

    Returns:
        The buffer, shape ``(size / K, *event_shape)`` (K ranks), on the samples' device, and
        the statistics of the whole buffer.

    Raises:
        BoltzgenError: No sample has a positive finite weight (every energy NaN or infinite).
    """
    if size < 1:
        raise BoltzgenError(
            f"the resampled buffer needs at least one sample, got resample_size={size}"
        )
    weights = ShardedWeights(drawn.log_weights, clip_fraction)
    numbers = (
        torch.stack(
            [
                weights.n_finite,
                weights.n_samples,
                weights.n_kept,
                weights.n_clipped,
                weights.ess,
                weights.max_weight_fraction,
            ]
        )
        .cpu()
        .tolist()
    )  # one device read per buffer
    n_finite, n_samples, n_kept, n_clipped, ess, max_fraction = numbers
    if n_finite == 0:
        raise BoltzgenError(
            f"all {int(n_samples)} model samples have non-finite importance weights at T = "
            f"{drawn.temperature:g} "
            "(NaN or infinite energies); lower the learning rate or cap the energies in training"
        )
    buffer, unique = sharded_resample(drawn.samples, weights, size, generator)
    stats = BufferStatistics(
        n_samples=int(n_samples),
        n_dropped=int(n_samples - n_kept),
        n_clipped=int(n_clipped),
        ess=float(ess),
        max_weight_fraction=float(max_fraction),
        resample_size=int(size),
        unique_samples=unique,
    )
    return buffer, stats

"""Importance weights of model samples: log-weights, clipping, effective sample sizes, resampling.

Conventions:

- Log-weights are unnormalized: ``log w = -u(x) - log q(x)`` with u the reduced energy in kT and
  log q the model's log-density. Every function here is invariant to adding a constant to them.
- The functions compute in float64 on the device of their input and never synchronize with the
  host, so they can run inside a training loop; ``float(result)`` gives a Python number.
- **Non-finite log-weights.** ``-inf`` is a well-defined zero weight (a sample with infinite
  energy, e.g. an atom clash): it stays and counts in N. ``NaN`` and ``+inf`` carry no usable
  weight (a failed energy evaluation, an overflow): they are *dropped*, i.e. given zero weight and
  left out of N, so a NaN never poisons a sum and is never resampled.

Definitions (TA-BG, Schopmans & Friederich 2025; CMT, von Klitzing et al. 2025): reverse ESS
``(sum w)^2 / (N sum w^2)`` over x ~ q after clipping the largest ``floor(1e-4 N)`` log-weights
to the k-th largest; forward ESS ``N^2 / (sum w * sum 1/w)`` over target samples.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from numpy.typing import ArrayLike
from torch import Tensor

from ..errors import BoltzgenError

__all__ = [
    "as_float64",
    "log_importance_weights",
    "clip_log_weights",
    "reverse_ess",
    "self_normalized_weights",
    "forward_ess",
    "importance_resample",
    "log_z_estimate",
    "variational_estimates",
]


def as_float64(values: Tensor | ArrayLike, name: str) -> Tensor:
    """A 1-D float64 tensor on the input's device (NumPy and sequences go to the CPU)."""
    tensor = values if isinstance(values, Tensor) else torch.as_tensor(np.asarray(values))
    if tensor.dim() != 1:
        raise BoltzgenError(
            f"{name} must be one-dimensional (one value per sample), got shape "
            f"{tuple(tensor.shape)}"
        )
    if tensor.numel() == 0:
        raise BoltzgenError(f"{name} is empty: need at least one sample")
    return tensor.detach().to(torch.float64)


def _drop_undefined(log_w: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Log-weights with NaN and +inf set to -inf, the mask of those, and the kept count N
    (0-dim)."""
    undefined = torch.isnan(log_w) | torch.isposinf(log_w)
    kept = torch.where(undefined, torch.full_like(log_w, -math.inf), log_w)
    return kept, undefined, (~undefined).sum().to(log_w.dtype)


def log_importance_weights(
    reduced_energy: Tensor | ArrayLike, log_q: Tensor | ArrayLike
) -> Tensor:
    """Unnormalized log importance weights ``log w = -u(x) - log q(x)`` of samples x ~ q.

    Arguments:
        reduced_energy: Target reduced energies u(x) in kT, shape ``(n,)``.
        log_q: Model log-densities log q(x) of the same samples, shape ``(n,)``.

    Returns:
        Log-weights, shape ``(n,)``, float64, on the inputs' device.
    """
    u = as_float64(reduced_energy, "reduced_energy")
    lq = as_float64(log_q, "log_q")
    if u.shape != lq.shape:
        raise BoltzgenError(
            f"reduced_energy and log_q must have the same shape, got {tuple(u.shape)} and "
            f"{tuple(lq.shape)}"
        )
    return -u - lq


def clip_log_weights(log_w: Tensor | ArrayLike, fraction: float = 1e-4) -> Tensor:
    """Clip the largest ``k = floor(fraction * N)`` log-weights to the k-th largest value.

    NaN and ``+inf`` entries are dropped first (set to ``-inf``, zero weight, and left out of N);
    ``-inf`` stays. Clipping happens only when ``k > 1`` (for ``k = 1`` the largest value would be
    clipped to itself). Afterwards exactly the k largest entries equal the former k-th largest
    value (more if ties sit just below it).

    Arguments:
        log_w: Unnormalized log-weights, shape ``(n,)``.
        fraction: Fraction of the (kept) samples whose log-weights are clipped, in ``[0, 1)``.

    Returns:
        Clipped log-weights, shape ``(n,)``, float64, same device; aligned with the input.
    """
    if not 0.0 <= fraction < 1.0:
        raise BoltzgenError(f"clip fraction must be in [0, 1), got {fraction!r}")
    kept, _, n = _drop_undefined(as_float64(log_w, "log_w"))
    k = torch.floor(n * fraction).to(torch.long)
    descending = torch.sort(kept, descending=True).values
    kth_largest = descending.index_select(0, (k - 1).clamp(min=0).reshape(1))  # no host sync
    clipped = torch.minimum(kept, kth_largest)
    return torch.where(k > 1, clipped, kept)


def reverse_ess(log_w: Tensor | ArrayLike, clip_fraction: float = 1e-4) -> Tensor:
    """Reverse effective sample size ``(sum w)^2 / (N sum w^2)`` of samples x ~ q, as a fraction.

    The log-weights are first clipped with :func:`clip_log_weights` (``clip_fraction = 0``: no
    clipping); N counts the kept samples (NaN and ``+inf`` dropped). Computed in log space:
    ``exp(2 logsumexp(log w) - logsumexp(2 log w) - log N)``.

    Arguments:
        log_w: Unnormalized log-weights ``-u(x) - log q(x)`` of x ~ q, shape ``(n,)``.
        clip_fraction: Fraction of largest log-weights to clip (1e-4 in TA-BG and CMT).

    Returns:
        ESS fraction in ``[0, 1]``, a 0-dim float64 tensor (0 when no weight is positive).
    """
    clipped = clip_log_weights(log_w, clip_fraction)
    _, _, n = _drop_undefined(as_float64(log_w, "log_w"))
    log_ess = 2.0 * torch.logsumexp(clipped, 0) - torch.logsumexp(2.0 * clipped, 0) - torch.log(n)
    return torch.nan_to_num(torch.exp(log_ess), nan=0.0).clamp(0.0, 1.0)


def self_normalized_weights(log_w: Tensor | ArrayLike, clip_fraction: float = 1e-4) -> np.ndarray:
    """Importance weights that sum to one, after :func:`clip_log_weights`, as a NumPy array.

    For histograms and plots (not a hot path: returns host memory). NaN and ``+inf``
    log-weights get weight 0.

    Arguments:
        log_w: Unnormalized log-weights, shape ``(n,)``; at least one must be finite.
        clip_fraction: Fraction of largest log-weights clipped.

    Returns:
        Weights, shape ``(n,)``, float64, non-negative, summing to 1.
    """
    clipped = clip_log_weights(log_w, clip_fraction)
    return torch.softmax(clipped, 0).cpu().numpy()


def forward_ess(log_w_on_data: Tensor | ArrayLike) -> Tensor:
    """Forward effective sample size ``N^2 / (sum w * sum 1/w)`` over target (MD) samples.

    For x ~ p and w = p~(x)/q(x) (``log w = -u(x) - log q(x)`` evaluated on MD frames). By
    Cauchy-Schwarz the value lies in ``[0, 1]``: it is already a fraction. NaN and ``+inf``
    entries are dropped; a frame with ``log w = -inf`` (infinite energy) makes
    ``sum 1/w`` infinite and the ESS 0.

    Arguments:
        log_w_on_data: Log-weights on the MD frames, shape ``(n,)``.

    Returns:
        ESS fraction in ``[0, 1]``, a 0-dim float64 tensor.
    """
    kept, dropped, n = _drop_undefined(as_float64(log_w_on_data, "log_w_on_data"))
    log_inverse = torch.where(dropped, torch.full_like(kept, -math.inf), -kept)
    log_ess = 2.0 * torch.log(n) - torch.logsumexp(kept, 0) - torch.logsumexp(log_inverse, 0)
    return torch.nan_to_num(torch.exp(log_ess), nan=0.0).clamp(0.0, 1.0)


def importance_resample(
    log_w: Tensor | ArrayLike, n: int, generator: torch.Generator | None = None
) -> Tensor:
    """Indices of ``n`` draws with replacement, with probabilities proportional to the weights.

    Multinomial resampling by inverse-CDF lookup (works for any number of samples, unlike
    ``torch.multinomial``'s 2^24 limit). NaN and ``+inf`` log-weights get zero probability.
    Clip the log-weights first (:func:`clip_log_weights`) if the weights are heavy-tailed.

    Arguments:
        log_w: Unnormalized log-weights, shape ``(N,)``; at least one must be finite.
        n: Number of draws.
        generator: Random generator on the device of ``log_w`` (``None``: the global one).

    Returns:
        Indices into ``log_w``, shape ``(n,)``, int64, on the device of ``log_w``.
    """
    if n < 0:
        raise BoltzgenError(f"number of resampled indices must be non-negative, got {n}")
    kept, _, _ = _drop_undefined(as_float64(log_w, "log_w"))
    cumulative = torch.cumsum(torch.exp(kept - kept.max()), 0)
    uniform = torch.rand(n, generator=generator, device=kept.device, dtype=torch.float64)
    indices = torch.searchsorted(cumulative, uniform * cumulative[-1], right=True)
    return indices.clamp(max=kept.numel() - 1)


def log_z_estimate(log_w: Tensor, keep: Tensor | None = None) -> dict[str, Tensor]:
    """Importance-sampling estimate of log Z from log-weights log w = -u - log q of samples of q.

    Arguments:
        log_w: Log-weights, shape ``(M,)``.
        keep: Optional bool mask ``(M,)`` of the samples to use (default: finite log w).

    Returns:
        ``log_z_estimate`` log(mean w) (exp of it is unbiased for Z; log Z is biased low by about
        var(w) / (2 M mean(w)^2)) and ``log_z_standard_error`` the delta-method
        std(w) / (mean(w) sqrt(M)), 0-d float64 tensors (no host synchronisation). Unlike the
        plain mean of log q + u, a few samples of huge energy (clashes) barely move it.
    """
    log_w = log_w.to(torch.float64)
    keep = torch.isfinite(log_w) if keep is None else keep & torch.isfinite(log_w)
    m = keep.sum().to(torch.float64)
    masked = torch.where(keep, log_w, torch.full_like(log_w, -math.inf))
    log_mean_w = torch.logsumexp(masked, 0) - torch.log(m)
    relative = torch.where(keep, torch.exp(masked - log_mean_w), torch.zeros_like(log_w))
    relative_var = torch.where(keep, (relative - 1) ** 2, torch.zeros_like(log_w)).sum() / (m - 1)
    return {"log_z_estimate": log_mean_w, "log_z_standard_error": (relative_var / m).sqrt()}


def variational_estimates(
    log_q: Tensor,
    reduced_energies: Tensor,
    beta: float,
    n_sites: int,
    valid: Tensor | None = None,
) -> dict[str, Tensor]:
    """Free-energy estimates from samples x ~ q of a *normalized* model (VAN's diagnostics).

    With u = beta E the reduced energy and log w = -u - log q:

    - ``free_energy_per_site`` F_q = E_q[E + log q / beta] / N = E_q[u + log q] / (beta N), the
      variational upper bound on the exact F = -log Z / (beta N) (F_q - F = KL(q||p) / (beta N));
      ``free_energy_standard_error`` its Monte Carlo standard error std / sqrt(M);
    - ``log_z_estimate`` log(mean w), whose exponential is unbiased for Z (log Z itself is biased
      low by about var(w) / (2 M mean(w)^2)); ``log_z_standard_error`` the delta-method
      std(w) / (mean(w) sqrt(M));
    - ``ess`` the reverse ESS fraction (sum w)^2 / (M sum w^2), unclipped.

    Arguments:
        log_q: log q(x), shape ``(M,)``.
        reduced_energies: u(x), shape ``(M,)``.
        beta: Inverse temperature of u (1 for energies in kT).
        n_sites: N, the number of sites (units) of a state.
        valid: Optional bool mask ``(M,)`` of the samples to use (default: finite log w).

    Returns:
        Dict of 0-d float64 tensors on the input's device (no host synchronisation).
    """
    log_q, u = log_q.to(torch.float64), reduced_energies.to(torch.float64)
    log_w = -u - log_q
    keep = torch.isfinite(log_w) if valid is None else valid & torch.isfinite(log_w)
    m = keep.sum().to(torch.float64)
    per_site = torch.where(keep, -log_w, torch.zeros_like(log_w)) / (beta * n_sites)
    mean = per_site.sum() / m
    variance = torch.where(keep, (per_site - mean) ** 2, torch.zeros_like(per_site)).sum() / (
        m - 1
    )
    masked = torch.where(keep, log_w, torch.full_like(log_w, -math.inf))
    log_ess = 2.0 * torch.logsumexp(masked, 0) - torch.logsumexp(2.0 * masked, 0) - torch.log(m)
    return {
        "free_energy_per_site": mean,
        "free_energy_standard_error": (variance / m).sqrt(),
        **log_z_estimate(log_w, keep),
        "ess": torch.exp(log_ess),
    }

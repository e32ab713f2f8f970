"""Sample-quality metrics of a Boltzmann generator, as defined in the literature.

Importance weights, effective sample sizes (reverse and forward), the negative log-likelihood of
MD test frames, and Ramachandran-histogram divergences with their MD split-half noise floor.

Conventions:

- Log-weights are unnormalized: ``log w = -u(x) - log q(x)`` with u the reduced energy in kT and
  log q the model's log-density. Every metric here is invariant to adding a constant to them.
- The weight functions themselves (clipping, reverse and forward ESS, resampling) live in
  :mod:`boltzgen.samplers.weights`, shared with the training buffers of TA-BG.
- Ramachandran histograms are NumPy float64 functions on angles in radians, binned on
  ``[0, 2 pi)^2`` after wrapping.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike
from torch import Tensor

from ..errors import BoltzgenError
from ..samplers.weights import as_float64, self_normalized_weights

__all__ = [
    "nll",
    "angle_pairs",
    "ramachandran_histogram",
    "ramachandran_kl",
    "ramachandran_tv",
    "split_half_floor",
    "ramachandran_metrics",
    "RAMACHANDRAN_BINS",
]

#: Bins per axis of the Ramachandran histograms on [0, 2 pi) (the literature's 100 x 100 grid).
RAMACHANDRAN_BINS = 100

_TWO_PI = 2.0 * math.pi


def nll(log_q_on_test: Tensor | ArrayLike) -> dict[str, float]:
    """Negative log-likelihood of test (MD) frames under the model, in nats.

    Frames outside the model's support (``log q = -inf``, e.g. a bond beyond its interval) are
    counted and reported, not averaged as infinity; NaN and ``+inf`` log-densities (failed
    evaluations) are counted separately as invalid.

    Arguments:
        log_q_on_test: Model log-densities of the test frames, shape ``(n,)`` (positions in nm,
            density including the internal-coordinate Jacobian).

    Returns:
        ``{"nll": mean -log q over the frames inside the support (NaN when none),
        "nll_standard_error": its standard error, "n_frames": n, "n_outside_support": count of
        -inf, "fraction_outside_support": that count / n, "n_invalid": count of NaN and +inf}``.
    """
    lq = as_float64(log_q_on_test, "log_q_on_test").cpu().numpy()
    inside = np.isfinite(lq)
    n_outside = int(np.isneginf(lq).sum())
    n_inside = int(inside.sum())
    values = -lq[inside]
    mean = float(values.mean()) if n_inside else math.nan
    error = float(values.std(ddof=1) / math.sqrt(n_inside)) if n_inside > 1 else math.nan
    return {
        "nll": mean,
        "nll_standard_error": error,
        "n_frames": int(lq.size),
        "n_outside_support": n_outside,
        "fraction_outside_support": n_outside / lq.size,
        "n_invalid": int((np.isnan(lq) | np.isposinf(lq)).sum()),
    }


def _wrap(angles: ArrayLike) -> np.ndarray:
    """Angles in radians mapped into ``[0, 2 pi)``, float64."""
    wrapped = np.mod(np.asarray(angles, dtype=np.float64), _TWO_PI)
    return np.where(wrapped >= _TWO_PI, 0.0, wrapped)


def ramachandran_histogram(
    phi: ArrayLike, psi: ArrayLike, bins: int = RAMACHANDRAN_BINS, weights: ArrayLike | None = None
) -> np.ndarray:
    """Density-normalized 2-D histogram of (phi, psi) on ``[0, 2 pi)^2``.

    Arguments:
        phi: Angles in radians, any range (wrapped periodically), shape ``(n,)``.
        psi: Angles in radians, shape ``(n,)``.
        bins: Bins per axis.
        weights: Non-negative weights, shape ``(n,)`` (``None``: equal weights).

    Returns:
        Densities h, shape ``(bins, bins)``, indexed ``[phi_bin, psi_bin]``, in rad^-2, with
        ``sum(h) * (2 pi / bins)^2 = 1``.
    """
    phi_w, psi_w = _wrap(phi).ravel(), _wrap(psi).ravel()
    if phi_w.shape != psi_w.shape or phi_w.size == 0:
        raise BoltzgenError(
            f"phi and psi must be non-empty and of equal length, got {phi_w.size} and {psi_w.size}"
        )
    if weights is not None:
        weights = np.asarray(weights, dtype=np.float64).ravel()
        if weights.shape != phi_w.shape or not (np.all(weights >= 0) and weights.sum() > 0):
            raise BoltzgenError(
                "weights must be non-negative, not all zero, one per (phi, psi) sample"
            )
    edges = np.linspace(0.0, _TWO_PI, bins + 1)
    histogram, _, _ = np.histogram2d(
        phi_w, psi_w, bins=(edges, edges), weights=weights, density=True
    )
    return histogram


def _bin_area(histogram: np.ndarray) -> float:
    return (_TWO_PI / histogram.shape[0]) * (_TWO_PI / histogram.shape[1])


def ramachandran_kl(p_hist: np.ndarray, q_hist: np.ndarray, eps: float = 1e-10) -> float:
    """Forward KL(p || q) between two Ramachandran density histograms, in nats.

    ``sum h_p log((h_p + eps) / (h_q + eps)) * bin_area`` (bins where h_p = 0 contribute 0).

    Arguments:
        p_hist: Reference (MD) densities from :func:`ramachandran_histogram`, ``(bins, bins)``.
        q_hist: Model densities on the same grid.
        eps: Regularizer of empty bins (1e-10 in the literature).
    """
    p, q = _same_grid(p_hist, q_hist)
    return float(np.sum(p * np.log((p + eps) / (q + eps))) * _bin_area(p))


def ramachandran_tv(p_hist: np.ndarray, q_hist: np.ndarray) -> float:
    """Total-variation distance ``0.5 sum |h_p - h_q| * bin_area`` between two histograms, in [0,
    1]."""
    p, q = _same_grid(p_hist, q_hist)
    return float(0.5 * np.sum(np.abs(p - q)) * _bin_area(p))


def _same_grid(p_hist: np.ndarray, q_hist: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p, q = np.asarray(p_hist, dtype=np.float64), np.asarray(q_hist, dtype=np.float64)
    if p.shape != q.shape or p.ndim != 2:
        raise BoltzgenError(
            f"histograms must be 2-D on the same grid, got shapes {p.shape} and {q.shape}"
        )
    return p, q


def angle_pairs(angles: Sequence[ArrayLike], name: str) -> tuple[np.ndarray, np.ndarray]:
    """``(phi, psi)`` as float64 arrays of shape ``(n, k)`` (1-D inputs become ``(n, 1)``).

    Arguments:
        angles: A pair of arrays of angles in radians, shape ``(n, k)`` or ``(n,)``.
        name: What the pair is, for the error message.
    """
    if len(angles) != 2:
        raise BoltzgenError(f"{name} must be a pair (phi, psi) of arrays of shape (n, k)")
    phi, psi = (np.asarray(a, dtype=np.float64) for a in angles)
    phi, psi = (a[:, None] if a.ndim == 1 else a for a in (phi, psi))
    if phi.shape != psi.shape or phi.ndim != 2 or phi.shape[0] == 0:
        raise BoltzgenError(
            f"{name}: phi and psi must both have shape (n, k) with n > 0, got {phi.shape} and "
            f"{psi.shape}"
        )
    return phi, psi


def split_half_floor(
    reference_angles: Sequence[ArrayLike], bins: int = RAMACHANDRAN_BINS
) -> dict[str, list[float]]:
    """Ramachandran KL and TV between the first and the second half of the reference frames.

    The noise floor of the histogram metrics: two independent samples of the *same* distribution
    at n/2 frames per side. The halves must be decorrelated samples (subsample the MD trajectory
    at its autocorrelation time, or use independent trajectories), otherwise the floor is
    misestimated: correlated frames make it too large when the halves have not both visited all
    basins. The floor shrinks with sample size, so at n/2 per side it is an upper estimate of the
    floor of a comparison with more samples per side.

    Arguments:
        reference_angles: ``(phi, psi)``, radians, each of shape ``(n, k)`` (k residues).
        bins: Bins per axis.

    Returns:
        ``{"kl": [k values], "tv": [k values]}``, KL(first || second) per (phi_i, psi_i) pair.
    """
    phi, psi = angle_pairs(reference_angles, "reference_angles")
    half = phi.shape[0] // 2
    if half == 0:
        raise BoltzgenError("split-half floor needs at least two reference frames")
    first = [
        ramachandran_histogram(phi[:half, i], psi[:half, i], bins) for i in range(phi.shape[1])
    ]
    second = [
        ramachandran_histogram(phi[half:, i], psi[half:, i], bins) for i in range(phi.shape[1])
    ]
    return {
        "kl": [ramachandran_kl(a, b) for a, b in zip(first, second)],
        "tv": [ramachandran_tv(a, b) for a, b in zip(first, second)],
    }


def ramachandran_metrics(
    reference_angles: Sequence[ArrayLike],
    flow_angles: Sequence[ArrayLike],
    flow_log_weights: Tensor | ArrayLike | None = None,
    clip_fraction: float = 1e-4,
    bins: int = RAMACHANDRAN_BINS,
) -> dict[str, object]:
    """Ramachandran KL(MD || flow) and TV per (phi_i, psi_i) pair, plain and reweighted.

    Arguments:
        reference_angles: MD ``(phi, psi)`` in radians, each ``(n_md, k)``.
        flow_angles: Flow-sample ``(phi, psi)`` in radians, each ``(n_flow, k)``.
        flow_log_weights: Log importance weights of the flow samples, ``(n_flow,)``; clipped
            with :func:`clip_log_weights` at ``clip_fraction`` before use. ``None``: only the
            plain metrics.
        clip_fraction: Fraction of largest log-weights clipped.
        bins: Bins per axis (100 in the literature).

    Returns:
        ``{"kl": [k], "tv": [k], "kl_reweighted": [k], "tv_reweighted": [k]`` (the last two only
        with weights), ``"tv_mean"``, ``"kl_mean"`` (and ``*_reweighted_mean``),
        ``"split_half": split_half_floor(...)``, ``"n_reference"``, ``"n_flow"``, ``"bins"}``.
    """
    ref_phi, ref_psi = angle_pairs(reference_angles, "reference_angles")
    flow_phi, flow_psi = angle_pairs(flow_angles, "flow_angles")
    if ref_phi.shape[1] != flow_phi.shape[1]:
        raise BoltzgenError(
            f"reference has {ref_phi.shape[1]} (phi, psi) pairs but the flow samples have "
            f"{flow_phi.shape[1]}"
        )
    pairs = range(ref_phi.shape[1])
    reference = [ramachandran_histogram(ref_phi[:, i], ref_psi[:, i], bins) for i in pairs]
    plain = [ramachandran_histogram(flow_phi[:, i], flow_psi[:, i], bins) for i in pairs]
    result: dict[str, object] = {
        "kl": [ramachandran_kl(p, q) for p, q in zip(reference, plain)],
        "tv": [ramachandran_tv(p, q) for p, q in zip(reference, plain)],
    }
    if flow_log_weights is not None:
        weights = self_normalized_weights(flow_log_weights, clip_fraction)
        if weights.shape[0] != flow_phi.shape[0]:
            raise BoltzgenError(
                f"got {weights.shape[0]} flow log-weights for {flow_phi.shape[0]} flow samples"
            )
        reweighted = [
            ramachandran_histogram(flow_phi[:, i], flow_psi[:, i], bins, weights) for i in pairs
        ]
        result["kl_reweighted"] = [ramachandran_kl(p, q) for p, q in zip(reference, reweighted)]
        result["tv_reweighted"] = [ramachandran_tv(p, q) for p, q in zip(reference, reweighted)]
    for key in list(result):
        result[f"{key}_mean"] = float(np.mean(result[key]))
    result["split_half"] = split_half_floor((ref_phi, ref_psi), bins)
    result["n_reference"] = int(ref_phi.shape[0])
    result["n_flow"] = int(flow_phi.shape[0])
    result["bins"] = bins
    return result

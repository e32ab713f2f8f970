"""Free-energy surfaces, profiles and basin free-energy differences from (weighted) samples.

Free energies are in kT: F = -log p of a density histogram, shifted to zero at the minimum.
Angles are in radians. Weights are non-negative importance weights (e.g. ``exp(log_w - max)``
of flow samples); ``None`` means equal weights (MD frames).

**How weights enter the bootstrap.** A bootstrap replicate resamples *frames* uniformly with
replacement, each frame carrying its own weight; the replicate's histogram is the weighted
histogram of the resampled frames. The error bars therefore include the variance of the weights
(a few dominating weights give large errors), not only counting noise. Frames are assumed
independent: for correlated MD frames, subsample first or the errors are too small.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike

from ..errors import BoltzgenError

__all__ = [
    "free_energy_surface_2d",
    "free_energy_profile_1d",
    "basin_free_energy_difference",
    "ANGLE_RANGE",
]

#: Default histogram range of periodic coordinates: angles in radians on [-pi, pi).
ANGLE_RANGE: tuple[float, float] = (-math.pi, math.pi)

#: A rectangular basin ``((x_low, x_high), (y_low, y_high))`` in radians.
Basin = Sequence[Sequence[float]]


def _values(values: ArrayLike, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64).ravel()
    if array.size == 0:
        raise BoltzgenError(f"{name} is empty: need at least one sample")
    return array


def _weights(weights: ArrayLike | None, n: int) -> np.ndarray:
    if weights is None:
        return np.ones(n)
    array = np.asarray(weights, dtype=np.float64).ravel()
    if array.shape != (n,) or not (np.all(array >= 0) and array.sum() > 0):
        raise BoltzgenError(
            f"weights must be {n} non-negative numbers, not all zero (one per sample)"
        )
    return array


def _bin_indices(
    values: np.ndarray, bins: int, periodic: bool, value_range: tuple[float, float] | None
) -> tuple[np.ndarray, np.ndarray]:
    """Bin index of every sample (-1 outside a non-periodic range) and the bin edges."""
    if value_range is None:
        value_range = ANGLE_RANGE if periodic else (float(values.min()), float(values.max()))
    low, high = map(float, value_range)
    if not high > low:
        raise BoltzgenError(f"histogram range must have high > low, got {value_range}")
    edges = np.linspace(low, high, bins + 1)
    if periodic:
        values = low + np.mod(values - low, high - low)
    index = np.floor((values - low) / (high - low) * bins).astype(np.int64)
    index = np.where(values == high, bins - 1, index)
    index = np.where((index < 0) | (index >= bins), -1, index)
    return index, edges


def _free_energy(weighted_counts: np.ndarray, bin_volume: float) -> np.ndarray:
    """-log of the density histogram (inf for empty bins), unshifted."""
    density = weighted_counts / (weighted_counts.sum() * bin_volume)
    with np.errstate(divide="ignore"):
        return -np.log(density)


def free_energy_surface_2d(
    x: ArrayLike,
    y: ArrayLike,
    weights: ArrayLike | None = None,
    bins: int = 60,
    periodic: bool = True,
    range: tuple[tuple[float, float], tuple[float, float]] | None = None,
    kT_cap: float | None = None,
) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
    """Free-energy surface F(x, y) = -log p(x, y) in kT, zero at its minimum.

    Arguments:
        x: First coordinate of each sample, shape ``(n,)`` (radians when periodic).
        y: Second coordinate, shape ``(n,)``.
        weights: Non-negative sample weights, shape ``(n,)``; ``None``: equal weights.
        bins: Bins per axis.
        periodic: Wrap both coordinates into ``range`` (angles). Otherwise samples outside
            ``range`` are ignored.
        range: ``((x_low, x_high), (y_low, y_high))``; default ``[-pi, pi)^2`` when periodic,
            the data's extent otherwise.
        kT_cap: Replace free energies above this value (and empty bins) by it; ``None``: empty
            bins are ``inf``.

    Returns:
        ``(F, (x_edges, y_edges))``: F of shape ``(bins, bins)`` indexed ``[x_bin, y_bin]`` in kT,
        edges of shape ``(bins + 1,)`` each.
    """
    xs, ys = _values(x, "x"), _values(y, "y")
    if xs.shape != ys.shape:
        raise BoltzgenError(f"x and y must have the same length, got {xs.size} and {ys.size}")
    w = _weights(weights, xs.size)
    x_range, y_range = (None, None) if range is None else range
    x_index, x_edges = _bin_indices(xs, bins, periodic, x_range)
    y_index, y_edges = _bin_indices(ys, bins, periodic, y_range)
    inside = (x_index >= 0) & (y_index >= 0)
    counts = np.bincount(x_index[inside] * bins + y_index[inside], w[inside], bins * bins)
    if not counts.sum() > 0:
        raise BoltzgenError("no sample with positive weight falls inside the histogram range")
    volume = (x_edges[1] - x_edges[0]) * (y_edges[1] - y_edges[0])
    free_energy = _free_energy(counts, volume).reshape(bins, bins)
    free_energy = free_energy - free_energy.min()
    if kT_cap is not None:
        free_energy = np.minimum(free_energy, kT_cap)
    return free_energy, (x_edges, y_edges)


def free_energy_profile_1d(
    x: ArrayLike,
    weights: ArrayLike | None = None,
    bins: int = 60,
    periodic: bool = True,
    range: tuple[float, float] | None = None,
    n_bootstrap: int = 200,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Free-energy profile F(x) = -log p(x) in kT with bootstrap error bars.

    Arguments:
        x: Coordinate of each sample, shape ``(n,)`` (radians when periodic).
        weights: Non-negative sample weights, shape ``(n,)``; ``None``: equal weights. See the
            module docstring for how weights enter the bootstrap.
        bins: Number of bins.
        periodic: Wrap x into ``range``; otherwise samples outside it are ignored.
        range: ``(low, high)``; default ``[-pi, pi)`` when periodic, the data's extent otherwise.
        n_bootstrap: Bootstrap replicates (frames resampled with replacement); 0: no errors.
        seed: Seed of the bootstrap's random generator.

    Returns:
        ``(centres, F, F_err)``, each of shape ``(bins,)``: bin centres (units of x), F in kT with
        minimum zero (``inf`` in empty bins), and the bootstrap standard deviation of F in kT
        (``nan`` where fewer than two replicates populate the bin, or without bootstrap).
    """
    xs = _values(x, "x")
    w = _weights(weights, xs.size)
    index, edges = _bin_indices(xs, bins, periodic, range)
    inside = index >= 0
    index, w = index[inside], w[inside]
    if not w.sum() > 0:
        raise BoltzgenError("no sample with positive weight falls inside the histogram range")
    width = edges[1] - edges[0]
    free_energy = _free_energy(np.bincount(index, w, bins), width)
    offset = free_energy.min()
    error = np.full(bins, np.nan)
    if n_bootstrap > 1:
        rng = np.random.default_rng(seed)
        replicates = np.empty((n_bootstrap, bins))
        for b in np.arange(n_bootstrap):
            draw = rng.integers(0, index.size, index.size)
            replicates[b] = _free_energy(np.bincount(index[draw], w[draw], bins), width)
        finite = np.isfinite(replicates)
        populated = finite.sum(axis=0) > 1
        replicates = np.where(finite, replicates, np.nan)
        error[populated] = np.nanstd(replicates[:, populated], axis=0, ddof=1)
    return 0.5 * (edges[:-1] + edges[1:]), free_energy - offset, error


def _in_interval(angles: np.ndarray, interval: Sequence[float]) -> np.ndarray:
    """Whether angles (radians) lie in ``[low, high]`` on the circle; ``low > high`` wraps."""
    low, high = map(float, interval)
    if high - low >= 2.0 * math.pi:
        return np.ones(angles.shape, dtype=bool)
    return np.mod(angles - low, 2.0 * math.pi) <= np.mod(high - low, 2.0 * math.pi)


def _basin_mask(x: np.ndarray, y: np.ndarray, basin: Basin) -> np.ndarray:
    if len(basin) != 2 or any(len(interval) != 2 for interval in basin):
        raise BoltzgenError(
            f"a basin is ((x_low, x_high), (y_low, y_high)) in radians, got {basin!r}"
        )
    return _in_interval(x, basin[0]) & _in_interval(y, basin[1])


def basin_free_energy_difference(
    x: ArrayLike,
    y: ArrayLike,
    basin_a: Basin,
    basin_b: Basin,
    weights: ArrayLike | None = None,
    n_bootstrap: int = 200,
    seed: int = 0,
) -> tuple[float, float]:
    """Free-energy difference ``F_b - F_a = -log(P_b / P_a)`` in kT between two basins.

    Basins are rectangles in two periodic angles, ``((x_low, x_high), (y_low, y_high))`` in
    radians; an interval with ``low > high`` wraps through +-pi (e.g. ``(2.5, -2.5)`` is the
    region around 180 degrees). Intervals are closed.

    Arguments:
        x: First angle (e.g. phi) of each sample in radians, shape ``(n,)``.
        y: Second angle (e.g. psi), shape ``(n,)``.
        basin_a: Reference basin.
        basin_b: Basin whose free energy relative to ``basin_a`` is returned.
        weights: Non-negative sample weights, shape ``(n,)``; ``None``: equal weights.
        n_bootstrap: Bootstrap replicates (frames resampled with replacement, with their
            weights); 0 or 1: no error.
        seed: Seed of the bootstrap's random generator.

    Returns:
        ``(dF, error)`` in kT; dF is ``inf``/``-inf`` when a basin is empty, error is the
        bootstrap standard deviation over replicates with both basins populated (``nan``
        without bootstrap).
    """
    xs, ys = _values(x, "x"), _values(y, "y")
    if xs.shape != ys.shape:
        raise BoltzgenError(f"x and y must have the same length, got {xs.size} and {ys.size}")
    w = _weights(weights, xs.size)
    in_a, in_b = _basin_mask(xs, ys, basin_a), _basin_mask(xs, ys, basin_b)

    def difference(sample_weights: np.ndarray, draw: np.ndarray | slice) -> float:
        with np.errstate(divide="ignore"):
            return float(
                np.log(sample_weights[in_a[draw]].sum()) - np.log(sample_weights[in_b[draw]].sum())
            )

    delta = difference(w, slice(None))
    error = math.nan
    if n_bootstrap > 1:
        rng = np.random.default_rng(seed)
        draws = (rng.integers(0, xs.size, xs.size) for _ in range(n_bootstrap))
        replicates = np.array([difference(w[draw], draw) for draw in draws])
        finite = replicates[np.isfinite(replicates)]
        error = float(finite.std(ddof=1)) if finite.size > 1 else math.nan
    return delta, error

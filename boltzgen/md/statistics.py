"""Time-series statistics of MD observables: autocorrelation times and block standard errors."""

from __future__ import annotations

import numpy as np

from ..errors import BoltzgenError

__all__ = ["integrated_autocorrelation_time", "block_standard_error"]


def integrated_autocorrelation_time(series: np.ndarray, window_factor: float = 5.0) -> float:
    """Integrated autocorrelation time tau = 1 + 2 sum_t rho(t), in frames.

    The autocorrelation rho(t) is averaged over independent chains (columns) after subtracting
    the mean over all of them, and summed up to Sokal's automatic window: the smallest M with
    M >= ``window_factor`` * tau(M). A series with no variance returns 1.

    Arguments:
        series: ``(n_frames,)`` or ``(n_frames, n_chains)``.
        window_factor: Sokal's c (5 is the usual choice).

    Returns:
        tau >= 1 in frames; n_frames / tau is the effective number of frames per chain.
    """
    x = np.asarray(series, dtype=np.float64)
    x = x[:, None] if x.ndim == 1 else x
    n = x.shape[0]
    if x.ndim != 2 or n < 4:
        raise BoltzgenError(
            f"need a (n_frames >= 4, n_chains) series for an autocorrelation time, got {x.shape}"
        )
    x = x - x.mean()
    size = 1 << (2 * n - 1).bit_length()
    spectrum = np.fft.rfft(x, size, axis=0)
    autocovariance = np.fft.irfft(spectrum * np.conj(spectrum), size, axis=0)[:n].mean(
        1
    ) / np.arange(n, 0, -1)
    if autocovariance[0] <= 0:
        return 1.0
    rho = autocovariance / autocovariance[0]
    taus = 2.0 * np.cumsum(rho) - 1.0
    window = np.arange(n) >= window_factor * taus
    m = int(np.argmax(window)) if window.any() else n - 1
    return float(max(taus[m], 1.0))


def block_standard_error(series: np.ndarray, n_blocks: int = 20) -> float:
    """Standard error of the mean of a correlated series from ``n_blocks`` contiguous block means.

    Arguments:
        series: ``(n_frames,)`` or ``(n_frames, n_chains)``; chains are averaged per frame first.
        n_blocks: Blocks (each should be several autocorrelation times long).
    """
    x = np.asarray(series, dtype=np.float64)
    x = x.mean(1) if x.ndim == 2 else x
    if n_blocks < 2 or len(x) < n_blocks:
        raise BoltzgenError(
            f"need at least {max(n_blocks, 2)} frames for {n_blocks} blocks, got {len(x)}"
        )
    blocks = x[: len(x) // n_blocks * n_blocks].reshape(n_blocks, -1).mean(1)
    return float(blocks.std(ddof=1) / np.sqrt(n_blocks))

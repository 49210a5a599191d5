"""Small numpy signal helpers for the generator (no scipy: worker processes start faster)."""

from __future__ import annotations

import numpy as np


def smooth(x: np.ndarray, sigma: float, axis: int = 0) -> np.ndarray:
    """Gaussian smoothing along ``axis`` with edge values repeated (like scipy's
    ``gaussian_filter1d(..., mode="nearest")``, kernel radius 4 sigma)."""
    x = np.asarray(x, dtype=float)
    r = max(int(4.0 * sigma + 0.5), 1)
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    k /= k.sum()
    xm = np.moveaxis(x, axis, -1)
    pad = [(0, 0)] * (xm.ndim - 1) + [(r, r)]
    xp = np.pad(xm, pad, mode="edge")
    win = np.lib.stride_tricks.sliding_window_view(xp, 2 * r + 1, axis=-1)
    return np.moveaxis(win @ k, -1, axis)


def resample(x: np.ndarray, n_out: int) -> np.ndarray:
    """Band-limited resampling of ``x`` (S,) to ``n_out`` samples over the same time span (FFT;
    treats the signal as periodic, fine for signals that start and end in silence)."""
    n = len(x)
    spec = np.fft.rfft(x)
    m = n_out // 2 + 1
    out = np.zeros(m, dtype=complex)
    k = min(m, len(spec))
    out[:k] = spec[:k]
    return np.fft.irfft(out, n_out) * (n_out / n)


def convolve(x: np.ndarray, h: np.ndarray) -> np.ndarray:
    """Full linear convolution of two 1-D signals via FFT (len(x) + len(h) - 1,)."""
    n = len(x) + len(h) - 1
    nfft = 1 << (n - 1).bit_length()
    return np.fft.irfft(np.fft.rfft(x, nfft) * np.fft.rfft(h, nfft), nfft)[:n]

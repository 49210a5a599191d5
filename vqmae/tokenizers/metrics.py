"""Reconstruction quality and codebook statistics of the tokenizers.

* :func:`log_spectral_distance` (dB) between power spectrograms: per frame the RMS over bins of
  ``10·log10(P / P̂)``, averaged over frames. Both spectra are floored at ``top_db`` below the
  reference's maximum (as ``librosa.power_to_db(top_db=80)``), so digital silence does not
  dominate.
* :func:`psnr` and :func:`ssim` for images in [-0.5, 0.5] (data range 1), averaged over images;
  SSIM is the standard Gaussian-window SSIM (σ 1.5, 11 taps, K1 0.01, K2 0.03) per channel.
* :func:`codebook_usage`: % of codes used and the perplexity of the code histogram.
"""

from __future__ import annotations

import math

import torch


def lsd_per_frame(ref: torch.Tensor, est: torch.Tensor, floor: float) -> torch.Tensor:
    """ref, est: power (..., F) -> (...) float64: RMS over bins of 10·log10(P / P̂), both
    clamped to ``floor``."""
    if ref.shape != est.shape:
        raise ValueError(f"shape mismatch {tuple(ref.shape)} vs {tuple(est.shape)}")
    a = 10.0 * torch.log10(ref.double().clamp_min(floor))
    b = 10.0 * torch.log10(est.double().clamp_min(floor))
    return ((a - b) ** 2).mean(dim=-1).sqrt()


def log_spectral_distance(ref: torch.Tensor, est: torch.Tensor, top_db: float = 80.0) -> float:
    """ref, est: power spectrograms (T, F) (or (..., T, F) sharing one floor) -> LSD in dB."""
    if ref.shape != est.shape:
        raise ValueError(f"shape mismatch {tuple(ref.shape)} vs {tuple(est.shape)}")
    if ref.numel() == 0:
        return float("nan")
    floor = float(ref.double().max().clamp_min(1e-20)) * 10.0 ** (-top_db / 10.0)
    return float(lsd_per_frame(ref, est, floor).mean())


def psnr(ref: torch.Tensor, est: torch.Tensor, data_range: float = 1.0) -> float:
    """ref, est: images (N, C, H, W) -> mean PSNR in dB over the N images."""
    if ref.shape != est.shape:
        raise ValueError(f"shape mismatch {tuple(ref.shape)} vs {tuple(est.shape)}")
    mse = ((ref.double() - est.double()) ** 2).flatten(1).mean(dim=1).clamp_min(1e-20)
    return float((10.0 * torch.log10(data_range**2 / mse)).mean())


def _gaussian_band(n: int, size: int, sigma: float) -> torch.Tensor:
    """(n - size + 1, n) float64: row i holds the normalised Gaussian taps at columns i..i+size-1,
    so ``band @ x`` is the valid 1-D Gaussian filtering of x along its rows."""
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = g / g.sum()
    band = torch.zeros(n - size + 1, n, dtype=torch.float64)
    for i in range(n - size + 1):
        band[i, i:i + size] = g
    return band


def ssim(ref: torch.Tensor, est: torch.Tensor, data_range: float = 1.0, win_size: int = 11,
         sigma: float = 1.5) -> float:
    """ref, est: images (N, C, H, W) -> mean SSIM (valid-window Gaussian SSIM, per channel).

    The separable Gaussian filter runs as two banded matrix products in float64 (exact, and
    much faster on CPU than a grouped float64 convolution)."""
    if ref.shape != est.shape or ref.ndim != 4:
        raise ValueError(f"expected two (N, C, H, W) tensors of one shape, got {tuple(ref.shape)}, "
                         f"{tuple(est.shape)}")
    h, w = ref.shape[-2:]
    win_size = min(win_size, h, w)
    if win_size % 2 == 0:
        win_size -= 1
    gh = _gaussian_band(h, win_size, sigma).to(ref.device)
    gw = _gaussian_band(w, win_size, sigma).to(ref.device)
    x, y = ref.double(), est.double()

    def filt(t: torch.Tensor) -> torch.Tensor:
        return gh @ t @ gw.T

    mu_x, mu_y = filt(x), filt(y)
    sxx = filt(x * x) - mu_x**2
    syy = filt(y * y) - mu_y**2
    sxy = filt(x * y) - mu_x * mu_y
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    s = ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / ((mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2))
    return float(s.mean())


def code_histogram(indices: torch.Tensor, codebook_size: int) -> torch.Tensor:
    """Any-shaped int tensor of codes -> (K,) int64 counts."""
    return torch.bincount(indices.reshape(-1).long().cpu(), minlength=codebook_size)[:codebook_size]


def codebook_usage(indices_or_counts: torch.Tensor, codebook_size: int,
                   counts: bool = False) -> dict[str, float]:
    """Codes (any shape) or a (K,) histogram -> {"codes_used_pct", "codes_used", "perplexity"}.

    Perplexity = exp(entropy of the code histogram): K when all codes are used equally, 1 when
    a single code is used.
    """
    hist = indices_or_counts.reshape(-1).long().cpu() if counts else code_histogram(
        indices_or_counts, codebook_size)
    total = int(hist.sum())
    if total == 0:
        return {"codes_used_pct": 0.0, "codes_used": 0, "perplexity": 0.0}
    p = hist.double() / total
    nz = p[p > 0]
    entropy = float(-(nz * nz.log()).sum())
    used = int((hist > 0).sum())
    return {"codes_used_pct": 100.0 * used / codebook_size, "codes_used": used,
            "perplexity": math.exp(entropy)}

"""Tokenizer metrics, plots and the Griffin-Lim path."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from vqmae.tokenizers import plots
from vqmae.tokenizers.metrics import codebook_usage, log_spectral_distance, psnr, ssim
from vqmae.tokenizers.spectrogram import griffin_lim, power_spectrogram, resample


def test_log_spectral_distance_known_values():
    p = torch.rand(20, 65) + 0.1
    assert log_spectral_distance(p, p) == 0.0
    assert log_spectral_distance(p, 10 * p) == pytest.approx(10.0)
    assert log_spectral_distance(p, p / 100) == pytest.approx(20.0)
    # digital silence is floored 80 dB under the reference's peak, so it cannot dominate
    silent = p.clone()
    silent[:10] = 0
    est = silent.clone()
    est[:10] = 1e-30
    assert log_spectral_distance(silent, est) == pytest.approx(0.0)


def test_psnr_and_ssim_known_values_and_against_scikit_image():
    skm = pytest.importorskip("skimage.metrics")
    g = torch.Generator().manual_seed(0)
    a = torch.rand(3, 3, 32, 32, generator=g) - 0.5
    assert psnr(a, a + 0.1) == pytest.approx(20.0, abs=1e-6)
    assert ssim(a, a) == pytest.approx(1.0)
    b = (a + 0.1 * torch.randn(a.shape, generator=g)).clamp(-0.5, 0.5)
    ref = np.mean([skm.structural_similarity(
        a[i].permute(1, 2, 0).double().numpy(), b[i].permute(1, 2, 0).double().numpy(), data_range=1.0,
        channel_axis=2, gaussian_weights=True, sigma=1.5, use_sample_covariance=False) for i in range(3)])
    assert ssim(a, b) == pytest.approx(ref, abs=1e-6)


def test_codebook_usage():
    u = codebook_usage(torch.tensor([0, 1, 2, 3] * 5), 8)
    assert u["codes_used"] == 4 and u["codes_used_pct"] == 50.0
    assert u["perplexity"] == pytest.approx(4.0)
    assert codebook_usage(torch.zeros(10, dtype=torch.long), 8)["perplexity"] == pytest.approx(1.0)
    counts = torch.tensor([5, 0, 5, 0])
    assert codebook_usage(counts, 4, counts=True)["perplexity"] == pytest.approx(2.0)


def test_griffin_lim_inverts_a_power_spectrogram():
    t = torch.arange(16000) / 16000
    wave = 0.5 * torch.sin(2 * math.pi * 440 * t) * (1 + 0.5 * torch.sin(2 * math.pi * 3 * t))
    p = power_spectrogram(wave)
    y = griffin_lim(p, n_iter=32)
    assert y.shape == (16000,) and torch.isfinite(y).all()
    assert torch.equal(y, griffin_lim(p, n_iter=32)), "seeded: deterministic"
    assert log_spectral_distance(p[2:-2], power_spectrogram(y)[2:-2]) < 6.0
    assert resample(wave, 16000, 8000).shape == (8000,)


def test_plots_write_pngs(tmp_path):
    p = torch.rand(50, 65) + 1e-3
    out = plots.plot_spectrograms(tmp_path / "s.png", p, p * 2, frames_per_second=50, sample_rate=16000,
                                  title="x", lsd_db=3.0)
    frames = torch.rand(10, 3, 16, 16) - 0.5
    grid = plots.plot_frame_grid(tmp_path / "f.png", frames, frames, max_frames=4)
    hist = plots.plot_codebook_usage(tmp_path / "h.png", torch.tensor([5, 0, 3, 1]),
                                     stats=codebook_usage(torch.tensor([5, 0, 3, 1]), 4, counts=True))
    curves = plots.plot_training_curves(tmp_path / "c.png", [
        {"step": 1, "split": "train", "recon_loss": 1.0, "perplexity": 3.0},
        {"step": 2, "split": "val", "recon_loss": 0.5}])
    for f in (out, grid, hist, curves):
        assert f.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

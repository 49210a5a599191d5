"""The audio front end: every use of torchaudio in vqmae lives here.

* :func:`power_spectrogram`: waveform (S,) -> power STFT frames (S // hop, n_fft // 2 + 1),
  Hann window, centred with zero padding (the reference's settings: n_fft 1024, hop 320 at
  16 kHz -> 50 frames/s, 513 bins). Exactly ``S // hop`` frames are returned, so a clip of T
  video frames (T × 640 samples) gives 2T audio frames.
* :func:`griffin_lim`: power frames -> waveform (torchaudio ``GriffinLim``), for listening to
  reconstructions.
* :func:`resample`: torchaudio's band-limited resampling.
"""

from __future__ import annotations

import functools

import numpy as np
import torch


def _as_tensor(wave: torch.Tensor | np.ndarray) -> torch.Tensor:
    t = torch.as_tensor(wave)
    if not torch.is_floating_point(t):
        raise TypeError(f"expected a float waveform, got dtype {t.dtype}")
    return t.float()


@functools.lru_cache(maxsize=8)
def _spectrogram_transform(n_fft: int, win_length: int, hop_length: int):
    import torchaudio

    return torchaudio.transforms.Spectrogram(
        n_fft=n_fft, win_length=win_length, hop_length=hop_length, power=2.0, center=True,
        pad_mode="constant", window_fn=torch.hann_window, normalized=False,
    )


def power_spectrogram(wave: torch.Tensor | np.ndarray, n_fft: int = 1024, hop_length: int = 320,
                      win_length: int | None = None) -> torch.Tensor:
    """Waveform (S,) or (B, S) float -> power spectrogram (S // hop, F) or (B, S // hop, F).

    ``F = n_fft // 2 + 1``; |X|² of a Hann-windowed, centred, zero-padded STFT; float32, CPU or
    the input's device.
    """
    x = _as_tensor(wave)
    if x.ndim not in (1, 2):
        raise ValueError(f"expected a waveform (S,) or (B, S), got shape {tuple(x.shape)}")
    win_length = win_length or n_fft
    frames = x.shape[-1] // hop_length
    if frames == 0:
        return x.new_zeros((*x.shape[:-1], 0, n_fft // 2 + 1))
    spec = _spectrogram_transform(n_fft, win_length, hop_length).to(x.device)(x)  # (..., F, S//hop + 1)
    return spec[..., :frames].transpose(-1, -2).contiguous()


def griffin_lim(power: torch.Tensor | np.ndarray, n_fft: int = 1024, hop_length: int = 320,
                win_length: int | None = None, n_iter: int = 64, seed: int = 0) -> torch.Tensor:
    """Power frames (T, F) -> waveform (T × hop,) float32 by Griffin-Lim phase reconstruction.

    Deterministic for a given ``seed`` (torchaudio starts from random phases).
    """
    import torchaudio

    p = torch.as_tensor(power).float()
    if p.ndim != 2 or p.shape[1] != n_fft // 2 + 1:
        raise ValueError(f"expected power frames (T, {n_fft // 2 + 1}), got {tuple(p.shape)}")
    win_length = win_length or n_fft
    transform = torchaudio.transforms.GriffinLim(
        n_fft=n_fft, n_iter=n_iter, win_length=win_length, hop_length=hop_length,
        window_fn=torch.hann_window, power=2.0, rand_init=True,
    )
    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        wave = transform(p.clamp_min(0).transpose(0, 1).contiguous())
    finally:
        torch.random.set_rng_state(state)
    n = p.shape[0] * hop_length
    if wave.shape[-1] < n:
        wave = torch.nn.functional.pad(wave, (0, n - wave.shape[-1]))
    return wave[:n]


def resample(wave: torch.Tensor | np.ndarray, orig_freq: int, new_freq: int) -> torch.Tensor:
    """Band-limited resampling (torchaudio.functional.resample) of (..., S) float waveforms."""
    import torchaudio

    x = _as_tensor(wave)
    if orig_freq == new_freq:
        return x
    return torchaudio.functional.resample(x, orig_freq, new_freq)

"""Audio front end and the audio-only pretext targets, both computed with torchaudio.

* :class:`LogMel` — ``(B, S)`` waveform at 16 kHz -> ``(B, n_mels, 4T + 1)`` log-mel frames
  (25 ms window, 10 ms hop, so 4 hops per 40 ms video frame).
* :func:`pase_targets` — ``(B, S)`` -> ``(B, T, n_mfcc + 5)``: per video frame, the mean over
  its four 10 ms hops of MFCCs, log-energy, spectral centroid (fraction of Nyquist) and log
  spectral flatness, plus a voicing degree and a log-f0 from the normalised autocorrelation of
  an 80 ms window centred on the frame.

Why these targets (PASE, Pascual et al. 2019; Ravanelli et al. 2020 "PASE+"): they are cheap,
deterministic, computed from the clip itself, and each names a property that speech tasks use —
spectral envelope / phonetic content (MFCCs), loudness (log-energy; arousal), intonation
(voicing, f0; arousal and valence) and brightness / noisiness (centroid, flatness; fricatives,
vocal effort). Regressing them forces the encoder to keep all of these in every frame, unlike a
masked-frame reconstruction, whose easiest solution is to interpolate neighbouring frames. The
voicing/pitch proxy (the highest normalised autocorrelation peak between ``fmin`` and ``fmax``,
and the shortest lag whose peak reaches 90 % of it) is a crude pitch tracker, but it is differentiable-free, batched and has no
dependency beyond torch; f0 is set to 0 where the voicing degree is under 0.45.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
import torchaudio
from torch import nn

VOICING_THRESHOLD = 0.45
LOG_FLOOR = 1e-6


class LogMel(nn.Module):
    """``(B, S)`` -> ``(B, n_mels, S // hop + 1)`` natural-log mel power (centred STFT)."""

    def __init__(self, sample_rate: int, n_fft: int, hop_length: int, n_mels: int):
        super().__init__()
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=sample_rate, n_fft=n_fft, hop_length=hop_length, n_mels=n_mels,
            center=True, power=2.0)
        # own storage for each buffer: torchaudio's window is a view into a larger one, which
        # safetensors (accelerate's checkpoints) refuses to save
        for mod in self.mel.modules():
            for name, buf in list(mod._buffers.items()):
                if buf is not None:
                    mod._buffers[name] = buf.detach().clone()

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=wave.device.type, enabled=False):
            return torch.log(self.mel(wave.float()) + LOG_FLOOR)


def _pool_hops(x: torch.Tensor, num_frames: int, hops: int) -> torch.Tensor:
    """``(B, C, L >= T * hops)`` -> ``(B, T, C)``: mean over the hops of each video frame."""
    b, c, _ = x.shape
    return x[:, :, : num_frames * hops].reshape(b, c, num_frames, hops).mean(-1).transpose(1, 2)


def voicing_and_pitch(wave: torch.Tensor, num_frames: int, samples_per_frame: int, sample_rate: int,
                      fmin: float = 60.0, fmax: float = 400.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Voicing degree in [0, 1] and log2(f0 / 100 Hz) (0 when unvoiced), both ``(B, T)``.

    Each video frame's window is the 2 × ``samples_per_frame`` samples centred on it (Hann);
    the normalised autocorrelation's highest peak between lags ``sr / fmax`` and ``sr / fmin``
    gives the voicing degree and the period."""
    win = 2 * samples_per_frame
    pad = samples_per_frame // 2
    x = F.pad(wave, (pad, win))
    frames = x.unfold(-1, win, samples_per_frame)[:, :num_frames]  # (B, T, win)
    frames = frames - frames.mean(-1, keepdim=True)
    frames = frames * torch.hann_window(win, device=wave.device, dtype=wave.dtype)
    n = 2 * win
    spec = torch.fft.rfft(frames, n=n)
    ac = torch.fft.irfft(spec.real ** 2 + spec.imag ** 2, n=n)[..., :win]
    # unbias for the shrinking overlap of the window with itself
    w = torch.hann_window(win, device=wave.device, dtype=wave.dtype)
    wspec = torch.fft.rfft(w, n=n)
    wac = torch.fft.irfft(wspec.real ** 2 + wspec.imag ** 2, n=n)[:win]
    ac = ac / (ac[..., :1] + 1e-8) / (wac / wac[0]).clamp_min(0.1)
    lo = max(1, int(math.floor(sample_rate / fmax)))
    hi = min(win - 1, int(math.ceil(sample_rate / fmin)))
    band = ac[..., lo - 1:hi + 2]
    inner = band[..., 1:-1]
    peak = inner.max(-1).values
    # the shortest lag whose local maximum reaches 90 % of the highest peak (avoids octave errors)
    is_peak = (inner >= band[..., :-2]) & (inner >= band[..., 2:]) & (inner >= 0.9 * peak[..., None])
    lag = is_peak.to(torch.uint8).argmax(-1)
    voicing = peak.clamp(0.0, 1.0)
    f0 = sample_rate / (lag + lo).to(wave.dtype)
    log_f0 = torch.log2(f0 / 100.0) * (voicing > VOICING_THRESHOLD).to(wave.dtype)
    return voicing, log_f0


class PaseTargets(nn.Module):
    """``(B, S)`` waveform -> ``(B, T, n_mfcc + 5)`` targets, ``T = S // samples_per_frame``.

    Columns: ``n_mfcc`` MFCCs, log-energy, voicing, log2(f0/100), spectral centroid / Nyquist,
    log spectral flatness (see the module docstring)."""

    def __init__(self, sample_rate: int = 16000, fps: float = 25.0, n_fft: int = 400,
                 hop_length: int = 160, n_mels: int = 40, n_mfcc: int = 13,
                 fmin_pitch: float = 60.0, fmax_pitch: float = 400.0):
        super().__init__()
        self.sample_rate, self.hop_length, self.n_fft = sample_rate, hop_length, n_fft
        self.samples_per_frame = int(round(sample_rate / fps))
        self.hops = self.samples_per_frame // hop_length
        self.fmin, self.fmax = fmin_pitch, fmax_pitch
        self.n_mfcc = n_mfcc
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        fb = torchaudio.functional.melscale_fbanks(n_fft // 2 + 1, 0.0, sample_rate / 2, n_mels, sample_rate)
        self.register_buffer("fbank", fb, persistent=False)  # (F, n_mels)
        self.register_buffer("dct", torchaudio.functional.create_dct(n_mfcc, n_mels, "ortho"),
                             persistent=False)  # (n_mels, n_mfcc)
        freqs = torch.linspace(0, 1, n_fft // 2 + 1)
        self.register_buffer("freqs", freqs, persistent=False)

    @property
    def num_targets(self) -> int:
        return self.n_mfcc + 5

    NAMES_TAIL = ("log_energy", "voicing", "log_f0", "centroid", "log_flatness")

    def names(self) -> list[str]:
        return [f"mfcc{i}" for i in range(self.n_mfcc)] + list(self.NAMES_TAIL)

    @torch.no_grad()
    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=wave.device.type, enabled=False):
            wave = wave.float()
            t = wave.shape[-1] // self.samples_per_frame
            spec = torch.stft(wave, self.n_fft, self.hop_length, window=self.window, center=True,
                              return_complex=True)
            power = spec.real ** 2 + spec.imag ** 2  # (B, F, L)
            mel = torch.einsum("bfl,fm->bml", power, self.fbank)
            logmel = torch.log(mel + LOG_FLOOR)
            mfcc = torch.einsum("bml,mk->bkl", logmel, self.dct)
            energy = torch.log(power.sum(1, keepdim=True) + LOG_FLOOR)
            total = power.sum(1, keepdim=True) + 1e-10
            centroid = (power * self.freqs[None, :, None]).sum(1, keepdim=True) / total
            flat = (torch.log(power + 1e-10).mean(1, keepdim=True) - torch.log(total / power.shape[1]))
            per_hop = torch.cat([mfcc, energy, centroid, flat], dim=1)
            pooled = _pool_hops(per_hop, t, self.hops)  # (B, T, n_mfcc + 3)
            voicing, log_f0 = voicing_and_pitch(wave, t, self.samples_per_frame, self.sample_rate,
                                                self.fmin, self.fmax)
            k = self.n_mfcc
            return torch.cat([pooled[..., : k + 1], voicing[..., None], log_f0[..., None],
                              pooled[..., k + 1:]], dim=-1)

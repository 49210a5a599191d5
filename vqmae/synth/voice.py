"""The voice: source-filter speech synthesis from the articulation tracks, a speaker and an
emotional state, then the recording chain (room reverberation, background noise at a random SNR,
recording gain).

Voiced sound is a sum of harmonics of F0 whose amplitudes follow the glottal spectral tilt and the
formant resonances (computed at 16 kHz, then resampled to the output rate). Frication, release
bursts, aspiration and breathiness are white noise shaped in the STFT domain at the output rate
(so the file has energy above 8 kHz and the reader's resampling does real work).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vqmae.synth.articulation import CONTROL_RATE, Articulation
from vqmae.synth.dsp import convolve, resample, smooth
from vqmae.synth.emotion import VoiceEmotion
from vqmae.synth.speakers import Speaker
from vqmae.synth.vocabulary import VOWELS, Timeline

VOICED_RATE = 16000
"""Rate at which the harmonic (voiced) part is synthesised before resampling."""
_BANDWIDTHS = np.array([80.0, 100.0, 140.0, 200.0])
_N_FFT, _HOP = 512, 128


@dataclass
class Recording:
    """How a clip was recorded (drawn per clip)."""

    snr_db: float
    """Speech-to-background-noise ratio over active speech, dB (inf = no noise)."""
    noise_kind: str
    """"pink", "brown", "hum" or "none"."""
    rt60: float
    """Reverberation time, seconds (0 = dry)."""
    wet: float
    """Reverberant-to-direct mix."""
    gain_db: float
    """Recording level offset, dB."""

    @classmethod
    def draw(cls, rng: np.random.Generator) -> Recording:
        snr = float(rng.uniform(3.0, 12.0) if rng.random() < 0.15 else rng.uniform(12.0, 40.0))
        kind = str(rng.choice(["pink", "brown", "hum"], p=[0.5, 0.3, 0.2]))
        reverb = rng.random() < 0.6
        return cls(snr_db=snr, noise_kind=kind,
                   rt60=float(rng.uniform(0.15, 0.5)) if reverb else 0.0,
                   wet=float(rng.uniform(0.05, 0.35)) if reverb else 0.0,
                   gain_db=float(rng.normal(0.0, 2.0)))

    @classmethod
    def clean(cls) -> Recording:
        return cls(snr_db=float("inf"), noise_kind="none", rt60=0.0, wet=0.0, gain_db=0.0)


@dataclass
class Voice:
    """A synthesised utterance.

    ``audio`` float32 (S,) the recorded signal in [-1, 1]; ``speech`` float32 (S,) the dry speech
    before reverberation and noise (same gain); ``f0`` (n,) and ``voicing`` (n,) control tracks at
    :data:`CONTROL_RATE` (F0 in Hz, defined everywhere; voicing amplitude, 0 in unvoiced parts).
    """

    audio: np.ndarray
    speech: np.ndarray
    f0: np.ndarray
    voicing: np.ndarray
    sample_rate: int
    recording: Recording


def f0_contour(tl: Timeline, art: Articulation, spk: Speaker, emo: VoiceEmotion,
               rng: np.random.Generator) -> np.ndarray:
    """F0 in Hz at control rate (n,): speaker base × emotion shift, declination, pitch accents on
    stressed syllables, a final rise/fall, tremor, slow drift and jitter."""
    n = art.n
    t = np.arange(n) / CONTROL_RATE
    rng_st = spk.f0_range * emo.f0_range
    span = max(tl.speech_end - tl.speech_start, 1e-3)
    pos = np.clip((t - tl.speech_start) / span, 0.0, 1.0)
    st = emo.f0_shift + rng_st * (0.35 - 0.8 * pos)  # declination
    for seg in tl.segments:
        if seg.stressed and seg.phone in VOWELS:
            c = seg.start + 0.55 * seg.duration
            st += rng_st * rng.uniform(0.55, 1.0) * np.exp(-0.5 * ((t - c) / (0.7 * seg.duration + 0.02)) ** 2)
    if tl.word_spans:
        w0, w1 = tl.word_spans[-1]
        ramp = np.clip((t - w0) / max(w1 - w0, 1e-3), 0.0, 1.0)
        st += emo.final_rise * ramp * ramp * (3 - 2 * ramp)
    if emo.tremor > 0:
        st += emo.tremor * np.sin(2 * np.pi * rng.uniform(5.0, 7.0) * t + rng.uniform(0, 2 * np.pi))
    drift = smooth(rng.normal(0.0, 1.0, n), 40.0)
    st += 0.3 * drift / (drift.std() + 1e-9)  # slow drift (0.3 st)
    jitter = rng.normal(0.0, spk.jitter * emo.jitter, n)
    return spk.f0 * 2.0 ** (st / 12.0) * (1.0 + jitter)


def _resonance(f: np.ndarray, fc: np.ndarray, bw: np.ndarray) -> np.ndarray:
    """Magnitude of a 2-pole resonator at frequencies ``f`` (unit gain at 0 Hz)."""
    h = bw / 2.0
    return (fc**2 + h**2) / np.sqrt(((f - fc) ** 2 + h**2) * ((f + fc) ** 2 + h**2))


def _tract(f: np.ndarray, formants: np.ndarray, bw: np.ndarray) -> np.ndarray:
    """Vocal-tract gain at ``f`` (..., F) for formants (..., 4)."""
    g = np.ones_like(f)
    for j in range(formants.shape[-1]):
        g = g * _resonance(f, formants[..., j:j + 1], bw[j])
    return g


def harmonic_amplitudes(f0: np.ndarray, formants: np.ndarray, tilt_db: np.ndarray,
                        bw: np.ndarray, fmax: float = 7600.0) -> np.ndarray:
    """Amplitudes (n, K) of harmonics 1..K, each row normalised to unit RMS, faded out near fmax."""
    k_max = int(min(fmax / max(f0.min(), 40.0), 150))
    k = np.arange(1, k_max + 1, dtype=float)[None, :]
    freqs = f0[:, None] * k
    src = k ** (tilt_db[:, None] / 6.0206)
    amp = src * _tract(freqs, formants, bw)
    amp *= np.clip((fmax - freqs) / 600.0, 0.0, 1.0)
    amp /= np.sqrt(0.5 * np.sum(amp**2, axis=1, keepdims=True)) + 1e-12
    return amp


def _harmonic_sum(f0_c: np.ndarray, amp_c: np.ndarray, n_samples: int, rate: int,
                  phase0: float, chunk: int = 4096) -> np.ndarray:
    """Sum of harmonics (S,) at ``rate``: control-rate F0 (n,) and amplitudes (n, K) are
    interpolated linearly per sample; the phase integrates F0."""
    pos = np.arange(n_samples) * (CONTROL_RATE / rate)
    f0_s = np.interp(pos, np.arange(len(f0_c)), f0_c)
    phase = phase0 + 2 * np.pi * np.cumsum(f0_s) / rate
    i0 = np.minimum(pos.astype(np.int64), len(f0_c) - 2)
    w = (pos - i0).astype(np.float32)
    k = np.arange(1, amp_c.shape[1] + 1, dtype=np.float32)
    amp_c = amp_c.astype(np.float32)
    out = np.empty(n_samples, dtype=np.float32)
    for s in range(0, n_samples, chunk):
        e = min(s + chunk, n_samples)
        a = amp_c[i0[s:e]] * (1 - w[s:e, None]) + amp_c[i0[s:e] + 1] * w[s:e, None]
        ph = np.mod(phase[s:e], 2 * np.pi).astype(np.float32)
        out[s:e] = np.einsum("sk,sk->s", a, np.sin(ph[:, None] * k))
    return out


def _stft(x: np.ndarray) -> np.ndarray:
    win = np.hanning(_N_FFT + 1)[:-1]
    xp = np.pad(x, (_N_FFT // 2, _N_FFT))
    m = 1 + len(x) // _HOP
    frames = np.lib.stride_tricks.sliding_window_view(xp, _N_FFT)[::_HOP][:m]
    return np.fft.rfft(frames * win, axis=1)


def _istft(spec: np.ndarray, length: int) -> np.ndarray:
    """Overlap-add inverse of :func:`_stft` (Hann analysis and synthesis, hop = n_fft / 4)."""
    win = np.hanning(_N_FFT + 1)[:-1]
    frames = np.fft.irfft(spec, n=_N_FFT, axis=1) * win
    m = len(frames)
    q = _N_FFT // _HOP
    blocks = frames.reshape(m, q, _HOP)
    out = np.zeros((m + q, _HOP))
    for j in range(q):
        out[j:j + m] += blocks[:, j]
    y = out.reshape(-1) / 1.5  # sum of squared Hann windows at 75 % overlap
    return y[_N_FFT // 2:_N_FFT // 2 + length]


def _unit_rms(shape: np.ndarray) -> np.ndarray:
    return shape / (np.sqrt(np.mean(shape**2, axis=-1, keepdims=True)) + 1e-12)


def _shaped_noise(art: Articulation, formants: np.ndarray, bw: np.ndarray, breath: np.ndarray,
                  n_samples: int, rate: int, rng: np.random.Generator) -> np.ndarray:
    """Frication + bursts + aspiration + breathiness (S,): white noise shaped per STFT frame."""
    spec = _stft(rng.standard_normal(n_samples))
    m = spec.shape[0]
    pos = np.arange(m) * _HOP / rate * CONTROL_RATE
    grid = np.arange(art.n)

    def at(track: np.ndarray) -> np.ndarray:
        return np.interp(pos, grid, track)

    f = np.fft.rfftfreq(_N_FFT, 1.0 / rate)[None, :]
    fc = np.maximum(at(art.noise_fc), 1.0)[:, None]
    nbw = at(art.noise_bw)[:, None]
    fric = _unit_rms(np.exp(-0.5 * ((f - fc) / nbw) ** 2) + 1e-3) * at(art.noise)[:, None]
    fm = np.stack([at(formants[:, j]) for j in range(4)], axis=1)
    hp = 1.0 / (1.0 + (900.0 / np.maximum(f, 1.0)) ** 4)
    asp_shape = _unit_rms(_tract(np.broadcast_to(f, (m, f.shape[1])), fm, bw * 1.5) * hp + 1e-3)
    asp = asp_shape * (at(art.aspiration) + at(breath))[:, None]
    return _istft(spec * (fric + asp), n_samples).astype(np.float32)


def _background(kind: str, n_samples: int, rate: int, rng: np.random.Generator) -> np.ndarray:
    """Unit-RMS stationary background noise (S,)."""
    white = rng.standard_normal(n_samples)
    spec = np.fft.rfft(white)
    f = np.maximum(np.fft.rfftfreq(n_samples, 1.0 / rate), 20.0)
    if kind == "brown":
        x = np.fft.irfft(spec / f, n_samples)
    else:  # pink below 2 kHz, falling faster above (room noise is mostly low-frequency)
        x = np.fft.irfft(spec / np.sqrt(f * (1 + (f / 2000.0) ** 2)), n_samples)
    if kind == "hum":
        t = np.arange(n_samples) / rate
        base = float(rng.choice([50.0, 60.0]))
        x = x / (np.std(x) + 1e-12) * 0.5
        for h, a in ((1, 1.0), (2, 0.5), (3, 0.7), (5, 0.3)):
            x = x + a * np.sin(2 * np.pi * base * h * t + rng.uniform(0, 2 * np.pi))
    return (x / (np.std(x) + 1e-12)).astype(np.float32)


def _reverb(x: np.ndarray, rt60: float, wet: float, rate: int, rng: np.random.Generator) -> np.ndarray:
    n = int(rt60 * rate)
    t = np.arange(n) / rate
    ir = rng.standard_normal(n) * np.exp(-6.9 * t / rt60)
    ir[: int(0.004 * rate)] = 0.0  # pre-delay
    ir /= np.sqrt(np.sum(ir**2)) + 1e-12
    return x + wet * convolve(x, ir)[: len(x)].astype(np.float32)


def active_rms(x: np.ndarray, rate: int) -> float:
    """RMS over the active part (10 ms frames within 30 dB of the loudest)."""
    hop = max(rate // 100, 1)
    n = len(x) // hop
    e = np.mean(x[: n * hop].reshape(n, hop).astype(np.float64) ** 2, axis=1)
    if e.max() <= 0:
        return 0.0
    keep = e > e.max() * 1e-3
    return float(np.sqrt(e[keep].mean()))


def synthesize_voice(tl: Timeline, art: Articulation, spk: Speaker, emo: VoiceEmotion,
                     rng: np.random.Generator, *, sample_rate: int,
                     recording: Recording | None = None) -> Voice:
    """Speech for the timeline, ``round(tl.duration * sample_rate)`` samples at ``sample_rate``.

    ``recording=None`` draws the recording conditions from ``rng``; pass
    :meth:`Recording.clean` for dry, noiseless speech.
    """
    rec = recording if recording is not None else Recording.draw(rng)
    n_samples = int(round(tl.duration * sample_rate))
    f0 = f0_contour(tl, art, spk, emo, rng)
    formants = art.formants * spk.vtl
    breath = spk.breath * emo.breath
    bw = _BANDWIDTHS * (1.0 + 2.0 * breath)
    # loudness: stress, a slow energy declination, shimmer
    span = max(tl.speech_end - tl.speech_start, 1e-3)
    t = np.arange(art.n) / CONTROL_RATE
    decl = 10 ** (-3.0 * np.clip((t - tl.speech_start) / span, 0, 1) / 20)
    shimmer = 1.0 + smooth(rng.normal(0, 1, art.n), 0.8) * spk.shimmer * emo.jitter * 1.5
    voicing = art.voice * decl * np.clip(shimmer, 0.5, 1.5)
    tilt = spk.tilt + emo.tilt_db + 1.5 * art.stress
    amp = harmonic_amplitudes(f0, formants, tilt, bw) * voicing[:, None]
    n16 = int(round(tl.duration * VOICED_RATE))
    voiced = _harmonic_sum(f0, amp, n16, VOICED_RATE, float(rng.uniform(0, 2 * np.pi)))
    voiced = resample(voiced, n_samples)
    noise = _shaped_noise(art, formants, bw, breath * voicing, n_samples, sample_rate, rng)
    gain = 10 ** (emo.energy_db / 20)
    speech = ((voiced + noise) * gain).astype(np.float32)
    x = speech.copy()
    if rec.rt60 > 0 and rec.wet > 0:
        x = _reverb(x, rec.rt60, rec.wet, sample_rate, rng)
    if np.isfinite(rec.snr_db) and rec.noise_kind != "none":
        level = active_rms(speech, sample_rate) / 10 ** (rec.snr_db / 20)
        x = x + level * _background(rec.noise_kind, n_samples, sample_rate, rng)
    # recording level: neutral speech at about -24 dBFS, emotion energy kept, clipping avoided
    ref = active_rms(speech, sample_rate) / gain
    scale = 10 ** ((-24.0 + rec.gain_db) / 20) / max(ref, 1e-9)
    peak = float(np.max(np.abs(x))) * scale
    if peak > 0.95:
        scale *= 0.95 / peak
    return Voice(audio=(x * scale).astype(np.float32), speech=(speech * scale).astype(np.float32),
                 f0=f0, voicing=voicing, sample_rate=sample_rate, recording=rec)

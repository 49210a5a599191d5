"""Simple measurements of audio and face video: F0, loudness, per-clip feature vectors.

Used to check the corpus (tests) and to measure how hard it is (benchmarks/bench_synth.py:
logistic regression on these features, speaker-independent). Plain numpy/scipy/OpenCV; no
knowledge of the generator's internals, so they work on decoded files as well as on arrays.
"""

from __future__ import annotations

from fractions import Fraction
from functools import lru_cache

import cv2
import numpy as np
from scipy.signal import resample_poly

ANALYSIS_RATE = 16000


def to_rate(x: np.ndarray, sr: int, rate: int = ANALYSIS_RATE) -> np.ndarray:
    """Resample mono ``x`` (S,) from ``sr`` to ``rate`` (polyphase)."""
    if sr == rate:
        return np.asarray(x, dtype=np.float64)
    r = Fraction(rate, sr)
    return resample_poly(np.asarray(x, dtype=np.float64), r.numerator, r.denominator)


def frame_rms(x: np.ndarray, hop: int) -> np.ndarray:
    """RMS of consecutive non-overlapping frames of ``hop`` samples (len(x) // hop,)."""
    n = len(x) // hop
    return np.sqrt(np.mean(np.asarray(x[: n * hop], dtype=np.float64).reshape(n, hop) ** 2, axis=1))


def _frames(x: np.ndarray, win: int, hop: int) -> np.ndarray:
    x = np.pad(x, (win // 2, win))
    n = 1 + (len(x) - 2 * win + win // 2) // hop
    return np.lib.stride_tricks.sliding_window_view(x, win)[::hop][:max(n, 1)]


def estimate_f0(x: np.ndarray, sr: int, *, fmin: float = 70.0, fmax: float = 500.0,
                hop_s: float = 0.01, win_s: float = 0.04, threshold: float = 0.5) -> np.ndarray:
    """F0 per 10 ms frame (n,) in Hz by normalised autocorrelation; NaN where unvoiced/silent."""
    y = to_rate(x, sr)
    win, hop = int(win_s * ANALYSIS_RATE), int(hop_s * ANALYSIS_RATE)
    fr = _frames(y, win, hop)
    fr = fr - fr.mean(axis=1, keepdims=True)
    w = np.hanning(win)
    spec = np.fft.rfft(fr * w, n=2 * win, axis=1)
    ac = np.fft.irfft(np.abs(spec) ** 2, axis=1)[:, :win]
    wac = np.fft.irfft(np.abs(np.fft.rfft(w, n=2 * win)) ** 2)[:win]
    ac = ac / np.maximum(ac[:, :1], 1e-12) / np.maximum(wac / wac[0], 1e-3)
    lo, hi = int(ANALYSIS_RATE / fmax), int(ANALYSIS_RATE / fmin)
    seg = ac[:, lo:hi]
    best = seg.max(axis=1)
    # the shortest lag whose local maximum comes close to the best one (avoids octave errors)
    local = np.zeros_like(seg, dtype=bool)
    local[:, 1:-1] = (seg[:, 1:-1] >= seg[:, :-2]) & (seg[:, 1:-1] >= seg[:, 2:])
    cand = local & (seg >= 0.9 * best[:, None])
    k = np.where(cand.any(axis=1), np.argmax(cand, axis=1), np.argmax(seg, axis=1))
    peak = seg[np.arange(len(seg)), k]
    # parabolic interpolation of the peak
    km = np.clip(k, 1, seg.shape[1] - 2)
    a, b, c = (seg[np.arange(len(seg)), km + d] for d in (-1, 0, 1))
    den = a - 2 * b + c
    shift = np.where(np.abs(den) > 1e-12, 0.5 * (a - c) / np.where(den == 0, 1, den), 0.0)
    lag = lo + km + np.clip(shift, -1, 1)
    energy = np.mean(fr**2, axis=1)
    voiced = (peak > threshold) & (energy > energy.max() * 10 ** (-30 / 10))
    return np.where(voiced, ANALYSIS_RATE / lag, np.nan)


def _mel_fb(n_fft: int, n_mels: int, rate: int, fmax: float) -> np.ndarray:
    def hz2mel(f):
        return 2595 * np.log10(1 + f / 700)

    mels = np.linspace(hz2mel(60.0), hz2mel(fmax), n_mels + 2)
    hz = 700 * (10 ** (mels / 2595) - 1)
    bins = np.fft.rfftfreq(n_fft, 1 / rate)
    fb = np.zeros((n_mels, len(bins)))
    for i in range(n_mels):
        lo, c, hi = hz[i], hz[i + 1], hz[i + 2]
        fb[i] = np.clip(np.minimum((bins - lo) / (c - lo), (hi - bins) / (hi - c)), 0, None)
    return fb


_FB = _mel_fb(512, 24, ANALYSIS_RATE, 7600.0)


def audio_features(x: np.ndarray, sr: int) -> np.ndarray:
    """A per-clip prosodic + spectral feature vector (67,) of mono audio ``x`` at ``sr``.

    F0 level / spread / range / movement / final slope / voiced fraction, energy level / spread /
    range (active frames), syllable rate, and over voiced frames spectral centroid, tilt,
    high-band ratio, 24 log-mel means and stds.
    """
    y = to_rate(x, sr)
    y = y / (np.max(np.abs(y)) + 1e-9)
    fr = _frames(y, 400, 160)
    spec = np.abs(np.fft.rfft(fr * np.hanning(400), n=512, axis=1)) ** 2
    e_db = 10 * np.log10(spec.sum(axis=1) + 1e-10)
    active = e_db > max(e_db.max() - 35, np.percentile(e_db, 30))
    ea = e_db[active]
    f0 = estimate_f0(y, ANALYSIS_RATE)
    n = min(len(f0), len(e_db))
    voiced = np.zeros(len(e_db), dtype=bool)
    voiced[:n] = ~np.isnan(f0[:n]) & active[:n]
    if voiced.sum() < 3:
        voiced = active.copy()
    st = 12 * np.log2(f0[~np.isnan(f0)] / 100.0) if np.any(~np.isnan(f0)) else np.zeros(1)
    dst = np.abs(np.diff(12 * np.log2(f0 / 100.0)))
    dst = dst[~np.isnan(dst)]
    tail = st[-max(len(st) // 4, 2):]
    slope = np.polyfit(np.arange(len(tail)), tail, 1)[0] if len(tail) >= 2 else 0.0
    # syllable rate: peaks of the smoothed energy envelope
    env = np.convolve(e_db, np.ones(5) / 5, mode="same")
    peaks = (env[1:-1] > env[:-2]) & (env[1:-1] >= env[2:]) & (env[1:-1] > e_db.max() - 20)
    dur_active = active.sum() * 0.01
    freqs = np.fft.rfftfreq(512, 1 / ANALYSIS_RATE)
    sa = spec[voiced]
    cent = (sa * freqs).sum(axis=1) / (sa.sum(axis=1) + 1e-12)
    band = (freqs > 300) & (freqs < 5000)
    lf = np.log(freqs[band])
    tilt = np.polyfit(lf, np.log(sa[:, band].mean(axis=0) + 1e-12).T, 1)[0]
    high = sa[:, freqs > 1000].sum(axis=1) / (sa.sum(axis=1) + 1e-12)
    mel = np.log(sa @ _FB.T + 1e-10)
    return np.concatenate([
        [np.median(st), np.std(st), np.percentile(st, 90) - np.percentile(st, 10),
         np.mean(dst) if len(dst) else 0.0, slope, voiced.sum() / max(active.sum(), 1)],
        [ea.mean(), ea.std(), np.percentile(ea, 95) - np.percentile(ea, 5)],
        [peaks.sum() / max(dur_active, 0.1), dur_active],
        [cent.mean(), cent.std(), tilt, high.mean()],
        mel.mean(axis=0), mel.std(axis=0),
    ]).astype(np.float64)


_HOG_SIZE = 128


@lru_cache(maxsize=4)
def _hog(cell: int) -> cv2.HOGDescriptor:
    return cv2.HOGDescriptor((_HOG_SIZE, _HOG_SIZE), (2 * cell, 2 * cell), (cell, cell), (cell, cell), 9)


def visual_features(frames: np.ndarray, cell: int = 16, step: int = 2) -> np.ndarray:
    """A per-clip face-shape + motion feature vector of frames (T, H, W, 3) uint8 RGB: mean and
    temporal standard deviation of HOG descriptors (grey image at 128 x 128, ``cell``-pixel cells,
    9 orientations, 2 x 2-cell blocks; every ``step``-th frame). 3528 values for cell 16."""
    hog = _hog(cell)
    h = []
    for f in frames[::step]:
        g = cv2.cvtColor(f, cv2.COLOR_RGB2GRAY)
        if g.shape != (_HOG_SIZE, _HOG_SIZE):
            g = cv2.resize(g, (_HOG_SIZE, _HOG_SIZE), interpolation=cv2.INTER_AREA)
        h.append(hog.compute(g).ravel())
    hs = np.stack(h).astype(np.float64)
    return np.concatenate([hs.mean(axis=0), hs.std(axis=0)])


def color_pixels(frames: np.ndarray, color: tuple[int, int, int], *, tol: float = 45.0,
                 rows: tuple[float, float] = (0.5, 1.0)) -> np.ndarray:
    """Per frame (T,): number of pixels within ``tol`` (sum of absolute RGB differences) of
    ``color`` in the band of rows ``rows`` (fractions of the height). With the colour of the inside
    of an open mouth and the lower half, a pixel-level measure of mouth opening; with the eye-white
    colour and the upper half, of eye opening."""
    h = frames.shape[1]
    band = frames[:, int(rows[0] * h):int(rows[1] * h)].astype(np.int16)
    d = np.abs(band - np.array(color, dtype=np.int16)).sum(axis=-1)
    return (d < tol).sum(axis=(1, 2))

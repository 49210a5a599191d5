"""Articulation: the phone timeline turned into smooth control tracks (200 per second) that drive
both the voice (formants, voicing, noise sources) and the mouth (opening, width, rounding, lip
closure). One source for both modalities keeps them in sync, as in real speech.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vqmae.synth.dsp import smooth
from vqmae.synth.vocabulary import PHONES, Timeline

CONTROL_RATE = 200.0
"""Control tracks per second (5 ms hop; 8 per video frame at 25 fps)."""

_REST_FORMANTS = (500.0, 1500.0, 2500.0, 3500.0)
_REST_MOUTH = (0.0, 0.45, 0.10)  # open, width, round: lips lightly together at rest


@dataclass
class Articulation:
    """Control tracks, all of length ``n`` (frame i at time i / CONTROL_RATE).

    Acoustic: ``formants`` (n, 4) Hz for a reference vocal tract; ``voice`` (n,) voicing amplitude
    (1 = open stressed vowel); ``noise`` (n,) frication/burst amplitude with band ``noise_fc``,
    ``noise_bw`` (n,) Hz; ``aspiration`` (n,) amplitude of noise shaped by the vocal tract.
    Visual: ``open``, ``width``, ``round`` (n,) targets in [0, 1] (the lips rest together in
    silence: open 0); ``closed`` (n,) bool, lips pressed together for a bilabial (p, b, m).
    """

    formants: np.ndarray
    voice: np.ndarray
    noise: np.ndarray
    noise_fc: np.ndarray
    noise_bw: np.ndarray
    aspiration: np.ndarray
    open: np.ndarray
    width: np.ndarray
    round: np.ndarray
    closed: np.ndarray
    stress: np.ndarray
    """(n,) 1 inside stressed vowels (for pitch accents, eyebrow flashes, nods), else 0."""

    @property
    def n(self) -> int:
        return len(self.voice)


def articulate(tl: Timeline) -> Articulation:
    """Control tracks of the timeline ``tl``."""
    n = int(round(tl.duration * CONTROL_RATE)) + 1
    formants = np.tile(np.array(_REST_FORMANTS), (n, 1))
    voice = np.zeros(n)
    noise = np.zeros(n)
    noise_fc = np.zeros(n)
    noise_bw = np.ones(n) * 1000.0
    aspiration = np.zeros(n)
    mouth = np.tile(np.array(_REST_MOUTH), (n, 1))
    closed = np.zeros(n, dtype=bool)
    stress = np.zeros(n)

    def idx(t: float) -> int:
        return int(np.clip(round(t * CONTROL_RATE), 0, n))

    for seg in tl.segments:
        ph = PHONES[seg.phone]
        i0, i1 = idx(seg.start), idx(seg.end)
        if i1 <= i0:
            i1 = min(i0 + 1, n)
        formants[i0:i1] = ph.formants
        mouth[i0:i1] = (ph.mouth_open, ph.mouth_width, ph.mouth_round)
        if ph.kind == "vowel":
            voice[i0:i1] = ph.intensity * (1.12 if seg.stressed else 0.95) * (0.9 if seg.final else 1.0)
            if seg.stressed:
                stress[i0:i1] = 1.0
        elif ph.kind in ("nasal", "approximant"):
            voice[i0:i1] = ph.intensity
            closed[i0:i1] = ph.lips_closed
        elif ph.kind == "fricative":
            voice[i0:i1] = ph.intensity
            noise[i0:i1] = ph.noise_level
            noise_fc[i0:i1], noise_bw[i0:i1] = ph.noise_band
        elif ph.kind == "aspirate":
            aspiration[i0:i1] = ph.noise_level
        elif ph.kind == "stop":
            rel = idx(seg.start + 0.65 * seg.duration)
            voice[i0:rel] = ph.intensity  # voice bar (voiced stops) or silence
            closed[i0:rel] = ph.lips_closed
            b1 = min(rel + 3, i1)  # ~15 ms burst
            noise[rel:b1] = ph.noise_level
            noise_fc[rel:b1], noise_bw[rel:b1] = ph.noise_band
            if not ph.voiced:  # aspiration until the vowel starts
                aspiration[b1:i1] = 0.5 * ph.noise_level * np.linspace(1.0, 0.3, max(i1 - b1, 0))
    # coarticulation: smooth targets (formants ~12 ms, amplitudes ~5 ms, lips ~25 ms)
    formants = smooth(formants, 2.4, axis=0)
    voice = smooth(voice, 1.0)
    noise = smooth(noise, 0.7)
    aspiration = smooth(aspiration, 1.0)
    mouth = smooth(mouth, 5.0, axis=0)
    # the lips close fully on bilabials, whatever the smoothing
    soft_closed = smooth(closed.astype(float), 1.5)
    mouth[:, 0] *= np.clip(1.0 - soft_closed, 0.0, 1.0)
    return Articulation(
        formants=formants, voice=voice, noise=noise, noise_fc=noise_fc, noise_bw=noise_bw,
        aspiration=aspiration, open=mouth[:, 0], width=mouth[:, 1], round=mouth[:, 2],
        closed=closed, stress=smooth(stress, 4.0),
    )

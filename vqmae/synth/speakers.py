"""Speakers: an identity in both modalities, drawn from (corpus seed, speaker id).

Voice: base F0 and pitch range, vocal-tract length (formant scaling), speaking rate, voice quality
(jitter, shimmer, breathiness, spectral tilt). Face: head shape, skin / hair / eye / lip colours,
hair style, eye spacing and size, brows, beard, glasses, resting expression, background.
Odd speaker numbers are male, even ones female (as in RAVDESS).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

import numpy as np


def stable_hash(text: str) -> int:
    """A 63-bit hash of ``text`` that is the same in every process and Python version."""
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "little") >> 1


def speaker_number(speaker_id: str) -> int:
    """``"spk07"`` -> 7."""
    m = re.fullmatch(r"spk(\d+)", speaker_id)
    if not m:
        raise ValueError(f"speaker id must look like 'spk07', got {speaker_id!r}")
    return int(m.group(1))


def speaker_id(number: int) -> str:
    return f"spk{number:02d}"


@dataclass(frozen=True)
class Speaker:
    id: str
    number: int
    gender: str
    # voice
    f0: float
    """Mean speaking F0, Hz."""
    f0_range: float
    """Pitch-accent range, semitones."""
    vtl: float
    """Formant scale (1 = reference male vocal tract; shorter tracts > 1)."""
    rate: float
    jitter: float
    """F0 perturbation, fraction (0.01 = 1 %)."""
    shimmer: float
    """Amplitude perturbation, fraction."""
    breath: float
    """Aspiration noise during voicing, relative amplitude."""
    tilt: float
    """Glottal spectral tilt, dB/octave."""
    voice_style: float
    """The speaker's expressiveness in the voice."""
    # face
    face_w: float
    face_h: float
    skin: tuple[int, int, int]
    hair: tuple[int, int, int]
    hair_style: int
    """0 short, 1 long, 2 very short / bald, 3 curly."""
    iris: tuple[int, int, int]
    lips: tuple[int, int, int]
    eye_spacing: float
    eye_size: float
    brow_thick: int
    mouth_w: float
    nose_len: float
    beard: bool
    glasses: bool
    rest_smile: float
    """Resting mouth-corner curvature (a neutral face is not the same on everyone)."""
    rest_brow: float
    face_style: float
    """The speaker's expressiveness in the face."""
    motion: float
    """Habitual head-movement amount."""
    clothes: tuple[int, int, int]
    background: tuple[int, int, int]
    background_kind: int


_SKIN = np.array([[255, 224, 196], [241, 194, 160], [224, 172, 132], [198, 140, 101],
                  [161, 106, 70], [120, 78, 52], [92, 60, 40]], dtype=float)
_HAIR = np.array([[20, 16, 14], [55, 38, 28], [96, 64, 40], [150, 110, 70], [205, 170, 110],
                  [140, 60, 30], [120, 120, 120]], dtype=float)
_IRIS = np.array([[70, 45, 25], [40, 25, 15], [60, 100, 140], [80, 110, 70], [110, 90, 60]], dtype=float)


def _color(rng: np.random.Generator, palette: np.ndarray, jitter: float) -> tuple[int, int, int]:
    c = palette[rng.integers(len(palette))] + rng.normal(0, jitter, 3)
    return tuple(int(v) for v in np.clip(c, 0, 255))  # type: ignore[return-value]


def make_speaker(seed: int, sid: str) -> Speaker:
    """The speaker ``sid`` of the corpus drawn with ``seed`` (same inputs -> same speaker)."""
    number = speaker_number(sid)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5BEA4E, stable_hash(sid)]))
    male = number % 2 == 1
    f0 = float(rng.uniform(92, 150) if male else rng.uniform(170, 250))
    skin = _color(rng, _SKIN, 8)
    hair_rgb = _color(rng, _HAIR, 10)
    style = int(rng.choice([0, 2, 3, 1], p=[0.55, 0.2, 0.15, 0.1]) if male
                else rng.choice([1, 0, 3], p=[0.6, 0.2, 0.2]))
    return Speaker(
        id=sid, number=number, gender="male" if male else "female",
        f0=f0,
        f0_range=float(rng.uniform(2.0, 4.5)),
        vtl=float(rng.uniform(0.93, 1.07) * (1.0 if male else 1.17)),
        rate=float(rng.uniform(0.86, 1.14)),
        jitter=float(rng.uniform(0.004, 0.012)),
        shimmer=float(rng.uniform(0.02, 0.06)),
        breath=float(rng.uniform(0.03, 0.12) * (1.0 if male else 1.4)),
        tilt=float(rng.uniform(-13.5, -10.0)),
        voice_style=float(rng.uniform(0.75, 1.2)),
        face_w=float(rng.uniform(0.9, 1.1)),
        face_h=float(rng.uniform(0.92, 1.08)),
        skin=skin,
        hair=hair_rgb,
        hair_style=style,
        iris=_color(rng, _IRIS, 10),
        lips=tuple(int(v) for v in np.clip(np.array(skin) * [0.78, 0.52, 0.52] + rng.normal(0, 6, 3) + [30, 0, 5], 0, 255)),  # type: ignore[arg-type]
        eye_spacing=float(rng.uniform(0.9, 1.1)),
        eye_size=float(rng.uniform(0.88, 1.12)),
        brow_thick=int(rng.integers(2, 4)),
        mouth_w=float(rng.uniform(0.88, 1.12)),
        nose_len=float(rng.uniform(0.85, 1.15)),
        beard=bool(male and rng.random() < 0.3),
        glasses=bool(rng.random() < 0.18),
        rest_smile=float(rng.normal(0.0, 0.2)),
        rest_brow=float(rng.normal(0.0, 0.2)),
        face_style=float(rng.uniform(0.75, 1.2)),
        motion=float(rng.uniform(0.6, 1.4)),
        clothes=tuple(int(v) for v in rng.integers(30, 200, 3)),  # type: ignore[arg-type]
        background=tuple(int(v) for v in rng.integers(70, 210, 3)),  # type: ignore[arg-type]
        background_kind=int(rng.integers(0, 3)),
    )

"""Emotions: how each of the six classes shows in the voice and in the face, at two intensities,
with per-clip expressiveness drawn independently for each modality, and the continuous
arousal/valence annotation of a clip.

A profile holds the *strong-intensity* deviation from the speaker's neutral state; the "normal"
intensity uses :data:`INTENSITY_SCALE` of it, and each modality's expressiveness (drawn per clip,
sometimes near zero) scales it again. So a clip may be clearly angry in the voice but show an
almost neutral face, as in real acted corpora.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

EMOTIONS: tuple[str, ...] = ("neutral", "happy", "sad", "angry", "fearful", "surprised")
"""Class names; a manifest ``label`` indexes this tuple."""
INTENSITIES: tuple[str, ...] = ("normal", "strong")
INTENSITY_SCALE = {"normal": 0.65, "strong": 1.0}


@dataclass(frozen=True)
class VoiceEmotion:
    """Deviation of the voice from neutral (strong intensity, full expressiveness)."""

    f0_shift: float = 0.0
    """Mean F0 shift, semitones."""
    f0_range: float = 1.0
    """Multiplier of the pitch-accent / declination range."""
    final_rise: float = 0.0
    """F0 movement over the last word, semitones (+ rising, - falling)."""
    tremor: float = 0.0
    """F0 tremor depth (5-7 Hz), semitones."""
    rate: float = 1.0
    """Speaking-rate multiplier (> 1 faster)."""
    pauses: float = 1.0
    """Multiplier of the gaps between words."""
    energy_db: float = 0.0
    """Loudness change, dB."""
    tilt_db: float = 0.0
    """Spectral-tilt change, dB/octave (+ brighter, pressed; - softer, darker)."""
    jitter: float = 1.0
    """Multiplier of the speaker's F0 jitter (and shimmer)."""
    breath: float = 1.0
    """Multiplier of the speaker's breathiness."""


@dataclass(frozen=True)
class FaceEmotion:
    """Deviation of the face from neutral (strong intensity, full expressiveness)."""

    smile: float = 0.0
    """Mouth-corner curvature: + corners up, - corners down."""
    mouth_width: float = 0.0
    """Lip stretch (+) or narrowing (-)."""
    jaw: float = 0.0
    """Extra jaw opening (surprise drops the jaw)."""
    lip_press: float = 0.0
    """Lips pressed thin (anger): less opening, thinner lips."""
    brow_inner: float = 0.0
    """Inner brow raise (+) or lowering/knitting (-)."""
    brow_outer: float = 0.0
    """Outer brow raise (+) or lowering (-)."""
    eye_open: float = 0.0
    """Eye-opening change (+ wide, - narrowed)."""
    cheek: float = 0.0
    """Cheek raise (narrows the eyes from below; Duchenne smile)."""
    head_motion: float = 1.0
    """Multiplier of head-movement amount."""
    head_pitch: float = 0.0
    """Mean head pitch, degrees-equivalent (+ down)."""
    blink: float = 1.0
    """Blink-rate multiplier."""


VOICE: dict[str, VoiceEmotion] = {
    "neutral": VoiceEmotion(),
    "happy": VoiceEmotion(f0_shift=4.0, f0_range=1.8, final_rise=1.0, rate=1.08, pauses=0.9,
                          energy_db=4.0, tilt_db=2.5, jitter=1.0, breath=0.9),
    "sad": VoiceEmotion(f0_shift=-2.5, f0_range=0.45, final_rise=-2.0, tremor=0.12, rate=0.72,
                        pauses=2.0, energy_db=-7.0, tilt_db=-4.5, jitter=1.3, breath=2.2),
    "angry": VoiceEmotion(f0_shift=3.0, f0_range=1.4, final_rise=-3.0, rate=1.12, pauses=0.7,
                          energy_db=8.0, tilt_db=6.5, jitter=1.8, breath=0.5),
    "fearful": VoiceEmotion(f0_shift=6.0, f0_range=0.8, final_rise=1.0, tremor=0.8, rate=1.22,
                            pauses=1.2, energy_db=0.5, tilt_db=0.5, jitter=3.0, breath=2.3),
    "surprised": VoiceEmotion(f0_shift=5.0, f0_range=2.2, final_rise=7.0, rate=0.92, pauses=1.0,
                              energy_db=3.0, tilt_db=1.5, jitter=1.0, breath=1.1),
}

FACE: dict[str, FaceEmotion] = {
    "neutral": FaceEmotion(),
    "happy": FaceEmotion(smile=1.0, mouth_width=0.30, jaw=0.08, brow_inner=0.10, brow_outer=0.15,
                         eye_open=-0.10, cheek=0.8, head_motion=1.4, head_pitch=-1.0, blink=1.0),
    "sad": FaceEmotion(smile=-0.7, mouth_width=-0.15, jaw=-0.05, brow_inner=0.85, brow_outer=-0.35,
                       eye_open=-0.35, head_motion=0.5, head_pitch=4.0, blink=0.7),
    "angry": FaceEmotion(smile=-0.30, mouth_width=0.15, lip_press=0.7, brow_inner=-1.0,
                         brow_outer=0.15, eye_open=0.05, head_motion=1.6, head_pitch=-2.0, blink=0.6),
    "fearful": FaceEmotion(smile=-0.25, mouth_width=0.40, jaw=0.20, brow_inner=0.85, brow_outer=0.35,
                           eye_open=0.45, head_motion=0.8, head_pitch=1.0, blink=1.8),
    "surprised": FaceEmotion(smile=0.05, mouth_width=-0.20, jaw=0.50, brow_inner=0.95,
                             brow_outer=1.0, eye_open=0.55, head_motion=1.3, head_pitch=-2.5, blink=0.5),
}

# Arousal / valence prototypes at strong intensity, in [-1, 1].
AFFECT: dict[str, tuple[float, float]] = {
    "neutral": (0.0, 0.0),
    "happy": (0.55, 0.75),
    "sad": (-0.55, -0.65),
    "angry": (0.80, -0.60),
    "fearful": (0.65, -0.70),
    "surprised": (0.70, 0.25),
}


def _scale(profile, neutral, k: float):
    """Interpolate every field between the neutral profile (k=0) and ``profile`` (k=1);
    multiplicative fields (neutral value 1) interpolate in the log domain."""
    out = {}
    for f in fields(profile):
        v, n = getattr(profile, f.name), getattr(neutral, f.name)
        if n == 1.0:
            out[f.name] = float(np.exp(k * np.log(max(v, 1e-3))))
        else:
            out[f.name] = n + k * (v - n)
    return type(profile)(**out)


def voice_state(emotion: str, intensity: str, expressiveness: float) -> VoiceEmotion:
    """The voice deviation actually applied: profile × intensity scale × expressiveness."""
    k = INTENSITY_SCALE[intensity] * expressiveness
    return _scale(VOICE[emotion], VOICE["neutral"], k)


def face_state(emotion: str, intensity: str, expressiveness: float) -> FaceEmotion:
    """The face deviation actually applied: profile × intensity scale × expressiveness."""
    k = INTENSITY_SCALE[intensity] * expressiveness
    return _scale(FACE[emotion], FACE["neutral"], k)


def sample_expressiveness(rng: np.random.Generator, style: float) -> float:
    """How strongly one modality of one clip shows the emotion (0 = not at all).

    About one clip in five is nearly neutral in a given modality; the two modalities of a clip are
    drawn independently. ``style`` is the speaker's own expressiveness in that modality.
    """
    if rng.random() < 0.2:
        x = rng.uniform(0.0, 0.25)
    else:
        x = rng.uniform(0.55, 1.25)
    return float(np.clip(x * style, 0.0, 1.5))


def affect(emotion: str, intensity: str, voice_expr: float, face_expr: float,
           rng: np.random.Generator) -> tuple[float, float]:
    """Perceived (arousal, valence) of a clip: class prototype × intensity, modulated by how
    expressive the clip is, plus rater noise; clipped to [-1, 1]."""
    a0, v0 = AFFECT[emotion]
    k = INTENSITY_SCALE[intensity] * (0.55 + 0.45 * 0.5 * (voice_expr + face_expr))
    a = a0 * k + rng.normal(0.0, 0.1)
    v = v0 * k + rng.normal(0.0, 0.1)
    return float(np.clip(a, -1, 1)), float(np.clip(v, -1, 1))

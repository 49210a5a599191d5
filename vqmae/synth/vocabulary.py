"""The spoken content: a phoneme inventory, a fixed vocabulary of words and sentences, and the
timeline of phone segments that both the voice and the face follow.

Every phone carries an acoustic target (formants, voicing, frication band, burst) *and* a visual
target (mouth opening, width, rounding; lips closed on bilabials), so the mouth in the video
follows the same articulation as the audio and words can be read from the lips.

The vocabulary and the sentences are constants (not drawn from the corpus seed): word and sentence
ids mean the same thing in every generated corpus.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Phone:
    """One phoneme. Formants are for a reference adult male vocal tract (scaled per speaker)."""

    symbol: str
    kind: str
    """"vowel", "stop", "nasal", "fricative", "approximant" or "aspirate"."""
    voiced: bool
    formants: tuple[float, float, float, float]
    """F1..F4 targets (vowels) or loci (consonants), Hz."""
    duration: float
    """Base duration at speaking rate 1, seconds."""
    intensity: float = 1.0
    """Voicing amplitude relative to an open vowel (intrinsic intensity)."""
    noise_band: tuple[float, float] = (0.0, 0.0)
    """Frication (fricatives) or burst (stops) noise: centre Hz, bandwidth Hz (at 48 kHz)."""
    noise_level: float = 0.0
    """Noise amplitude relative to an open vowel's RMS."""
    mouth_open: float = 0.3
    """Visual target: jaw/lip opening 0 (closed) .. 1 (wide open)."""
    mouth_width: float = 0.5
    """Visual target: lip spreading 0 (narrow) .. 1 (spread)."""
    mouth_round: float = 0.0
    """Visual target: lip rounding/protrusion 0 .. 1."""
    lips_closed: bool = False
    """Bilabials: the lips touch for the closure."""


# Vowels: F1..F4 (male reference), intrinsic intensity, visual targets.
_VOWELS = [
    Phone("a", "vowel", True, (750, 1220, 2550, 3600), 0.115, 1.00, mouth_open=1.00, mouth_width=0.60, mouth_round=0.05),
    Phone("e", "vowel", True, (480, 1850, 2550, 3550), 0.105, 0.86, mouth_open=0.55, mouth_width=0.85, mouth_round=0.05),
    Phone("i", "vowel", True, (290, 2250, 2950, 3700), 0.095, 0.72, mouth_open=0.25, mouth_width=1.00, mouth_round=0.00),
    Phone("o", "vowel", True, (500, 880, 2450, 3450), 0.110, 0.90, mouth_open=0.62, mouth_width=0.30, mouth_round=0.80),
    Phone("u", "vowel", True, (320, 800, 2250, 3350), 0.100, 0.68, mouth_open=0.28, mouth_width=0.15, mouth_round=1.00),
]
# Consonants. Stops: closure then release burst (noise_band = burst spectrum). Fricatives: noise band.
_CONSONANTS = [
    Phone("p", "stop", False, (250, 850, 2200, 3300), 0.085, 0.0, (1200, 1400), 0.55, 0.0, 0.45, 0.1, True),
    Phone("b", "stop", True, (250, 850, 2200, 3300), 0.075, 0.10, (1100, 1200), 0.35, 0.0, 0.45, 0.1, True),
    Phone("m", "nasal", True, (260, 1050, 2250, 3300), 0.075, 0.32, mouth_open=0.0, mouth_width=0.45, mouth_round=0.1, lips_closed=True),
    Phone("f", "fricative", False, (300, 1100, 2300, 3400), 0.095, 0.0, (5200, 5000), 0.11, 0.12, 0.45, 0.0),
    Phone("v", "fricative", True, (300, 1100, 2300, 3400), 0.075, 0.22, (4800, 4500), 0.07, 0.12, 0.45, 0.0),
    Phone("t", "stop", False, (300, 1750, 2650, 3500), 0.080, 0.0, (5200, 2600), 0.65, 0.25, 0.55, 0.0),
    Phone("d", "stop", True, (300, 1750, 2650, 3500), 0.070, 0.10, (4500, 2400), 0.40, 0.25, 0.55, 0.0),
    Phone("n", "nasal", True, (280, 1600, 2600, 3400), 0.070, 0.32, mouth_open=0.22, mouth_width=0.55, mouth_round=0.0),
    Phone("s", "fricative", False, (320, 1700, 2700, 3500), 0.100, 0.0, (7200, 2800), 0.30, 0.18, 0.75, 0.0),
    Phone("z", "fricative", True, (320, 1700, 2700, 3500), 0.080, 0.22, (6800, 2600), 0.18, 0.18, 0.75, 0.0),
    Phone("l", "approximant", True, (360, 1300, 2800, 3500), 0.060, 0.58, mouth_open=0.35, mouth_width=0.55, mouth_round=0.0),
    Phone("k", "stop", False, (300, 1900, 2300, 3400), 0.085, 0.0, (2300, 900), 0.60, 0.35, 0.50, 0.1),
    Phone("g", "stop", True, (300, 1900, 2300, 3400), 0.075, 0.10, (2100, 800), 0.38, 0.35, 0.50, 0.1),
    Phone("S", "fricative", False, (320, 1800, 2400, 3400), 0.100, 0.0, (3600, 2200), 0.28, 0.22, 0.30, 0.70),
    Phone("h", "aspirate", False, (600, 1400, 2500, 3500), 0.060, 0.0, (0, 0), 0.12, 0.45, 0.55, 0.1),
    Phone("w", "approximant", True, (320, 750, 2250, 3300), 0.060, 0.55, mouth_open=0.18, mouth_width=0.10, mouth_round=1.0),
]
PHONES: dict[str, Phone] = {p.symbol: p for p in _VOWELS + _CONSONANTS}
VOWELS = tuple(p.symbol for p in _VOWELS)
BILABIALS = tuple(p.symbol for p in PHONES.values() if p.lips_closed)

# The vocabulary: 32 words of 1-3 CV(C) syllables; "sh" is one phone (S). Index = word id.
WORDS: tuple[str, ...] = (
    "bama", "tiko", "supa", "mido", "kelu", "nopi", "fashu", "gabe",
    "lomi", "dusa", "wepo", "hinu", "zobi", "tame", "puki", "sheno",
    "voda", "mulo", "kipa", "bosu", "lefi", "numa", "gito", "dave",
    "bamiko", "telupa", "sonimu", "fagedo", "pam", "tis", "mo", "kesh",
)

# Sentences (word ids). 0-1: the two statements of the labelled presets (like RAVDESS's two);
# 2-11: more sentences (like CREMA-D's twelve); 12-17: short ones for the tiny preset.
SENTENCES: tuple[tuple[int, ...], ...] = (
    (0, 18, 5, 16),          # bama kipa nopi voda
    (20, 3, 27, 11),         # lefi mido fagedo hinu
    (24, 9, 14),             # bamiko dusa puki
    (6, 21, 1, 7),           # fashu numa tiko gabe
    (25, 17, 2),             # telupa mulo supa
    (12, 4, 15, 28),         # zobi kelu sheno pam
    (10, 26, 22),            # wepo sonimu gito
    (19, 13, 8, 29),         # bosu tame lomi tis
    (23, 30, 0, 31),         # dave mo bama kesh
    (11, 2, 18, 3),          # hinu supa kipa mido
    (16, 7, 20, 9),          # voda gabe lefi dusa
    (14, 21, 6),             # puki numa fashu
    (0, 5),                  # bama nopi
    (3, 18),                 # mido kipa
    (2, 16),                 # supa voda
    (20, 13),                # lefi tame
    (17, 1),                 # mulo tiko
    (8, 12),                 # lomi zobi
)
NUM_LABELLED_SENTENCES = 12
TINY_SENTENCES = tuple(range(12, 18))


def word_phones(word: str) -> list[str]:
    """``"fashu"`` -> ``["f", "a", "S", "u"]``."""
    out, i = [], 0
    while i < len(word):
        if word.startswith("sh", i):
            out.append("S")
            i += 2
        else:
            out.append(word[i])
            i += 1
    unknown = [p for p in out if p not in PHONES]
    if unknown:
        raise ValueError(f"word {word!r} has unknown phones {unknown}")
    return out


def sentence_text(word_ids: list[int] | tuple[int, ...]) -> str:
    return " ".join(WORDS[w] for w in word_ids)


@dataclass
class Segment:
    """One phone in time. ``word`` indexes the sentence's word list (-1 for silence)."""

    phone: str
    start: float
    duration: float
    word: int
    stressed: bool = False
    final: bool = False

    @property
    def end(self) -> float:
        return self.start + self.duration


@dataclass
class Timeline:
    """The phone segments of one utterance, plus leading/trailing silence."""

    segments: list[Segment]
    word_spans: list[tuple[float, float]]
    duration: float
    """Total clip duration (seconds), a whole number of video frames."""
    speech_start: float
    speech_end: float


def build_timeline(word_ids: list[int] | tuple[int, ...], rng: np.random.Generator, *, rate: float,
                   pause_scale: float, fps: float, min_duration: float, max_duration: float) -> Timeline:
    """Lay out the phones of a sentence in time.

    ``rate`` > 1 speaks faster; ``pause_scale`` scales the gaps between words. Phone durations get
    ±15 % jitter, stressed (word-initial) syllables are longer, the last syllable is lengthened.
    If the utterance does not fit in ``max_duration`` it is time-compressed; the clip is padded with
    silence to at least ``min_duration``. The duration is rounded up to whole video frames.
    """
    segs: list[Segment] = []
    t = 0.0
    n_words = len(word_ids)
    for wi, w in enumerate(word_ids):
        phones = word_phones(WORDS[w])
        vowel_idx = [i for i, p in enumerate(phones) if PHONES[p].kind == "vowel"]
        last_vowel = vowel_idx[-1]
        for i, p in enumerate(phones):
            ph = PHONES[p]
            stressed = bool(vowel_idx) and i <= vowel_idx[0]
            final = wi == n_words - 1 and i >= last_vowel - 1
            d = ph.duration / rate * float(rng.uniform(0.85, 1.15))
            if stressed and ph.kind == "vowel":
                d *= 1.3
            if final:
                d *= 1.35
            segs.append(Segment(p, t, d, wi, stressed, final))
            t += d
        if wi < n_words - 1:
            gap = float(rng.uniform(0.02, 0.09)) * pause_scale
            if rng.random() < 0.25:
                gap = 0.0
            t += gap
    speech = t
    lead = float(rng.uniform(0.15, 0.35))
    trail = float(rng.uniform(0.15, 0.30))
    total = lead + speech + trail
    if total > max_duration:  # compress the speech (never the margins below 0.1 s)
        lead, trail = min(lead, 0.15), min(trail, 0.12)
        scale = (max_duration - lead - trail - 1e-3) / speech
        for s in segs:
            s.start *= scale
            s.duration *= scale
        speech *= scale
        total = lead + speech + trail
    if total < min_duration:  # pad with silence, split between both ends
        extra = min_duration - total
        lead += extra * 0.5
        trail += extra * 0.5
        total = min_duration
    n_frames = min(int(np.ceil(total * fps - 1e-6)), max(int(np.floor(max_duration * fps + 1e-6)), 1))
    total = n_frames / fps
    for s in segs:
        s.start += lead
    spans = []
    for wi in range(n_words):
        ws = [s for s in segs if s.word == wi]
        spans.append((round(ws[0].start, 4), round(ws[-1].end, 4)))
    return Timeline(segs, spans, total, lead, lead + speech)

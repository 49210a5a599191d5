"""Where each clip goes: our own layout, or the folder/file naming of RAVDESS or CREMA-D so that
the dataset adapters can be tested on generated files.

* ``vqmae``:   ``clips/spk03/spk03_s1_angry_strong_r1.mp4``
* ``ravdess``: ``Actor_03/01-01-05-02-01-01-03.mp4`` (modality 01 audio-video, channel 01 speech,
  emotion code, intensity 01/02, statement, repetition, actor). Our 6 emotions use RAVDESS codes
  neutral 01, happy 03, sad 04, angry 05, fearful 06, surprised 08 (calm 02 and disgust 07 do not
  occur). Statement = 01/02 (the preset's first/second sentence; other sentences alternate).
* ``crema-d``: ``VideoFlash/1003_IEO_ANG_HI.flv`` (actor 1000 + speaker number, sentence code,
  emotion code, level). Real FLV files (H.264 + AAC). CREMA-D has no surprise: surprised clips
  are not written, and the class list is the 5 remaining emotions. Level: neutral XX, normal MD,
  strong HI. CREMA-D names have no repetition field: only repetition 1 is written.
"""

from __future__ import annotations

from vqmae.synth.emotion import EMOTIONS

LAYOUTS: tuple[str, ...] = ("vqmae", "ravdess", "crema-d")

RAVDESS_EMOTION_CODES = {"neutral": 1, "happy": 3, "sad": 4, "angry": 5, "fearful": 6, "surprised": 8}
CREMAD_EMOTION_CODES = {"neutral": "NEU", "happy": "HAP", "sad": "SAD", "angry": "ANG", "fearful": "FEA"}
CREMAD_SENTENCES = ("IEO", "TIE", "IOM", "IWW", "TAI", "MTI", "IWL", "ITH", "DFA", "ITS", "TSI", "WSI")
CREMAD_LEVELS = {"normal": "MD", "strong": "HI"}


def layout_classes(layout: str) -> tuple[str, ...]:
    """Class names of a corpus written in ``layout`` (label = index into this)."""
    if layout == "crema-d":
        return tuple(e for e in EMOTIONS if e in CREMAD_EMOTION_CODES)
    return EMOTIONS


def container_of(path: str) -> str:
    """PyAV container format for a relative path."""
    return "flv" if path.endswith(".flv") else "mp4"


def clip_path(layout: str, *, clip_id: str, speaker: str, number: int, emotion: str | None,
              intensity: str, sentence_pos: int, repetition: int) -> str | None:
    """Relative path of a clip in ``layout``, or None where the layout cannot hold it.

    ``number`` is the speaker number, ``sentence_pos`` the sentence's position in the preset's
    sentence list. Unlabelled clips (``emotion=None``) exist only in the ``vqmae`` layout.
    """
    if layout == "vqmae":
        return f"clips/{speaker}/{clip_id}.mp4"
    if emotion is None:
        raise ValueError(f"layout {layout!r} needs labelled clips (use the vqmae layout for unlabelled data)")
    if layout == "ravdess":
        if not 1 <= number <= 99:
            raise ValueError(f"RAVDESS actor numbers have two digits, got speaker {speaker}")
        ee = RAVDESS_EMOTION_CODES[emotion]
        ii = 2 if intensity == "strong" else 1
        ss = sentence_pos % 2 + 1
        return f"Actor_{number:02d}/01-01-{ee:02d}-{ii:02d}-{ss:02d}-{repetition:02d}-{number:02d}.mp4"
    if layout == "crema-d":
        if emotion not in CREMAD_EMOTION_CODES or repetition != 1:
            return None
        level = "XX" if emotion == "neutral" else CREMAD_LEVELS[intensity]
        sent = CREMAD_SENTENCES[sentence_pos % len(CREMAD_SENTENCES)]
        return f"VideoFlash/{1000 + number}_{sent}_{CREMAD_EMOTION_CODES[emotion]}_{level}.flv"
    raise ValueError(f"unknown layout {layout!r}; choose one of {list(LAYOUTS)}")

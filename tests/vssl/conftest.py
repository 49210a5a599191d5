"""Fixtures of the visually guided SSL tests: tiny synthetic talking-face clips in memory."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from vqmae.synth import SynthConfig, plan_corpus, synthesize_clip
from vqmae.vssl.data import DecodedClip, resize_faces


def synth_clips(size: int = 32, clean: bool = True) -> tuple[list[DecodedClip], list[np.ndarray]]:
    """The 12 clips of the tiny synthetic corpus (6 speakers) rendered at 64 px, resized to
    ``size``, audio at 16 kHz peak-normalised like the clip loader; and each clip's per-frame
    speech loudness ``(T,)``."""
    clips, loud = [], []
    for spec in plan_corpus(SynthConfig(preset="tiny", out="unused")):
        c = synthesize_clip(dataclasses.replace(spec, frame_size=64, sample_rate=16000, clean=clean))
        audio = c.audio / max(1e-4, float(np.abs(c.audio).max()))
        clips.append(DecodedClip(resize_faces(c.frames, size), audio.astype(np.float32),
                                 id=spec.id, speaker=spec.speaker))
        loud.append(np.asarray(c.loudness, dtype=np.float32))
    return clips, loud


@pytest.fixture(scope="session")
def tiny_clips() -> tuple[list[DecodedClip], list[np.ndarray]]:
    return synth_clips()

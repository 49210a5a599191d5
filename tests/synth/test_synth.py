"""The synthetic corpus generator, on arrays (before any encoding): plans, determinism, sync of
mouth and audio, emotion effects in both modalities."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from vqmae.synth import (
    EMOTIONS,
    SENTENCES,
    WORDS,
    SynthConfig,
    make_speaker,
    plan_corpus,
    synthesize_clip,
)
from vqmae.synth.analysis import color_pixels, estimate_f0, frame_rms
from vqmae.synth.emotion import VOICE, face_state, voice_state
from vqmae.synth.face import MOUTH_INSIDE, SCLERA
from vqmae.synth.layouts import clip_path, layout_classes
from vqmae.synth.vocabulary import BILABIALS, build_timeline, word_phones


@pytest.fixture(scope="module")
def demo_specs():
    return plan_corpus(SynthConfig(preset="demo"))


@pytest.fixture(scope="module")
def tiny_specs():
    return plan_corpus(SynthConfig(preset="tiny"))


def _variant(spec, emotion, intensity="strong", **kw):
    """The same speaker and sentence acting ``emotion`` at full expressiveness, clean recording."""
    return replace(spec, id=f"{spec.speaker}_test_{emotion}", emotion=emotion, intensity=intensity,
                   voice_expressiveness=1.0, face_expressiveness=1.0, clean=True, **kw)


# ----------------------------------------------------------------------------------- planning


def test_vocabulary_parses():
    assert len(WORDS) == len(set(WORDS))
    for w in WORDS:
        assert word_phones(w)
    for s in SENTENCES:
        assert all(0 <= w < len(WORDS) for w in s)
    assert word_phones("fashu") == ["f", "a", "S", "u"]


def test_timeline_whole_frames_within_bounds():
    rng = np.random.default_rng(0)
    for rate in (0.6, 1.0, 1.4):
        tl = build_timeline(SENTENCES[0], rng, rate=rate, pause_scale=1.0, fps=25.0,
                            min_duration=2.0, max_duration=4.0)
        assert 2.0 - 1e-9 <= tl.duration <= 4.0 + 1e-9
        assert abs(tl.duration * 25 - round(tl.duration * 25)) < 1e-9
        assert 0 < tl.speech_start < tl.speech_end < tl.duration
        assert len(tl.word_spans) == len(SENTENCES[0])


def test_demo_plan_is_balanced(demo_specs):
    assert len(demo_specs) == 30 * 6 * 2 * 2
    assert len({s.id for s in demo_specs}) == len(demo_specs)
    for e in EMOTIONS:
        assert sum(s.emotion == e for s in demo_specs) == 120
    assert {s.speaker for s in demo_specs} == {f"spk{i:02d}" for i in range(1, 31)}
    neutral = [s for s in demo_specs if s.emotion == "neutral"]
    assert {s.intensity for s in neutral} == {"normal"} and {s.repetition for s in neutral} == {1, 2}


def test_tiny_plan_covers_all_classes():
    specs = plan_corpus(SynthConfig(preset="tiny"))
    assert len(specs) == 12
    assert sorted(s.emotion for s in specs) == sorted(EMOTIONS * 2)
    assert len({s.speaker for s in specs}) == 6
    assert all(s.sample_rate == 44100 and s.max_duration <= 2.0 for s in specs)


def test_pretrain_speakers_disjoint_and_unlabelled(demo_specs):
    specs = plan_corpus(SynthConfig(preset="pretrain", clips=40, speakers=8))
    assert len(specs) == 40 and not any(s.labelled for s in specs)
    assert {s.speaker for s in specs} == {f"spk{i}" for i in range(101, 109)}
    assert not {s.speaker for s in specs} & {s.speaker for s in demo_specs}
    assert len({s.words for s in specs}) > 20  # varied content
    with pytest.raises(ValueError):
        plan_corpus(SynthConfig(preset="demo", speakers=100))


def test_speakers_differ_and_are_reproducible():
    a, b = make_speaker(0, "spk01"), make_speaker(0, "spk02")
    assert a == make_speaker(0, "spk01") and a != make_speaker(1, "spk01")
    assert a.gender == "male" and b.gender == "female" and b.f0 > a.f0


def test_layout_names():
    kw = dict(clip_id="x", speaker="spk03", number=3, sentence_pos=1)
    assert clip_path("ravdess", emotion="angry", intensity="strong", repetition=1, **kw) == \
        "Actor_03/01-01-05-02-02-01-03.mp4"
    assert clip_path("ravdess", emotion="surprised", intensity="normal", repetition=2, **kw) == \
        "Actor_03/01-01-08-01-02-02-03.mp4"
    assert clip_path("crema-d", emotion="fearful", intensity="normal", repetition=1, **kw) == \
        "VideoFlash/1003_TIE_FEA_MD.flv"
    assert clip_path("crema-d", emotion="neutral", intensity="normal", repetition=1, **kw).endswith("_NEU_XX.flv")
    assert clip_path("crema-d", emotion="surprised", intensity="normal", repetition=1, **kw) is None
    assert clip_path("crema-d", emotion="neutral", intensity="normal", repetition=2, **kw) is None
    assert clip_path("vqmae", emotion=None, intensity="normal", repetition=1, **kw) == "clips/spk03/x.mp4"
    assert "surprised" not in layout_classes("crema-d") and len(layout_classes("ravdess")) == 6


# --------------------------------------------------------------------------------- synthesis


def test_clip_arrays_shapes_and_determinism(demo_specs):
    spec = demo_specs[7]
    a, b = synthesize_clip(spec), synthesize_clip(spec)
    t = a.num_frames
    assert a.frames.shape == (t, 128, 128, 3) and a.frames.dtype == np.uint8
    assert a.audio.dtype == np.float32 and len(a.audio) == t * spec.sample_rate // 25
    assert 2.0 <= a.duration <= 4.0 and np.max(np.abs(a.audio)) <= 1.0
    assert np.array_equal(a.audio, b.audio) and np.array_equal(a.frames, b.frames)
    c = synthesize_clip(replace(spec, seed=1))
    assert not np.array_equal(a.audio[: len(c.audio)], c.audio[: len(a.audio)])


def test_mouth_follows_the_audio(demo_specs):
    clip = synthesize_clip(_variant(demo_specs[0], "neutral"))  # a 2-4 s sentence
    spf = clip.spec.sample_rate // 25
    env = frame_rms(clip.speech, spf)[: clip.num_frames]
    assert np.corrcoef(clip.face["open"], env)[0, 1] > 0.6
    # measured in the pixels: the dark inside of the mouth grows with the audio envelope
    inside = color_pixels(clip.frames, MOUTH_INSIDE)
    assert np.corrcoef(inside, env)[0, 1] > 0.5
    assert inside[env < env.max() * 0.02].mean() < 0.2 * inside[env > np.percentile(env, 75)].mean()
    # lips shut on bilabial closures
    for seg in clip.timeline.segments:
        if seg.phone in BILABIALS and seg.duration > 0.06:
            c = int((seg.start + 0.35 * seg.duration) * 25)
            if (c + 0.5) / 25 < seg.start + 0.55 * seg.duration:
                assert clip.face["open"][c] < 0.2, (seg, clip.face["open"][c])


def _median_st(clip) -> float:
    f0 = estimate_f0(clip.audio, clip.spec.sample_rate)
    return float(np.nanmedian(12 * np.log2(f0 / 100.0)))


def test_emotion_changes_measured_f0(tiny_specs):
    base = tiny_specs[0]
    st = {e: _median_st(synthesize_clip(_variant(base, e))) for e in EMOTIONS}
    for e in ("happy", "angry", "fearful", "surprised"):
        assert st[e] > st["neutral"] + 1.5, (e, st)
    assert st["sad"] < st["neutral"] - 1.0, st
    assert st["fearful"] > st["angry"]
    # and the measured F0 tracks the generator's own contour
    clip = synthesize_clip(_variant(base, "neutral"))
    f0 = estimate_f0(clip.audio, clip.spec.sample_rate)
    true = clip.f0[::2][: len(f0)]
    ok = ~np.isnan(f0[: len(true)]) & (clip.voicing[::2][: len(f0)] > 0.3)
    assert np.median(np.abs(12 * np.log2(f0[: len(true)][ok] / true[ok]))) < 0.5


def test_emotion_changes_face_parameters_and_pixels(tiny_specs):
    base = tiny_specs[1]
    clips = {e: synthesize_clip(_variant(base, e)) for e in ("neutral", "happy", "sad", "angry", "surprised")}

    def mean(e, k):
        return float(np.mean(clips[e].face[k][10:]))

    assert mean("happy", "smile") > mean("neutral", "smile") + 0.5
    assert mean("sad", "smile") < mean("neutral", "smile") - 0.3
    assert mean("surprised", "brow_inner") > mean("neutral", "brow_inner") + 0.5
    assert mean("angry", "brow_inner") < mean("neutral", "brow_inner") - 0.5
    assert mean("surprised", "eye_open") > mean("neutral", "eye_open") + 0.3
    # eye whites visible in the pixels: wide-open (surprised) > neutral > sad
    white = {e: color_pixels(c.frames[10:], SCLERA, tol=40, rows=(0.0, 0.5)).mean() for e, c in clips.items()}
    assert white["surprised"] > 1.2 * white["neutral"] > 1.2 * white["sad"]


def test_expressiveness_scales_the_emotion():
    assert voice_state("angry", "strong", 0.0) == VOICE["neutral"]
    weak, strong = voice_state("angry", "normal", 1.0), voice_state("angry", "strong", 1.0)
    assert 0 < weak.f0_shift < strong.f0_shift and weak.energy_db < strong.energy_db
    assert face_state("happy", "strong", 0.5).smile == pytest.approx(0.5)

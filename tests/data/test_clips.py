"""The one clip path (vqmae.data.clips): settings resolution, the audio-only fast path, and the
input checks every stage shares with ``prepare``."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
from support.media import plain_frames, tone, truncate, write_clip, write_media

from vqmae.data import clips
from vqmae.data.clips import (
    MIN_CLIP_SECONDS,
    SILENCE_PEAK,
    WINDOW_SECONDS,
    ClipConfig,
    check_clip,
    load_aligned_clip,
    load_clip,
    resolve_clip_config,
)
from vqmae.data.media import MediaError

CFG = ClipConfig(detect_faces=False)


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    d = tmp_path_factory.mktemp("clips")
    return {
        "good": write_clip(d / "good.mp4", seconds=1.0, sample_rate=16000),
        "truncated": truncate(write_clip(d / "truncated.mp4", seconds=2.0, sample_rate=16000, faststart=True), 0.5),
        "silent": write_media(d / "silent.mp4", frames=plain_frames(25), wave=np.zeros(16000, np.float32),
                              sample_rate=16000),
        "quiet": write_media(d / "quiet.mp4", frames=plain_frames(25), wave=tone(1.0, 16000, amp=0.01),
                             sample_rate=16000),
        "too_short": write_clip(d / "short.mp4", seconds=0.3, sample_rate=16000),
        "wav": write_media(d / "speech.wav", wave=tone(1.0, 16000), sample_rate=16000),
    }


@pytest.mark.parametrize("kind", ["truncated", "silent", "too_short"])
@pytest.mark.parametrize("modalities", [("audio", "visual"), ("audio",)])
def test_load_clip_reports_prepares_kinds(media, kind, modalities):
    with pytest.raises(MediaError) as e:
        load_clip(media[kind], CFG, modalities)
    assert e.value.kind == kind


def test_checks_can_be_skipped_and_good_clips_pass(media):
    assert load_clip(media["good"], CFG).num_frames == 25
    assert load_clip(media["too_short"], CFG, check=False).num_frames == 8


def test_audio_only_path_equals_the_full_path(media):
    for name in ("good", "quiet"):
        a, b = load_clip(media[name], CFG, ("audio",)), load_aligned_clip(media[name], CFG)
        np.testing.assert_array_equal(a.audio, b.audio)
        assert a.peak == b.peak and a.num_frames == b.num_frames and a.faces is None


def test_audio_only_path_reads_audio_files(media):
    clip = load_clip(media["wav"], CFG, ("audio",))
    assert clip.audio.shape == (16000,) and np.abs(clip.audio).max() == pytest.approx(1.0)


def test_peak_normalisation_uses_the_silence_threshold(media):
    """predict used to normalise on any non-zero peak; every path now uses SILENCE_PEAK."""
    quiet = load_clip(media["quiet"], CFG, ("audio",))
    assert quiet.peak > SILENCE_PEAK and np.abs(quiet.audio).max() == pytest.approx(1.0)
    hum = SimpleNamespace(audio=np.full(16000, SILENCE_PEAK / 2, np.float32), faces=None, sample_rate=16000)
    with pytest.raises(MediaError) as e:
        check_clip(hum)
    assert e.value.kind == "silent"


def test_check_clip_on_a_custom_loaders_clip():
    ok = SimpleNamespace(audio=np.ones(16000, np.float32), faces=np.zeros((25, 8, 8, 3), np.uint8), fps=25.0)
    check_clip(ok)
    short = SimpleNamespace(audio=np.ones(4800, np.float32), faces=np.zeros((7, 8, 8, 3), np.uint8), fps=25.0)
    with pytest.raises(MediaError) as e:
        check_clip(short)
    assert e.value.kind == "too_short"


def test_resolve_clip_config_order(tmp_path):
    (tmp_path / "dataset.json").write_text(json.dumps(
        {"media": {"detect_faces": False, "face_size": 64, "face_cache_dir": "face_cache", "backend": "pyav"}}))
    tok = {"audio": SimpleNamespace(sample_rate=24000), "visual": SimpleNamespace(frames_per_second=30.0)}
    cfg = resolve_clip_config(tmp_path / "manifest.jsonl", tok, face_size=48, backend="", detect_faces=None)
    assert (cfg.detect_faces, cfg.face_size, cfg.backend, cfg.sample_rate, cfg.fps) == (False, 48, "pyav", 24000, 30.0)
    assert cfg.face_cache_dir == str(tmp_path / "face_cache")
    recorded = resolve_clip_config({"modalities": ["audio"], "sample_rate": 16000, "detector": {}})
    assert recorded.sample_rate == 16000
    assert resolve_clip_config() == ClipConfig()


def test_named_defaults():
    assert WINDOW_SECONDS == 2.0 and MIN_CLIP_SECONDS == 0.5
    assert "MIN_CLIP_SECONDS" in clips.__dict__


@pytest.mark.parametrize("key, value", [("workers", -1), ("frame_stride", 0), ("max_clips", -1)])
def test_tokenizer_training_frame_settings_are_range_checked(key, value):
    from vqmae.config import ConfigError, parse_config
    from vqmae.data.frames import FrameDataConfig

    with pytest.raises(ConfigError, match=key):
        parse_config(FrameDataConfig, [f"{key}={value}"])

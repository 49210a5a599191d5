"""Decoding: probe, video at 25 fps by timestamps, audio resampling, decord == PyAV, aligned clips."""

from __future__ import annotations

import numpy as np
import pytest
from support.media import garbage, plain_frames, read_code, tone, write_clip, write_media

from vqmae.data.clips import ClipConfig, align_audio, clip_config_for_dataset, load_aligned_clip
from vqmae.data.media import MediaError, load_audio, load_video, probe, resample, select_frames

try:
    import decord  # noqa: F401

    HAVE_DECORD = True
except Exception:  # noqa: BLE001
    HAVE_DECORD = False

needs_decord = pytest.mark.skipif(not HAVE_DECORD, reason="decord not installed (x86_64 wheels only)")


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    d = tmp_path_factory.mktemp("media")
    f = {}
    f["mp4"] = write_media(d / "a.mp4", frames=plain_frames(30), wave=tone(1.2, 44100), sample_rate=44100)
    f["mp4_stereo"] = write_media(d / "s.mp4", frames=plain_frames(25), wave=tone(1.0, 48000), sample_rate=48000, channels=2)
    f["avi"] = write_media(d / "b.avi", frames=plain_frames(30), wave=tone(1.2, 44100), sample_rate=44100)
    f["flv30"] = write_media(d / "c.flv", frames=plain_frames(45), fps=30.0, wave=tone(1.5, 44100), sample_rate=44100)
    f["mp4_50"] = write_media(d / "d.mp4", frames=plain_frames(50), fps=50.0, wave=tone(1.0, 16000), sample_rate=16000)
    f["wav"] = write_media(d / "e.wav", wave=tone(0.5, 22050), sample_rate=22050)
    f["no_audio"] = write_media(d / "f.mp4", frames=plain_frames(10))
    return f


def test_probe_reads_headers(media):
    info = probe(media["mp4"])
    assert info.has_video and info.has_audio
    assert info.fps == pytest.approx(25.0) and info.num_frames == 30
    assert (info.width, info.height) == (64, 64)
    assert info.sample_rate == 44100 and info.channels == 1
    assert info.video_duration == pytest.approx(1.2, abs=0.01)
    flv = probe(media["flv30"])
    assert flv.fps == pytest.approx(30.0) and flv.video_codec == "flv"
    wav = probe(media["wav"])
    assert wav.has_audio and not wav.has_video and wav.sample_rate == 22050


@pytest.mark.parametrize("make, kind", [
    (lambda d: garbage(d / "g.mp4"), "corrupt"),
    (lambda d: d / "missing.mp4", "missing"),
    (lambda d: (d / "empty.mp4").write_bytes(b"") or d / "empty.mp4", "corrupt"),
])
def test_probe_errors_name_the_file(tmp_path, make, kind):
    path = make(tmp_path)
    with pytest.raises(MediaError) as e:
        probe(path)
    assert e.value.kind == kind and str(path) in str(e.value)
    with pytest.raises(MediaError):
        load_video(path)
    with pytest.raises(MediaError):
        load_audio(path)


def test_permission_denied_is_unreadable(media, monkeypatch):
    # (as root, chmod 0 does not stop reading: simulate the OS answer)
    import vqmae.data.media as media_mod

    monkeypatch.setattr(media_mod.os, "access", lambda path, mode: False)
    with pytest.raises(MediaError, match="permission denied") as e:
        probe(media["mp4"])
    assert e.value.kind == "unreadable"


def test_missing_tracks(media):
    with pytest.raises(MediaError, match="no audio track") as e:
        load_audio(media["no_audio"])
    assert e.value.kind == "no_audio"
    with pytest.raises(MediaError, match="no video track") as e:
        load_video(media["wav"])
    assert e.value.kind == "no_video"


def test_select_frames_by_timestamps():
    # 30 fps -> 25 fps: output frame c shows the source frame on screen at c / 25
    times = np.arange(45) / 30.0
    idx = select_frames(times, 25.0)
    assert len(idx) == 37  # floor(1.5 s * 25)
    assert np.array_equal(idx, np.floor(np.arange(37) / 25.0 * 30.0 + 1e-6).astype(int))
    # identity at the same rate (with float32 timestamp noise)
    t = (np.arange(50) * np.float32(0.04)).astype(np.float32)
    assert np.array_equal(select_frames(t, 25.0), np.arange(50))
    # variable frame rate: a frame held twice as long is repeated
    vfr = np.array([0.0, 0.04, 0.12, 0.16])
    assert select_frames(vfr, 25.0, duration=0.2).tolist() == [0, 1, 1, 2, 3]


@pytest.mark.parametrize("backend", ["pyav", pytest.param("decord", marks=needs_decord)])
def test_load_video_brings_any_fps_to_25(media, backend):
    v30 = load_video(media["flv30"], fps=25.0, backend=backend)
    assert v30.shape == (37, 64, 64, 3) and v30.dtype == np.uint8
    # each frame's grey level identifies its source frame: output c shows source floor(c * 30 / 25)
    want = np.floor(np.arange(37) * 30 / 25 + 1e-6).astype(int)
    assert read_code(v30).tolist() == want.tolist()
    v50 = load_video(media["mp4_50"], fps=25.0, backend=backend)
    native = load_video(media["mp4_50"], fps=50.0, backend=backend)
    assert v50.shape[0] == 25 and native.shape[0] == 50
    assert np.array_equal(v50, native[::2])
    assert read_code(native).tolist() == list(range(50))
    assert read_code(load_video(media["avi"], backend=backend)).tolist() == list(range(30))


@needs_decord
@pytest.mark.parametrize("name", ["mp4", "avi", "flv30", "mp4_50", "mp4_stereo"])
def test_decord_and_pyav_agree(media, name):
    a = load_video(media[name], backend="decord")
    b = load_video(media[name], backend="pyav")
    assert a.shape == b.shape
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 1
    wa = load_audio(media[name], backend="decord")
    wb = load_audio(media[name], backend="pyav")
    assert wa.shape == wb.shape
    assert np.abs(wa - wb).max() < 1e-4


def test_load_audio_resamples_with_torchaudio(media):
    # PCM in avi: decoding is exact, so the result is the torchaudio resampling of the int16 signal
    ref = tone(1.2, 44100)
    ref = (np.clip(ref, -1, 1) * 32767).astype(np.int16).astype(np.float32) / 32768
    got = load_audio(media["avi"], sample_rate=16000, backend="pyav")
    want = resample(ref, 44100, 16000)
    assert got.dtype == np.float32 and got.ndim == 1
    assert got.shape == want.shape
    assert np.abs(got - want).max() < 1e-3
    # native rate: no resampling
    assert load_audio(media["wav"], sample_rate=22050).shape == (11025,)


def test_stereo_is_averaged_to_mono(media):
    w = load_audio(media["mp4_stereo"], sample_rate=48000, backend="pyav")
    ref = tone(1.0, 48000)
    # AAC is lossy: compare after trimming encoder padding
    n = min(len(w), len(ref))
    assert np.corrcoef(w[:n], ref[:n])[0, 1] > 0.99


# ----------------------------------------------------------------------------- aligned clips


def _flash_clip(path, fps=25.0, seconds=2.0, flash_at=1.0, sample_rate=44100):
    """Video with one white frame at ``flash_at`` s and an audio burst starting at the same time."""
    n = int(round(seconds * fps))
    frames = np.full((n, 64, 64, 3), 30, np.uint8)
    frames[int(round(flash_at * fps))] = 255
    wave = np.zeros(int(seconds * sample_rate), np.float32)
    s0 = int(flash_at * sample_rate)
    wave[s0:s0 + sample_rate // 10] = 0.8 * np.sin(np.arange(sample_rate // 10) * 2 * np.pi * 1000 / sample_rate)
    return write_media(path, frames=frames, fps=fps, wave=wave, sample_rate=sample_rate)


@pytest.mark.parametrize("suffix, fps", [(".mp4", 25.0), (".flv", 30.0), (".avi", 25.0)])
def test_aligned_clip_keeps_audio_and_video_in_sync(tmp_path, suffix, fps):
    path = _flash_clip(tmp_path / f"flash{suffix}", fps=fps)
    clip = load_aligned_clip(path, ClipConfig(detect_faces=False, face_size=32))
    t = clip.num_frames
    assert clip.audio.shape == (t * 640,) and clip.faces.shape == (t, 32, 32, 3)
    assert clip.fps == 25.0 and clip.sample_rate == 16000
    flash = int(np.argmax(clip.faces.mean(axis=(1, 2, 3))))
    onset = int(np.argmax(np.abs(clip.audio) > 0.2))
    assert flash == 25
    # audio frame 2c <-> video frame c: the burst starts within one video frame of the flash
    assert abs(onset / 640 - flash) <= 1.0
    assert np.abs(clip.audio).max() == pytest.approx(1.0)  # peak-normalised


def test_aligned_clip_lengths_and_no_normalisation(tmp_path):
    path = write_clip(tmp_path / "c.mp4", seconds=1.0, sample_rate=48000)
    clip = load_aligned_clip(path, ClipConfig(detect_faces=False, peak_normalize=False))
    assert clip.num_frames in (24, 25) and clip.audio.shape == (clip.num_frames * 640,)
    assert 0.3 < np.abs(clip.audio).max() < 0.7  # fixture amplitude 0.5, not normalised
    assert clip.faces.shape[1:] == (96, 96, 3)


def test_aligned_clip_errors(media):
    with pytest.raises(MediaError) as e:
        load_aligned_clip(media["no_audio"], ClipConfig(detect_faces=False))
    assert e.value.kind == "no_audio"
    with pytest.raises(MediaError) as e:
        load_aligned_clip(media["wav"], ClipConfig(detect_faces=False))
    assert e.value.kind == "no_video"


def test_align_audio_pads_and_shifts():
    w = np.arange(10, dtype=np.float32) + 1
    assert align_audio(w, 3, 4).tolist() == list(range(1, 11)) + [0, 0]
    assert align_audio(w, 1, 4, offset=2).tolist() == [0, 0, 1, 2]
    assert align_audio(w, 1, 4, offset=-2).tolist() == [3, 4, 5, 6]


def test_clip_config_for_dataset(tmp_path):
    from vqmae.io import write_json

    write_json(tmp_path / "dataset.json", {"name": "x", "media": {
        "detect_faces": True, "face_cache_dir": "face_cache", "face_size": 64,
        "detector": {"scale_factor": 1.2, "min_neighbors": 4, "min_size_frac": 0.1, "detect_max_side": 320}}})
    cfg = clip_config_for_dataset(tmp_path / "manifest.jsonl", backend="pyav")
    assert cfg.face_cache_dir == str(tmp_path / "face_cache") and cfg.face_size == 64
    assert cfg.detector.scale_factor == 1.2 and cfg.backend == "pyav"
    assert cfg.samples_per_frame == 640

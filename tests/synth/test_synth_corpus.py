"""The synthetic corpus as written files: manifest, decoding with PyAV and decord, layouts, CLI."""

from __future__ import annotations

import json
import re
from pathlib import Path

import av
import numpy as np
import pytest

from vqmae.data.manifest import read_manifest
from vqmae.synth import EMOTIONS, SynthConfig, generate_corpus

AAC_FRAME = 1024


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "tiny"
    summary = generate_corpus(SynthConfig(preset="tiny", out=str(out), workers=1))
    assert summary["clips"] == 12 and not summary["skipped"]
    return out


def _pyav(path: Path) -> tuple[dict, np.ndarray, np.ndarray]:
    with av.open(str(path)) as c:
        v, a = c.streams.video[0], c.streams.audio[0]
        info = {"fps": float(v.average_rate), "w": v.codec_context.width, "h": v.codec_context.height,
                "duration": c.duration / 1e6 if c.duration else None,
                "sr": a.sample_rate, "codec_v": v.codec_context.name, "codec_a": a.codec_context.name}
        frames = np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])
    with av.open(str(path)) as c:
        audio = np.concatenate([f.to_ndarray()[0] for f in c.decode(audio=0)])
    return info, frames, audio


def test_manifest_matches_clips(tiny):
    man = read_manifest(tiny)
    assert man.name == "synthetic-tiny" and man.classes == list(EMOTIONS)
    assert len(man) == 12 and len(man.speakers()) == 6
    for r in man.records:
        assert r.dataset == "synthetic" and r.fps == 25.0 and r.sample_rate == 44100
        assert man.classes[r.label] == r.label_name and r.label_name in r.id
        assert man.media_path(r).is_file() and r.path.startswith(f"clips/{r.speaker}/")
        t = r.targets
        assert t["num_frames"] == round(r.duration * 25) and t["num_samples"] == t["num_frames"] * 1764
        assert 1.0 <= r.duration <= 2.0
        assert -1 <= t["arousal"] <= 1 and -1 <= t["valence"] <= 1
        assert t["intensity"] in ("normal", "strong") and len(t["words"]) == len(t["word_spans"])
    info = json.loads((tiny / "dataset.json").read_text())
    assert info["synth"]["preset"] == "tiny" and info["num_clips"] == 12
    sheet = (tiny / "DATASHEET.md").read_text()
    assert "tiny preset" in sheet and "| 5 | surprised | 2 |" in sheet


def test_files_decode_with_pyav_as_written(tiny):
    man = read_manifest(tiny)
    for r in man.records[:6]:
        info, frames, audio = _pyav(man.media_path(r))
        t, s = r.targets["num_frames"], r.targets["num_samples"]
        assert info["codec_v"] == "h264" and info["codec_a"] == "aac"
        assert info["fps"] == 25.0 and (info["w"], info["h"]) == (128, 128) and info["sr"] == 44100
        assert frames.shape == (t, 128, 128, 3)
        assert info["duration"] == pytest.approx(r.duration, abs=0.05)
        assert s <= len(audio) < s + AAC_FRAME  # AAC pads the last frame
        assert np.abs(audio).max() > 0.01


def test_files_decode_with_decord(tiny):
    decord = pytest.importorskip("decord")
    man = read_manifest(tiny)
    for r in man.records[6:]:
        path = str(man.media_path(r))
        vr = decord.VideoReader(path)
        assert len(vr) == r.targets["num_frames"] and vr.get_avg_fps() == 25.0
        assert vr[0].shape == (128, 128, 3)
        ar = decord.AudioReader(path, sample_rate=16000, mono=True)
        n16 = r.targets["num_frames"] * 640
        assert n16 <= ar.shape[1] < n16 + 400
        # (decord's AudioReader.duration() truncates to whole seconds: use the sample count)


def test_decoded_pixels_match_generator(tiny):
    from vqmae.synth import plan_corpus, synthesize_clip

    spec = plan_corpus(SynthConfig(preset="tiny"))[3]
    clip = synthesize_clip(spec)
    man = read_manifest(tiny)
    _, frames, audio = _pyav(man.media_path(man.by_id()[spec.id]))
    assert frames.shape == clip.frames.shape
    diff = frames.astype(float) - clip.frames
    assert np.abs(diff).mean() < 6.0  # lossy, and the sensor noise is partly smoothed away,
    coarse = diff.reshape(len(frames), 32, 4, 32, 4, 3).mean(axis=(2, 4))
    assert np.abs(coarse).mean() < 2.0  # but the same pictures
    n = len(clip.audio)
    assert np.corrcoef(audio[:n], clip.audio)[0, 1] > 0.9


def test_rerun_is_a_no_op_and_other_settings_are_refused(tiny):
    assert generate_corpus(SynthConfig(preset="tiny", out=str(tiny), workers=1))["skipped"]
    with pytest.raises(FileExistsError):
        generate_corpus(SynthConfig(preset="tiny", out=str(tiny), seed=5, workers=1))


def test_parallel_workers_give_the_same_clips(tiny, tmp_path):
    generate_corpus(SynthConfig(preset="tiny", out=str(tmp_path), clips=3, workers=2))
    par = read_manifest(tmp_path).records
    ref = {r.id: r for r in read_manifest(tiny).records}
    assert [r.id for r in par] == list(ref)[:3]
    for r in par:
        assert r.targets == ref[r.id].targets and r.duration == ref[r.id].duration


def test_ravdess_layout(tmp_path):
    generate_corpus(SynthConfig(preset="tiny", out=str(tmp_path), layout="ravdess", clips=4, workers=1))
    man = read_manifest(tmp_path)
    codes = {"neutral": "01", "happy": "03", "sad": "04", "angry": "05", "fearful": "06", "surprised": "08"}
    for r in man.records:
        m = re.fullmatch(r"Actor_(\d\d)/01-01-(\d\d)-(0[12])-(0[12])-(\d\d)-(\d\d)\.mp4", r.path)
        assert m, r.path
        assert m.group(1) == m.group(6) == r.speaker[3:]
        assert m.group(2) == codes[r.label_name]
        assert m.group(3) == ("02" if r.targets["intensity"] == "strong" else "01")
        assert (tmp_path / r.path).is_file()


def test_cremad_layout_writes_flv_without_surprise(tmp_path):
    generate_corpus(SynthConfig(preset="tiny", out=str(tmp_path), layout="crema-d", workers=1))
    man = read_manifest(tmp_path)
    assert man.classes == ["neutral", "happy", "sad", "angry", "fearful"]
    assert len(man) == 10 and "surprised" not in {r.label_name for r in man.records}
    for r in man.records:
        assert re.fullmatch(r"VideoFlash/10\d\d_[A-Z]{3}_(NEU|HAP|SAD|ANG|FEA)_(XX|MD|HI)\.flv", r.path), r.path
        assert man.classes[r.label] == r.label_name
    info, frames, audio = _pyav(tmp_path / man.records[0].path)
    assert frames.shape[0] == man.records[0].targets["num_frames"] and info["sr"] == 44100


def test_cli_synth(tmp_path, capsys):
    from vqmae.cli import main

    out = tmp_path / "c"
    assert main(["synth", "--preset", "tiny", "--out", str(out), "--clips", "2", "--workers", "1"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["clips"] == 2 and (out / "manifest.jsonl").is_file()
    assert main(["synth", "--preset", "pretrain", "--out", str(tmp_path / "p"), "--layout", "ravdess"]) == 2
    assert main(["synth", "--help"]) == 0


def test_overwrite_replaces_the_old_corpus(tmp_path):
    generate_corpus(SynthConfig(preset="tiny", out=str(tmp_path), clips=2, workers=1))
    old = [r.path for r in read_manifest(tmp_path).records]
    generate_corpus(SynthConfig(preset="tiny", out=str(tmp_path), clips=2, layout="ravdess", workers=1,
                                overwrite=True))
    new = read_manifest(tmp_path).records
    assert all(r.path.startswith("Actor_") and (tmp_path / r.path).is_file() for r in new)
    assert not any((tmp_path / p).exists() for p in old)

"""Adapters on tiny trees in each dataset's real naming and layout: labels, speakers, counts."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections import Counter

import pytest
from support.media import (
    cremad_tree,
    csv_tree,
    enterface_tree,
    lrw_tree,
    ravdess_tree,
    synthetic_tree,
    voxceleb2_tree,
    write_clip,
)

from vqmae.data.adapters import (
    CREMAD_CLASSES,
    ENTERFACE_CLASSES,
    RAVDESS_CLASSES,
    get_adapter,
    scan,
)

FAST = {"seconds": 0.2}  # adapters read names only: the clips just have to exist


def test_ravdess(tmp_path):
    root = ravdess_tree(tmp_path, actors=(1, 2, 13), emotions=(1, 5, 8), face=False, **FAST)
    (root / "Actor_01" / "notes.txt").write_text("ignored")
    write_clip(root / "Actor_01" / "01-01-05-02-01-01.mp4", seconds=0.2)  # 6 fields: a bad name
    res = scan("ravdess", root)
    assert res.classes == RAVDESS_CLASSES
    assert len(res.records) == 9  # 3 actors x 3 emotions, AV speech only
    by_id = {r.id: r for r in res.records}
    r = by_id["01-01-05-02-01-01-13"]
    assert (r.label, r.label_name, r.speaker) == (4, "angry", "Actor_13")
    assert r.path == "Actor_13/01-01-05-02-01-01-13.mp4" and r.dataset == "ravdess"
    assert by_id["01-01-08-02-01-01-02"].label == 7 and by_id["01-01-01-01-01-01-01"].label == 0
    assert sorted({r.speaker for r in res.records}) == ["Actor_01", "Actor_02", "Actor_13"]
    reasons = Counter(s["reason"] for s in res.skipped)
    assert reasons == {"video only": 3, "audio only": 3, "song (vocal channel 02)": 3}
    assert [e["file"] for e in res.errors] == ["Actor_01/01-01-05-02-01-01.mp4"]
    assert len(scan("ravdess", root, include_song=True).records) == 12


def test_cremad(tmp_path):
    root = cremad_tree(tmp_path, actors=(1001, 1002, 1091), emos=("ANG", "NEU", "SAD"), face=False, **FAST)
    write_clip(root / "VideoFlash" / "1001_DFA_XYZ_XX.flv", seconds=0.2)  # unknown emotion code
    res = scan("crema-d", root)
    assert res.classes == CREMAD_CLASSES == ["anger", "disgust", "fear", "happy", "neutral", "sad"]
    assert len(res.records) == 9  # AudioWAV/*.wav are not clips
    assert all(r.path.startswith("VideoFlash/") and r.path.endswith(".flv") for r in res.records)
    r = next(r for r in res.records if r.id == "1091_TIE_SAD_HI")
    assert (r.speaker, r.label, r.label_name) == ("1091", 5, "sad")
    assert Counter(r.label_name for r in res.records) == {"anger": 3, "neutral": 3, "sad": 3}
    assert [e["file"] for e in res.errors] == ["VideoFlash/1001_DFA_XYZ_XX.flv"]
    assert get_adapter("cremad").name == "crema-d"


def test_enterface(tmp_path):
    root = enterface_tree(tmp_path, subjects=(1, 6, 12), emotions=("anger", "happiness", "surprise"),
                          sentences=(1, 2), face=False, **FAST)
    res = scan("enterface", root)
    assert res.classes == ENTERFACE_CLASSES
    # 3 subjects x 3 emotions x 2 sentences (subject 6 without sentence folders, as in the corpus)
    assert len(res.records) == 3 * 3 * 2
    assert sorted({r.speaker for r in res.records}) == ["subject_01", "subject_06", "subject_12"]
    r = next(r for r in res.records if r.path == "subject 12/happiness/sentence 2/s12_ha_2.avi")
    assert (r.label, r.label_name, r.id) == (3, "happiness", "s12_ha_2")
    assert any(r.path == "subject 6/surprise/s6_su_1.avi" for r in res.records)
    assert len({r.id for r in res.records}) == len(res.records)
    assert get_adapter("enterface").protocol == "loso"


def test_voxceleb2(tmp_path):
    root = voxceleb2_tree(tmp_path, speakers=("id00012", "id00015", "id09999"), videos=2, **FAST)
    write_clip(root / "dev" / "mp4" / "00001.mp4", seconds=0.2)  # not under idXXXXX/<yt>/
    res = scan("voxceleb2", root)
    assert len(res.records) == 6 and res.classes == []
    assert Counter(r.speaker for r in res.records) == {"id00012": 2, "id00015": 2, "id09999": 2}
    assert all(r.label is None for r in res.records)
    assert res.records[0].id == "id00012_yt00AbCdEfG_00001"
    assert len(res.errors) == 1
    assert get_adapter("voxceleb2").face_centred


def test_lrw(tmp_path):
    root = lrw_tree(tmp_path, words=("ABOUT", "WORLD", "BECAUSE"), per_split=2, **FAST)
    (root / "ABOUT" / "train" / "ABOUT_00001.txt").write_text("Duration: 0.3 seconds")
    res = scan("lrw", root)
    assert res.classes == ["ABOUT", "BECAUSE", "WORLD"]
    assert len(res.records) == 3 * 3 * 2
    assert Counter(r.speaker for r in res.records) == {"train": 6, "val": 6, "test": 6}
    r = next(r for r in res.records if r.path == "WORLD/val/WORLD_00002.mp4")
    assert (r.id, r.label, r.label_name) == ("WORLD_00002_val", 2, "WORLD")
    assert get_adapter("lrw").protocol == "split"


def test_generic_csv(tmp_path):
    rows = [
        {"path": "a/x1.mp4", "speaker": "p1", "label": "happy", "arousal": "0.5", "valence": "0.25"},
        {"path": "a/x2.mp4", "speaker": "p1", "label": "sad", "arousal": "", "valence": "-0.5"},
        {"path": "b/x3.mp4", "speaker": "p2", "label": "happy", "arousal": "0.1", "valence": "0.0"},
        {"path": "b/x4.mp4", "speaker": "p2", "label": "", "arousal": "0.9", "valence": "nan"},
    ]
    csv_tree(tmp_path, rows, **FAST)
    res = scan("csv", tmp_path)
    assert res.classes == ["happy", "sad"]
    assert [r.label for r in res.records] == [0, 1, 0, None]
    assert res.records[0].targets == {"arousal": 0.5, "valence": 0.25}
    assert res.records[1].targets == {"valence": -0.5}
    assert res.records[3].targets == {"arousal": 0.9}  # nan dropped
    assert res.records[2].id == "b__x3" and res.records[2].speaker == "p2"
    # given classes fix the label order; an unknown label is an error row, not a crash
    res2 = scan("csv", tmp_path, classes=["sad", "happy", "angry"])
    assert [r.label for r in res2.records] == [1, 0, 1, None]
    (tmp_path / "labels.csv").write_text("path,speaker,label\na/x1.mp4,p1,2\na/x2.mp4,p1,7\n")
    res3 = scan("csv", tmp_path, classes=["a", "b", "c"])
    assert [r.label for r in res3.records] == [2] and res3.errors[0]["file"] == "a/x2.mp4"
    (tmp_path / "labels.csv").write_text("file,who\nx,y\n")
    with pytest.raises(ValueError, match="needs columns"):
        scan("csv", tmp_path)


def test_synthetic_manifest(tmp_path):
    root = synthetic_tree(tmp_path / "syn", speakers=("spk00", "spk01", "spk02"), per_speaker=2, **FAST)
    res = scan("synthetic", root)
    assert len(res.records) == 6 and len(res.classes) == 6
    assert res.root == root.resolve()
    assert {r.speaker for r in res.records} == {"spk00", "spk01", "spk02"}
    assert all(r.targets == {"arousal": 0.5, "valence": -0.25} for r in res.records)
    assert get_adapter("synth").face_centred


def test_unknown_dataset_and_root(tmp_path):
    with pytest.raises(ValueError, match="Did you mean 'ravdess'"):
        get_adapter("ravdes")
    with pytest.raises(FileNotFoundError):
        scan("ravdess", tmp_path / "nope")


def test_ravdess_adapter_on_synthetic_generator_output(tmp_path):
    """The synthetic corpus written in RAVDESS layout (vqmae synth --layout ravdess)."""
    pytest.importorskip("vqmae.pipelines.synth")
    out = tmp_path / "rav"
    proc = subprocess.run([sys.executable, "-m", "vqmae.cli", "synth", "--preset", "tiny", "--layout", "ravdess",
                           "--out", str(out)], capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        pytest.skip(f"vqmae synth --layout ravdess not available: {proc.stderr.strip()[-300:]}")
    res = scan("ravdess", out)
    files = [p for p in out.rglob("*.mp4") if p.name.startswith("01-01-")]
    assert len(res.records) == len(files) > 0 and not res.errors
    for r in res.records:
        code = int(r.id.split("-")[2])
        assert r.label == code - 1 and r.speaker == f"Actor_{r.id[-2:]}"
    shutil.rmtree(out)

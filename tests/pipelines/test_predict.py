"""``vqmae predict``: straight from media files to class probabilities (and arousal/valence)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from support.media import write_clip

from vqmae.data.token_writer import tokenizer_provenance
from vqmae.evaluation.prediction import load_models
from vqmae.mae import cfg_for_store
from vqmae.mae.classifier import ClassifierConfig, EmotionClassifier
from vqmae.pipelines import predict as predict_stage
from vqmae.tokenizers import AudioVQVAE, VisualVQVAE, audio_preset, visual_preset

CLASSES = ["neutral", "happy", "angry"]


def tiny_tokenizers() -> dict[str, torch.nn.Module]:
    """Untrained tiny tokenizers whose codebooks are fixed (no k-means init on first use)."""
    a, v = audio_preset("tiny"), visual_preset("tiny")
    a.quantizer = dataclasses.replace(a.quantizer, kmeans_init=False)
    v.quantizer = dataclasses.replace(v.quantizer, kmeans_init=False)
    return {"audio": AudioVQVAE(a).eval(), "visual": VisualVQVAE(v).eval()}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """A fine-tuned-model folder as ``vqmae finetune`` writes it, on tiny tokenizers (random weights)."""
    root = tmp_path_factory.mktemp("predict")
    torch.manual_seed(0)
    toks = tiny_tokenizers()
    prov = {}
    for m, tok in toks.items():
        tok.save_pretrained(root / f"tok_{m}")
        prov[m] = tokenizer_provenance(tok.eval(), root / f"tok_{m}")
    enc = cfg_for_store(prov, preset="tiny", window_seconds=0.4)
    info = {
        "task": {"kind": "both", "classes": CLASSES, "target_names": ["arousal", "valence"]},
        "tokenizers": {m: {"dir": p["tokenizer_dir"], "fingerprint": p["fingerprint"],
                           "frames_per_second": p["frames_per_second"]} for m, p in prov.items()},
        "clip_config": {"modalities": ["audio", "visual"], "sample_rate": 16000, "fps": 25.0,
                        "peak_normalize": True, "detect_faces": False, "face_size": 96, "backend": "auto"},
    }
    for k in range(2):  # an experiment folder with two fold models
        model = EmotionClassifier(ClassifierConfig(encoder=enc, num_classes=3, num_targets=2, classes=CLASSES))
        model.info = {**info, "fold": {"index": k, "train": [], "val": [], "test": []}}
        model.save_pretrained(root / "exp" / f"fold_{k}" / "model")
    return root / "exp"


def test_predict_mp4_probabilities_sum_to_one(model_dir, tmp_path):
    clips = [write_clip(tmp_path / "a.mp4", seconds=1.0, seed=1),
             write_clip(tmp_path / "b.mp4", seconds=0.6, seed=2)]  # longer than one window, shorter than two
    out = tmp_path / "pred.json"
    rc = predict_stage.main(["--model", str(model_dir / "fold_0" / "model"), str(clips[0]), str(clips[1]),
                             str(tmp_path / "missing.mp4"), "--out", str(out)])
    assert rc == 0
    res = json.loads(out.read_text())
    assert res["classes"] == CLASSES and len(res["predictions"]) == 2
    for p in res["predictions"]:
        assert set(p["probabilities"]) == set(CLASSES)
        assert sum(p["probabilities"].values()) == pytest.approx(1.0, abs=1e-6)
        assert p["label"] == max(p["probabilities"], key=p["probabilities"].get)
        assert isinstance(p["arousal"], float) and isinstance(p["valence"], float)
    assert res["predictions"][0]["windows"] == 3  # 1 s in 0.4-s windows: 0, 0.4, and one ending at 1 s
    assert res["errors"] == [{"file": str(tmp_path / "missing.mp4"), "kind": "missing", "error": "file not found"}]


def test_predict_averages_fold_models_and_reports_bad_files(model_dir, tmp_path, capsys):
    clip = write_clip(tmp_path / "c.mp4", seconds=0.8, seed=3)
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video")
    assert predict_stage.main([f"--model={model_dir}", str(clip), str(bad)]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["num_models"] == 2 and len(res["predictions"]) == 1
    assert sum(res["predictions"][0]["probabilities"].values()) == pytest.approx(1.0, abs=1e-6)
    assert res["errors"][0]["file"] == str(bad)
    # one fold model alone gives other probabilities than the average of two
    single = predict_stage.predict_files(load_models(str(model_dir / "fold_1" / "model")),
                                         [str(clip)], predict_stage.PredictConfig())
    assert single["predictions"][0]["probabilities"] != res["predictions"][0]["probabilities"]


def test_predict_refuses_another_tokenizer(model_dir, tmp_path):
    other = tmp_path / "other_tok"
    torch.manual_seed(5)
    tiny_tokenizers()["audio"].save_pretrained(other)
    clip = write_clip(tmp_path / "d.mp4", seconds=0.5)
    assert predict_stage.main([f"--model={model_dir / 'fold_0' / 'model'}", f"audio_tokenizer={other}",
                               str(clip)]) == 2


def test_split_files():
    settings, files = predict_stage.split_files(["--model", "m", "x.mp4", "batch_size=4", "--out=o.json", "y.avi"])
    assert settings == ["--model", "m", "batch_size=4", "--out=o.json"] and files == ["x.mp4", "y.avi"]


@pytest.mark.slow
def test_media_to_prediction_end_to_end(tmp_path):
    """Synthetic tiny corpus → tiny tokenizers → token store → finetune (from scratch) with noise
    robustness → evaluate → predict on one of the corpus' mp4 files."""
    from vqmae.pipelines import evaluate as evaluate_stage
    from vqmae.pipelines import finetune as finetune_stage
    from vqmae.pipelines import prepare as prepare_stage
    from vqmae.pipelines import synth as synth_stage
    from vqmae.pipelines import tokenize as tokenize_stage

    assert synth_stage.main(["--preset", "tiny", "--out", str(tmp_path / "corpus")]) == 0
    assert prepare_stage.main(["--dataset", "synthetic", "--root", str(tmp_path / "corpus"), "--out",
                               str(tmp_path / "prep"), "--k", "3", "detect_faces=false"]) == 0
    torch.manual_seed(0)
    toks = tiny_tokenizers()
    toks["audio"].save_pretrained(tmp_path / "tok_a")
    toks["visual"].save_pretrained(tmp_path / "tok_v")
    assert tokenize_stage.main(["--manifest", str(tmp_path / "prep"), "--audio-tokenizer", str(tmp_path / "tok_a"),
                                "--visual-tokenizer", str(tmp_path / "tok_v"), "--out", str(tmp_path / "tokens"),
                                "detect_faces=false", "progress=false", "num_workers=0"]) == 0
    out = tmp_path / "ft"
    assert finetune_stage.main([f"--tokens={tmp_path / 'tokens'}", "--init=none", "arch=tiny",
                                f"--folds={tmp_path / 'prep' / 'folds.json'}", f"--out={out}", "modalities=av",
                                "train.epochs=1", "train.batch_size=2", "max_folds=1",
                                "noise=white,babble", "snr_db=10"]) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["noise"]["clean_retokenized_agreement"] > 0.99  # the decode path is the store's
    assert {(r["noise"], r["snr_db"]) for r in res["noise"]["rows"]} >= {("white", 10.0), ("babble", 10.0)}
    assert evaluate_stage.main([f"--model={out / 'scratch-av'}", f"--out={tmp_path / 'ev'}"]) == 0
    mp4 = sorted((tmp_path / "corpus").rglob("*.mp4"))[0]
    pred = tmp_path / "pred.json"
    assert predict_stage.main([f"--model={out / 'scratch-av' / 'fold_0' / 'model'}", str(mp4), f"--out={pred}"]) == 0
    p = json.loads(pred.read_text())["predictions"][0]
    assert sum(p["probabilities"].values()) == pytest.approx(1.0, abs=1e-6)
    assert "arousal" in p and "valence" in p


def _bad_clips(folder: Path) -> dict[str, Path]:
    """One clip of each kind that prepare rejects: truncated, silent, too short (0.3 s)."""
    import numpy as np
    import support.media as mf

    return {"truncated": mf.truncate(write_clip(folder / "truncated.mp4", seconds=2.0, faststart=True), 0.5),
            "silent": mf.write_media(folder / "silent.mp4", frames=mf.plain_frames(25, 64, 64),
                                     wave=np.zeros(16000, np.float32), sample_rate=16000),
            "too_short": write_clip(folder / "short.mp4", seconds=0.3)}


def test_predict_reports_truncated_silent_and_short_files_with_prepares_kinds(model_dir, tmp_path, capsys):
    bad = _bad_clips(tmp_path)
    good = write_clip(tmp_path / "good.mp4", seconds=1.0, seed=4)
    model = f"--model={model_dir / 'fold_0' / 'model'}"
    assert predict_stage.main([model, str(good), *map(str, bad.values())]) == 0
    res = json.loads(capsys.readouterr().out)
    assert len(res["predictions"]) == 1 and res["predictions"][0]["file"] == str(good)
    assert {e["file"]: e["kind"] for e in res["errors"]} == {str(p): k for k, p in bad.items()}
    # every file failed: exit code 2, and the errors are still written
    out = tmp_path / "pred.json"
    assert predict_stage.main([model, *map(str, bad.values()), "--out", str(out)]) == 2
    assert "every file failed" in capsys.readouterr().err
    assert len(json.loads(out.read_text())["errors"]) == 3


def test_predict_bad_settings_exit_2(model_dir, tmp_path, capsys):
    clip = write_clip(tmp_path / "e.mp4", seconds=0.5)
    model = f"--model={model_dir / 'fold_0' / 'model'}"
    for bad, key in ((["batch_size=0"], "batch_size"), (["stride_seconds=-1"], "stride_seconds"),
                     (["--out", str(tmp_path)], "out"), (["device=tpu"], "device")):
        assert predict_stage.main([model, str(clip), *bad]) == 2
        err = capsys.readouterr().err
        assert f"{key}:" in err and "Traceback" not in err


def test_predict_swapped_tokenizer_folders_exit_2_naming_both(model_dir, tmp_path, capsys):
    dirs = {m: str(model_dir.parent / f"tok_{m}") for m in ("audio", "visual")}
    clip = write_clip(tmp_path / "f.mp4", seconds=0.5)
    assert predict_stage.main([f"--model={model_dir / 'fold_0' / 'model'}", f"audio_tokenizer={dirs['visual']}",
                               f"visual_tokenizer={dirs['audio']}", str(clip)]) == 2
    err = capsys.readouterr().err
    assert dirs["audio"] in err and dirs["visual"] in err and "swapped" in err


# ------------------------------------------------------------- from any directory / by hub id


def _bundled_model(root: Path) -> Path:
    """A fold model as finetune saves it, its tokenizers recorded relative to ``root`` (the
    directory training ran in) and bundled into the model folder."""
    import os

    from vqmae.hub import bundle_tokenizers

    torch.manual_seed(0)
    prov = {}
    for m, tok in tiny_tokenizers().items():
        tok.save_pretrained(root / "runs" / f"tok_{m}")
        prov[m] = tokenizer_provenance(tok.eval(), os.path.relpath(root / "runs" / f"tok_{m}", root))
    enc = cfg_for_store(prov, preset="tiny", window_seconds=0.4)
    model = EmotionClassifier(ClassifierConfig(encoder=enc, num_classes=3, num_targets=2, classes=CLASSES))
    model.info = {
        "task": {"kind": "both", "classes": CLASSES, "target_names": ["arousal", "valence"]},
        "tokenizers": {m: {"dir": p["tokenizer_dir"], "fingerprint": p["fingerprint"],
                           "frames_per_second": p["frames_per_second"]} for m, p in prov.items()},
        "clip_config": {"modalities": ["audio", "visual"], "sample_rate": 16000, "fps": 25.0,
                        "peak_normalize": True, "detect_faces": False, "face_size": 96, "backend": "auto"},
    }
    folder = root / "exp" / "fold_0" / "model"
    model.info["tokenizers"] = bundle_tokenizers(folder, model.info["tokenizers"], strict=False)
    model.save_pretrained(folder)
    return folder


def test_predict_runs_from_any_directory_with_bundled_tokenizers(tmp_path, monkeypatch, capsys):
    import shutil

    train, elsewhere = tmp_path / "train", tmp_path / "elsewhere"
    train.mkdir()
    elsewhere.mkdir()
    monkeypatch.chdir(train)
    _bundled_model(train)
    shutil.move(str(train / "exp"), str(tmp_path / "moved"))
    shutil.rmtree(train)  # the training directory (and its tokenizer folders) is gone
    monkeypatch.chdir(elsewhere)
    clip = write_clip(elsewhere / "a.mp4", seconds=0.8, seed=1)
    assert predict_stage.main(["--model", str(tmp_path / "moved" / "fold_0" / "model"), str(clip)]) == 0
    res = json.loads(capsys.readouterr().out)
    assert len(res["predictions"]) == 1 and not res["errors"]


def test_predict_by_hub_id_offline(tmp_path, monkeypatch, capsys):
    import shutil

    from huggingface_hub import constants
    from support.hub_cache import write_hub_cache

    monkeypatch.chdir(tmp_path)
    write_hub_cache(tmp_path / "hub", "org/emotion", _bundled_model(tmp_path))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    shutil.rmtree(tmp_path / "runs")
    clip = write_clip(tmp_path / "a.mp4", seconds=0.8, seed=1)
    assert predict_stage.main(["--model", "org/emotion", str(clip)]) == 0
    assert len(json.loads(capsys.readouterr().out)["predictions"]) == 1
    assert predict_stage.main(["--model", "org/missing", str(clip)]) == 2
    assert "org/missing" in capsys.readouterr().err


def test_store_provenance_records_hub_tokenizers(tmp_path, monkeypatch):
    from huggingface_hub import constants
    from support.hub_cache import COMMIT, write_hub_cache

    from vqmae.data.encoding import load_tokenizer_folders
    from vqmae.hub import store_tokenizer_record

    folder = tiny_tokenizers()["audio"].save_pretrained(tmp_path / "tok")
    write_hub_cache(tmp_path / "hub", "org/audio-tok", folder)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    toks = load_tokenizer_folders({"audio": "org/audio-tok"})
    prov = tokenizer_provenance(toks["audio"], "org/audio-tok")
    assert prov["tokenizer_hub_id"] == "org/audio-tok" and prov["tokenizer_revision"] == COMMIT
    assert prov["tokenizer_dir"].endswith(COMMIT)
    assert store_tokenizer_record(prov)["hub_id"] == "org/audio-tok"

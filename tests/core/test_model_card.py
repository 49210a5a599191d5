"""Model cards (README.md): hub metadata, architecture, tokenizers, training, results."""

from __future__ import annotations

import sys

import torch
from huggingface_hub import ModelCard

from vqmae.evaluation.results import summarize
from vqmae.model_card import (
    invocation,
    model_card,
    results_section,
    write_fold_cards,
    write_model_card,
)

CLASSES = ["angry", "happy", "sad"]


def _classifier():
    from vqmae.mae import mae_preset
    from vqmae.mae.classifier import ClassifierConfig, EmotionClassifier

    torch.manual_seed(0)
    model = EmotionClassifier(ClassifierConfig(encoder=mae_preset("tiny"), num_classes=3, classes=CLASSES))
    model.info = {
        "task": {"kind": "classify", "classes": CLASSES, "target_names": []},
        "tokenizers": {"audio": {"dir": "runs/tok_a", "bundled": "tokenizers/audio", "fingerprint": "a" * 64,
                                 "frames_per_second": 50.0},
                       "visual": {"bundled": "tokenizers/visual", "fingerprint": "b" * 64, "hub_id": "org/vis-tok",
                                  "revision": "c" * 40, "frames_per_second": 25.0}},
        "store": "runs/demo/tokens", "init": "org/vqmae-av-base", "experiment": "finetune-av",
        "fold": {"index": 1, "train": ["s1"], "val": ["s2"], "test": ["s3", "s4"]}, "best_epoch": 2,
        "label_fraction": 1.0,
    }
    return model


def _results() -> dict:
    folds = []
    for k, (war, uar) in enumerate([(0.5, 0.45), (0.6, 0.55), (0.4, 0.42)]):
        folds.append({"fold": k, "test_speakers": [f"s{k}"], "n_test": 12, "best_epoch": 1,
                      "val": {"uar": 0.5}, "test": {"war": war, "uar": uar, "macro_f1": uar}})
    exp = {"name": "finetune-av", "kind": "train", "description": "pretrained VQ-MAE-AV, fine-tuned",
           "modalities": ["audio", "visual"], "folds": folds, "summary": summarize(f["test"] for f in folds),
           "confusion": [[6, 1, 1], [2, 4, 2], [1, 1, 18]]}
    return {"task": "classify", "classes": CLASSES, "experiments": {"finetune-av": exp,
                                                                   "scratch-av": {**exp, "name": "scratch-av"}}}


def test_every_saved_model_gets_a_card_with_hub_metadata(tmp_path):
    model = _classifier()
    folder = model.save_pretrained(tmp_path / "m", card={"training_command": "vqmae finetune --tokens T",
                                                         "datasets": ["RAVDESS"], "license": "cc-by-nc-sa-4.0"})
    card = ModelCard.load(folder / "README.md")
    data = card.data.to_dict()
    assert data["library_name"] == "vqmae" and data["license"] == "cc-by-nc-sa-4.0"
    assert data["datasets"] == ["RAVDESS"] and data["base_model"] == ["org/vqmae-av-base"]
    assert {"vqmae", "vqmae-classifier", "emotion-recognition", "audio", "visual"} <= set(data["tags"])
    assert data["pipeline_tag"] == "video-classification"
    text = card.text
    assert "`vqmae-classifier`" in text and model.fingerprint() in text
    assert "angry, happy, sad" in text
    assert "a" * 64 in text and "`org/vis-tok` @ cccccccccccc (copy in `tokenizers/visual`)" in text
    assert "`runs/tok_a` (copy in `tokenizers/audio`)" in text
    assert "inside this folder" in text  # bundled tokenizers
    assert "vqmae finetune --tokens T" in text and "runs/demo/tokens" in text
    assert "fold 1 (test speakers: s3, s4)" in text
    assert "vqmae predict --model" in text


def test_results_table_with_folds_and_chance(tmp_path):
    model = _classifier()
    folder = model.save_pretrained(tmp_path / "m")
    write_model_card(folder, results=_results(), sections={"Limitations": "Trained on actors."})
    text = (folder / "README.md").read_text()
    card = ModelCard.load(folder / "README.md")
    assert card.data.metrics == ["war", "uar", "macro_f1"]
    assert "## Results" in text and "| finetune-av | 50.0 ± 10.0 |" in text
    assert "scratch-av |" not in text.split("## Results")[1].split("\n\n")[0]  # only this model's experiment
    assert "| **1** (this model) | s1 | 12 | 60.0 | 55.0 | 55.0 |" in text
    assert "| 0 | s0 | 12 | 50.0 | 45.0 | 45.0 |" in text
    assert "Chance level: UAR 33.3 % (1 / 3 classes), WAR 55.6 %" in text  # 20 of 36 test clips are 'sad'
    assert "## Limitations\n\nTrained on actors." in text
    # every experiment's summary when the model names none
    both = results_section(_results())
    assert "| finetune-av |" in both and "| scratch-av |" in both


def test_tokenizer_and_pretrained_cards(tmp_path):
    from vqmae.mae import VQMAEAV, mae_preset
    from vqmae.tokenizers import AudioVQVAE, audio_preset

    tok = AudioVQVAE(audio_preset("tiny"))
    folder = tok.save_pretrained(tmp_path / "tok", metadata={"training": {"preset": "tiny", "manifest": "data/m.jsonl",
                                                                          "steps": 7}})
    text = (folder / "README.md").read_text()
    card = ModelCard.load(folder / "README.md")
    assert card.data.library_name == "vqmae" and "tokenizer" in card.data.tags and card.data.license
    assert "Audio VQ-VAE tokenizer" in text and "`data/m.jsonl`" in text and "- steps: 7" in text
    assert f"| codebook size | {tok.codebook_size} |" in text

    mae = VQMAEAV(mae_preset("tiny"))
    prov = {"audio": {"fingerprint": "d" * 64, "tokenizer_dir": "runs/tok_a/model", "frames_per_second": 50.0}}
    folder = mae.save_pretrained(tmp_path / "mae", metadata={"token_store": {"path": "/data/tokens",
                                                                             "provenance": prov}})
    text = (folder / "README.md").read_text()
    assert "VQ-MAE-AV" in text and "`/data/tokens`" in text and "| audio | `runs/tok_a/model` | `" + "d" * 64 in text
    assert "fingerprints are checked" in text


def test_training_command_defaults_to_this_vqmae_command(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["/venv/bin/vqmae", "pretrain", "--tokens", "my store"])
    assert invocation() == "vqmae pretrain --tokens 'my store'"
    card = model_card({"architecture": "raw-mae", "config": {}, "fingerprint": "f"})
    assert "vqmae pretrain --tokens 'my store'" in card.text
    monkeypatch.setattr(sys, "argv", ["/usr/lib/python3/pytest"])
    assert invocation() == ""
    assert "Command:" not in model_card({"architecture": "raw-mae", "config": {}}).text


def test_fold_cards_after_finetune(tmp_path):
    model = _classifier()
    model.save_pretrained(tmp_path / "finetune-av" / "fold_1" / "model")
    written = write_fold_cards(tmp_path, _results(), training_command="vqmae finetune x")
    assert written == [tmp_path / "finetune-av" / "fold_1" / "model" / "README.md"]
    text = written[0].read_text()
    assert "**1** (this model)" in text and "Chance level" in text and "vqmae finetune x" in text


def test_a_card_problem_never_loses_the_saved_weights(tmp_path, caplog):
    from vqmae.checkpoint import load_pretrained

    model = _classifier()
    folder = model.save_pretrained(tmp_path / "m", card={"no_such_option": 1})
    assert "model card (README.md) not written" in caplog.text
    assert load_pretrained(folder).fingerprint() == model.fingerprint()

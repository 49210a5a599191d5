"""The whole pipeline (vqmae demo) at a tiny size: every stage runs for real, then the report."""

import json
import sys

import pytest

from vqmae.io import read_json
from vqmae.pipelines.demo import PipelineConfig, stage_commands

TINY = [
    "synth_preset=tiny", "folds=3", "tokenizer_preset=tiny", "mae_preset=tiny",
    "modalities=[audio,av]", "experiments=[finetune,scratch]",
    "args.tokenizer_audio=[train.epochs=1]",
    "args.tokenizer_visual=[train.epochs=1]",
    "args.pretrain=[train.epochs=2,train.batch_size=4]",
    "args.finetune=[train.epochs=2,train.batch_size=4]",
]


def test_stage_commands_are_wired_output_to_input(tmp_path):
    cmds = stage_commands(PipelineConfig(), tmp_path)
    assert list(cmds) == ["synth", "prepare", "tokenizer_audio", "tokenizer_visual", "tokenize",
                          "pretrain", "finetune"]
    assert str(tmp_path / "corpus") in cmds["prepare"]
    assert str(tmp_path / "tokenizer_audio" / "model") in cmds["tokenize"]
    assert str(tmp_path / "pretrain" / "model") in cmds["finetune"]
    ext = stage_commands(PipelineConfig(mode="run", dataset="ravdess", root="/data/r",
                                        pretrained="/m/mae", audio_tokenizer="/m/a"), tmp_path)
    assert "synth" not in ext and "pretrain" not in ext and "tokenizer_audio" not in ext
    assert "/m/mae" in ext["finetune"] and "/m/a" in ext["tokenize"]


@pytest.mark.slow
def test_tiny_pipeline_end_to_end_then_cached_rerun(tmp_path, monkeypatch, capsys):
    from vqmae.pipelines.demo import main

    out = tmp_path / "run"
    assert main([f"out={out}", *TINY]) == 0
    state = read_json(out / "stages.json")
    assert all(s["status"] == "done" for s in state.values()), state
    assert set(state) == {"synth", "prepare", "tokenizer_audio", "tokenizer_visual", "tokenize",
                          "pretrain", "finetune", "report"}
    results = read_json(out / "finetune" / "results.json")
    assert results
    report = (out / "report.md").read_text()
    for section in ("Dataset", "tokenizers", "Token store", "pretraining", "Fine-tuning"):
        assert section in report
    html = (out / "report.html").read_text()
    assert "data:image/png;base64," in html and "<table>" in html
    # a rerun skips every finished stage
    capsys.readouterr()
    first = json.dumps(state, sort_keys=True)
    assert main([f"out={out}", *TINY]) == 0
    again = read_json(out / "stages.json")
    for name in ("synth", "tokenize", "pretrain", "finetune"):
        assert again[name]["finished"] == state[name]["finished"]
    assert first != "" and sys.executable

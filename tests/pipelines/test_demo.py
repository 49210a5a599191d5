"""The whole pipeline (vqmae demo): its stages are the CLI's commands, wired output to input, and
every stage runs for real at the tiny size (in the default test run), then the report."""

import time

import pytest

from vqmae.cli import COMMANDS
from vqmae.config import parse_config
from vqmae.io import read_json
from vqmae.pipelines.demo import STAGES, PipelineConfig, pipeline_stages, stage_commands


def test_stages_come_from_the_cli_command_table():
    stages = pipeline_stages()
    assert STAGES == ["synth", "prepare", "tokenizer_audio", "tokenizer_visual", "tokenize",
                      "pretrain", "finetune", "report"]
    assert set(stages.values()) <= set(COMMANDS)  # every stage is a command users can type
    order = list(COMMANDS)
    assert [order.index(c) for c in stages.values()] == sorted(order.index(c) for c in stages.values())


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


def test_quick_is_a_named_preset(tmp_path):
    cfg = parse_config(PipelineConfig, ["preset=quick", "args.pretrain=[train.epochs=9]"], presets="demo")
    cmds = stage_commands(cfg, tmp_path)
    assert cmds["synth"][-2:] == ["--speakers", "6"] and cmds["prepare"][cmds["prepare"].index("--k") + 1] == "6"
    # the preset's arguments come before the user's, so the user's win
    assert cmds["pretrain"][-2:] == ["train.epochs=4", "train.epochs=9"]
    assert "max_folds=1" in cmds["finetune"]


def test_every_stage_end_to_end_at_tiny_size_then_cached_rerun(tmp_path):
    """synth -> prepare -> train-tokenizer audio + visual -> tokenize -> pretrain -> finetune ->
    report, each stage the command a user types (run in this process), then a rerun skips all."""
    from vqmae.pipelines.demo import main

    out = tmp_path / "run"
    argv = [f"out={out}", "preset=tiny", "in_process=true"]
    t0 = time.perf_counter()
    assert main(argv) == 0
    seconds = time.perf_counter() - t0
    state = read_json(out / "stages.json")
    assert set(state) == set(STAGES)
    assert all(s["status"] == "done" for s in state.values()), state
    results = read_json(out / "finetune" / "results.json")
    assert set(results["experiments"]) == {"finetune-av"}
    (r,) = results["experiments"].values()
    assert len(r["folds"]) == 1 and "uar" in r["summary"]
    assert any("fold too small to mean anything" in w for w in r["warnings"])  # 2 test speakers, few clips
    report = (out / "report.md").read_text()
    for section in ("Dataset", "tokenizers", "Token store", "pretraining", "Fine-tuning"):
        assert section in report
    html = (out / "report.html").read_text()
    assert "data:image/png;base64," in html and "<table>" in html
    # a rerun skips every finished stage (their finish times stay)
    assert main(argv) == 0
    again = read_json(out / "stages.json")
    for name in STAGES:
        assert again[name]["finished"] == state[name]["finished"], name
    print(f"tiny pipeline: {seconds:.1f} s")  # ~30 s of CPU time; see docs/PIPELINE.md


@pytest.mark.slow
def test_tiny_pipeline_in_subprocesses(tmp_path):
    """The same, each stage in its own process, as `vqmae demo` runs them."""
    from vqmae.pipelines.demo import main

    out = tmp_path / "run"
    assert main([f"out={out}", "preset=tiny"]) == 0
    assert all(s["status"] == "done" for s in read_json(out / "stages.json").values())

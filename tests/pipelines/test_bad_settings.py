"""Every bad setting of every command ends as exit code 2 and a one-line message naming the
setting, before any heavy work (no data is read: the paths below do not exist)."""

from __future__ import annotations

import pytest

from vqmae.cli import main

PRETRAIN = ["pretrain", "--tokens", "{tmp}/no_store", "--out", "{tmp}/run", "--preset", "tiny"]
TOKENIZER = ["train-tokenizer", "--modality", "audio", "--manifest", "{tmp}/m.jsonl", "--out",
             "{tmp}/run", "--preset", "tiny"]
FINETUNE = ["finetune", "--tokens", "{tmp}/no_store", "--out", "{tmp}/run"]
TOKENIZE = ["tokenize", "--manifest", "{tmp}/m.jsonl", "--audio-tokenizer", "{tmp}/tok",
            "--out", "{tmp}/store"]
PREDICT = ["predict", "--model", "{tmp}/model", "--out", "{tmp}/p.json", "{tmp}/clip.mp4"]
SYNTH = ["synth", "--out", "{tmp}/corpus", "--preset", "tiny"]
PREPARE = ["prepare", "--root", "{tmp}/data", "--out", "{tmp}/prepared"]

# (command line, setting that must be named in the message)
CASES = [
    # ---- pretrain
    pytest.param(PRETRAIN + ["train.epochs=-1"], "train.epochs", id="pretrain-epochs-negative"),
    pytest.param(PRETRAIN + ["train.epochs=0"], "train.epochs", id="pretrain-epochs-zero"),
    pytest.param(PRETRAIN + ["train.lr=-0.001"], "train.lr", id="pretrain-lr-negative"),
    pytest.param(PRETRAIN + ["train.base_lr=-1"], "train.base_lr", id="pretrain-base-lr-negative"),
    pytest.param(PRETRAIN + ["masking.audio_ratio=1.5"], "masking.audio_ratio", id="pretrain-mask-1.5"),
    pytest.param(PRETRAIN + ["masking.visual_ratio=-0.5"], "masking.visual_ratio", id="pretrain-mask-neg"),
    pytest.param(PRETRAIN + ["eval_ratio=1.5"], "eval_ratio", id="pretrain-eval-ratio"),
    pytest.param(PRETRAIN + ["model.depth=-1"], "model.depth", id="pretrain-depth-negative"),
    pytest.param(PRETRAIN + ["model.heads=0"], "model.heads", id="pretrain-heads-zero"),
    pytest.param(PRETRAIN + ["train.checkpoint_every=-1"], "train.checkpoint_every", id="pretrain-ckpt-every"),
    pytest.param(PRETRAIN + ["train.keep_checkpoints=-1"], "train.keep_checkpoints", id="pretrain-keep"),
    pytest.param(PRETRAIN + ["train.num_workers=-1"], "train.num_workers", id="pretrain-workers"),
    pytest.param(PRETRAIN + ["train.batch_size=0"], "train.batch_size", id="pretrain-batch-zero"),
    pytest.param(PRETRAIN + ["train.grad_accum=0"], "train.grad_accum", id="pretrain-accum-zero"),
    pytest.param(PRETRAIN + ["val_fraction=1.5"], "val_fraction", id="pretrain-val-fraction"),
    pytest.param(PRETRAIN + ["window_seconds=0"], "window_seconds", id="pretrain-window-zero"),
    pytest.param(PRETRAIN + ["loss.temperature=0"], "loss.temperature", id="pretrain-temperature"),
    pytest.param(PRETRAIN + ["modalities=[speech]"], "modalities", id="pretrain-modality"),
    pytest.param(PRETRAIN + ["preset=huge"], "preset", id="pretrain-preset"),
    pytest.param(["pretrain", "--out", "{tmp}/run"], "tokens", id="pretrain-tokens-required"),
    # ---- train-tokenizer
    pytest.param(TOKENIZER + ["train.epochs=0"], "train.epochs", id="tokenizer-epochs-zero"),
    pytest.param(TOKENIZER + ["train.batch_size=0"], "train.batch_size", id="tokenizer-batch-zero"),
    pytest.param(TOKENIZER + ["train.grad_accum=0"], "train.grad_accum", id="tokenizer-accum-zero"),
    pytest.param(TOKENIZER + ["train.lr=-1"], "train.lr", id="tokenizer-lr-negative"),
    pytest.param(TOKENIZER + ["data.workers=-1"], "data.workers", id="tokenizer-workers"),
    pytest.param(TOKENIZER + ["data.frame_stride=0"], "data.frame_stride", id="tokenizer-stride"),
    pytest.param(TOKENIZER + ["audio.quantizer.codebook_size=1"], "audio.quantizer.codebook_size",
                 id="tokenizer-codebook"),
    pytest.param(TOKENIZER + ["audio.quantizer.decay=1.5"], "audio.quantizer.decay", id="tokenizer-decay"),
    pytest.param(TOKENIZER + ["audio.quantizer.threshold_ema_dead_code=-1"],
                 "audio.quantizer.threshold_ema_dead_code", id="tokenizer-dead-code"),
    pytest.param(TOKENIZER + ["visual.embedding_dim=0"], "visual.embedding_dim", id="tokenizer-embedding"),
    pytest.param(TOKENIZER + ["audio.hop_length=0"], "audio.hop_length", id="tokenizer-hop"),
    pytest.param(TOKENIZER + ["threads=-1"], "threads", id="tokenizer-threads"),
    pytest.param(TOKENIZER + ["eval_frames=-1"], "eval_frames", id="tokenizer-eval-frames"),
    pytest.param(TOKENIZER + ["modality=speech"], "modality", id="tokenizer-modality"),
    pytest.param(TOKENIZER + ["preset=huge"], "preset", id="tokenizer-preset"),
    pytest.param(["train-tokenizer", "--out", "{tmp}/run"], "manifest", id="tokenizer-manifest-required"),
    # ---- finetune (its train.* settings are TrainConfig's)
    pytest.param(FINETUNE + ["train.epochs=-1"], "train.epochs", id="finetune-epochs"),
    pytest.param(FINETUNE + ["train.batch_size=0"], "train.batch_size", id="finetune-batch-zero"),
    pytest.param(FINETUNE + ["train.grad_accum=0"], "train.grad_accum", id="finetune-accum-zero"),
    pytest.param(FINETUNE + ["train.lr=-1"], "train.lr", id="finetune-lr"),
    pytest.param(FINETUNE + ["eval_batch_size=0"], "eval_batch_size", id="finetune-eval-batch"),
    # ---- tokenize
    pytest.param(TOKENIZE + ["limit=-1"], "limit", id="tokenize-limit"),
    pytest.param(TOKENIZE + ["clips_per_shard=-5"], "clips_per_shard", id="tokenize-shard"),
    pytest.param(TOKENIZE + ["device=tpu"], "device", id="tokenize-device"),
    pytest.param(TOKENIZE + ["num_workers=-2"], "num_workers", id="tokenize-workers"),
    # ---- predict
    pytest.param(PREDICT + ["device=tpu"], "device", id="predict-device"),
    pytest.param(PREDICT + ["batch_size=0"], "batch_size", id="predict-batch"),
    pytest.param(PREDICT + ["stride_seconds=-1"], "stride_seconds", id="predict-stride"),
    # ---- synth
    pytest.param(SYNTH + ["workers=-1"], "workers", id="synth-workers"),
    pytest.param(SYNTH + ["speakers=-1"], "speakers", id="synth-speakers"),
    # ---- prepare
    pytest.param(PREPARE + ["timeout=0"], "timeout", id="prepare-timeout"),
    pytest.param(PREPARE + ["workers=-1"], "workers", id="prepare-workers"),
]


OUT_IS_A_FILE = [
    pytest.param(["pretrain", "--tokens", "{tmp}/no_store", "--out", "{tmp}/file"], id="pretrain-out-file"),
    pytest.param(["train-tokenizer", "--manifest", "{tmp}/m.jsonl", "--out", "{tmp}/file"],
                 id="tokenizer-out-file"),
]


@pytest.mark.parametrize("argv", OUT_IS_A_FILE)
def test_out_naming_a_file_exits_2(argv, tmp_path, capsys):
    (tmp_path / "file").write_text("not a folder")
    code = main([a.replace("{tmp}", str(tmp_path)) for a in argv])
    err = capsys.readouterr().err
    assert code == 2 and "out" in err and "not a run folder" in err and "Traceback" not in err, err


@pytest.mark.parametrize(("argv", "setting"), CASES)
def test_bad_setting_exits_2_naming_it(argv, setting, tmp_path, capsys):
    code = main([a.replace("{tmp}", str(tmp_path)) for a in argv])
    err = capsys.readouterr().err
    assert code == 2, err
    assert setting in err, err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err

"""`vqmae pretrain-vssl` and `vqmae animate` on a small synthetic corpus written to disk."""

from __future__ import annotations

import json

import av
import numpy as np
import pytest
import soundfile as sf
import torch

from vqmae.checkpoint import load_pretrained
from vqmae.io import read_jsonl
from vqmae.pipelines import animate as animate_stage
from vqmae.pipelines import pretrain_vssl as stage
from vqmae.synth import SynthConfig, generate_corpus
from vqmae.vssl import AudioEncoder, VSSLModel
from vqmae.vssl import job as vssl_job


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("vssl") / "tiny"
    generate_corpus(SynthConfig(preset="tiny", out=str(out), clips=6, workers=1))  # 3 speakers
    return out


def _args(corpus, out, cache, *extra):
    return ["--manifest", str(corpus), "--out", str(out), "--preset", "tiny", "detect_faces=false",
            f"cache_dir={cache}", "threads=1", "train.progress=false", *extra]


def test_pretrain_vssl_writes_model_encoder_grid_and_metrics(corpus, tmp_path, one_thread):
    out = tmp_path / "run"
    assert stage.main(_args(corpus, out, tmp_path / "cache", "--task", "multitask", "train.epochs=1")) == 0
    for name in ("model/config.json", "model/model.safetensors", "audio_encoder/config.json",
                 "generated_vs_real.png", "generated_vs_real_seen.png", "curves.png", "summary.json", "metrics.jsonl", "config.yaml"):
        assert (out / name).is_file(), name
    summary = json.loads((out / "summary.json").read_text())
    assert summary["task"] == "multitask" and summary["steps"] > 0
    assert {"l1", "mouth_l1", "pretext_mse", "silent_mouth_l1"} <= set(summary["held_out"])
    assert {"l1", "pretext_mse"} <= set(summary["training_speakers"])
    rows = read_jsonl(out / "metrics.jsonl")
    train_rows = [r for r in rows if r["split"] == "train"]
    assert train_rows and all(r["loss"] == pytest.approx(r["l1"] + r["pretext_mse"], rel=1e-5)
                              for r in train_rows)  # weights 1 + 1; the loss is not counted twice
    assert any(r["split"] == "val" and "mouth_l1" in r for r in rows)
    model = VSSLModel.from_pretrained(out / "model")
    assert model.config.task == "multitask" and model.config.generator.face_size == 32
    enc = load_pretrained(out / "audio_encoder")
    assert isinstance(enc, AudioEncoder)
    wave = torch.randn(1, 10 * 640) * 0.1
    with torch.no_grad():
        assert torch.equal(enc.encode(wave), model.encoder.encode(wave))
    # the clip cache: one entry per decodable clip, reused by the next run (no decoding)
    assert len(list((tmp_path / "cache").glob("*.faces.npy"))) == 6
    out2 = tmp_path / "run2"
    assert stage.main(_args(corpus, out2, tmp_path / "cache", "--task", "audio", "train.epochs=1")) == 0
    s2 = json.loads((out2 / "summary.json").read_text())
    assert s2["timings"]["decode_s_per_clip"] == 0.0 and "l1" not in s2["held_out"]
    assert not (out2 / "generated_vs_real.png").exists()  # audio-only: no generator

    # animate: the still + speech -> mp4 with the generated face and the original audio
    img = tmp_path / "face.png"
    from PIL import Image

    Image.fromarray(np.load(next((tmp_path / "cache").glob("*.faces.npy")))[0]).resize((90, 120)).save(img)
    wav = tmp_path / "speech.wav"
    t = np.arange(int(0.8 * 22050)) / 22050
    sf.write(str(wav), (0.5 * np.sin(2 * np.pi * 180 * t) * (t > 0.3)).astype(np.float32), 22050)
    video = tmp_path / "talking.mp4"
    rc = animate_stage.main(["--model", str(out), "--image", str(img), "--audio", str(wav),
                             "--out", str(video), "--size", "64"])
    assert rc == 0 and video.is_file()
    with av.open(str(video)) as c:
        assert c.streams.audio[0].sample_rate == 22050
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert len(frames) == 20 and frames[0].shape == (64, 64, 3)  # 0.8 s at 25 fps


def test_user_errors_exit_2(corpus, tmp_path, capsys):
    assert stage.main(["--manifest", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o")]) == 2
    assert stage.main(_args(corpus, tmp_path / "o", tmp_path / "c", "--task", "video")) == 2
    assert stage.main(_args(corpus, tmp_path / "o", tmp_path / "c", "window=1")) == 2
    assert stage.main(_args(corpus, tmp_path / "o", tmp_path / "c", "--preset", "huge")) == 2
    assert animate_stage.main(["--model", str(tmp_path), "--image", "x.png", "--audio", "y.wav",
                               "--out", str(tmp_path / "v.mp4")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "window" in err and "task" in err


@pytest.mark.slow
def test_resume_is_exact(corpus, tmp_path, monkeypatch, one_thread):
    extra = ("--task", "visual", "train.epochs=2", "train.checkpoint_every=2")
    full = tmp_path / "full"
    assert stage.main(_args(corpus, full, tmp_path / "cache", *extra)) == 0
    calls = {"n": 0}
    original = vssl_job.loss_fn

    def crashing(model, batch, info):
        calls["n"] += 1
        if calls["n"] == 4:  # after the checkpoint at step 2, before the end
            raise KeyboardInterrupt
        return original(model, batch, info)

    out = tmp_path / "cut"
    monkeypatch.setattr(vssl_job, "loss_fn", crashing)
    with pytest.raises(KeyboardInterrupt):
        stage.main(_args(corpus, out, tmp_path / "cache", *extra))
    monkeypatch.setattr(vssl_job, "loss_fn", original)
    assert stage.main(_args(corpus, out, tmp_path / "cache", *extra, "--resume")) == 0
    a = VSSLModel.from_pretrained(full / "model")
    b = VSSLModel.from_pretrained(out / "model")
    assert a.fingerprint() == b.fingerprint()
    la = {r["step"]: r["loss"] for r in read_jsonl(full / "metrics.jsonl") if r["split"] == "train"}
    lb = {r["step"]: r["loss"] for r in read_jsonl(out / "metrics.jsonl") if r["split"] == "train"}
    assert la and all(la[s] == lb[s] for s in la if s > 2)


@pytest.mark.slow
def test_two_process_run_writes_once_and_ranks_agree(corpus, tmp_path):
    """`accelerate launch` with 2 CPU ranks: DDP over the whole model (loss computed inside the
    wrapped forward), the discriminator on; rank 0 alone writes (no duplicated metrics rows)."""
    import os
    import socket
    import subprocess
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "--main_process_port", str(port), "-m", "vqmae.pipelines.pretrain_vssl",
           *_args(corpus, out, tmp_path / "cache", "--task", "multitask", "model.adversarial_weight=0.01",
                  "train.batch_size=2", "train.epochs=1")]
    proc = subprocess.run(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=600,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = read_jsonl(out / "metrics.jsonl")
    keys = [(r["step"], r["split"]) for r in rows]
    assert len(keys) == len(set(keys)) and {k[1] for k in keys} == {"train", "val"}
    assert "2 process(es)" in proc.stderr
    model = VSSLModel.from_pretrained(out / "model")
    assert model.discriminator is not None

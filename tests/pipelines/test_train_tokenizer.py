"""vqmae train-tokenizer end to end on a tiny generated mp4 corpus (PyAV writes it)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

from vqmae.data.frames import FrameDataConfig, load_frames, split_speakers
from vqmae.data.manifest import ClipRecord, read_manifest, write_manifest
from vqmae.io import read_jsonl
from vqmae.pipelines.train_tokenizer import main, resolve_config
from vqmae.tokenizers import load_tokenizer

FPS, SR = 25, 16000


def _write_clip(path: Path, seconds: float, speaker: int, seed: int, size: int = 48) -> None:
    """A coloured disc (speaker colour) whose radius moves with the loudness of a harmonic tone."""
    import av

    rng = np.random.default_rng(seed)
    n = int(round(seconds * FPS))
    t = np.arange(int(round(seconds * SR))) / SR
    f0 = 110.0 + 40.0 * speaker + 20.0 * rng.random()
    env = 0.5 + 0.5 * np.sin(2 * np.pi * (1.5 + rng.random()) * t)
    wave = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 6)) * env
    wave = (0.5 * wave / np.abs(wave).max()).astype(np.float32)
    colour = np.array([(70 * speaker) % 255, 120, 255 - (50 * speaker) % 255], dtype=np.uint8)
    yy, xx = np.mgrid[0:size, 0:size]
    frames = np.full((n, size, size, 3), 30, dtype=np.uint8)
    for i in range(n):
        r = size * (0.2 + 0.15 * env[min(len(env) - 1, i * SR // FPS)])
        frames[i][(yy - size / 2) ** 2 + (xx - size / 2) ** 2 < r * r] = colour
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as c:
        vs = c.add_stream("libx264", rate=Fraction(FPS))
        vs.height = vs.width = size
        vs.pix_fmt = "yuv420p"
        vs.options = {"crf": "18", "preset": "veryfast"}
        aus = c.add_stream("aac", rate=SR)
        aus.layout = "mono"
        for img in frames:
            for p in vs.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in vs.encode():
            c.mux(p)
        for s in range(0, len(wave), 1024):
            fr = av.AudioFrame.from_ndarray(wave[None, s:s + 1024], format="fltp", layout="mono")
            fr.sample_rate, fr.pts = SR, s
            for p in aus.encode(fr):
                c.mux(p)
        for p in aus.encode():
            c.mux(p)


def make_corpus(root: Path, speakers: int = 3, clips: int = 3, seconds: float = 1.0) -> Path:
    recs = []
    for s in range(speakers):
        for k in range(clips):
            rel = f"clips/spk{s:02d}/c{k}.mp4"
            _write_clip(root / rel, seconds, s, seed=10 * s + k)
            recs.append(ClipRecord(id=f"spk{s:02d}_c{k}", path=rel, speaker=f"spk{s:02d}",
                                   duration=seconds, fps=FPS, sample_rate=SR, dataset="toy"))
    return write_manifest(root, recs, root=root, name="toy", classes=[],
                          extra={"media": {"detect_faces": False, "face_size": 32}})


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return make_corpus(tmp_path_factory.mktemp("toy"))


def _args(corpus: Path, out: Path, modality: str, *extra: str) -> list[str]:
    return ["--modality", modality, "--manifest", str(corpus), "--out", str(out), "--preset", "tiny",
            "train.progress=false", "examples=1", "griffin_lim_iters=4", *extra]


def test_preset_fills_model_and_training_defaults_and_overrides_win():
    req = ["manifest=m.jsonl", "out=o"]
    cfg = resolve_config(["--modality", "visual", "--preset", "paper", "train.epochs=1", *req])
    assert cfg.visual.image_size == 96 and cfg.visual.quantizer.codebook_size == 512
    assert cfg.train.batch_size == 64 and cfg.train.epochs == 1 and cfg.train.optimizer == "adam"
    cfg = resolve_config(["--modality=audio", "preset=demo", "audio.quantizer.codebook_size=128", *req])
    assert cfg.train.batch_size == 256 and cfg.data.frame_stride == 2
    assert cfg.audio.quantizer.codebook_size == 128 and cfg.audio.input_transform == "log"


def test_unknown_preset_or_key_is_a_config_error(capsys):
    assert main(["--modality", "audio", "--preset", "huge", "--manifest", "m", "--out", "o"]) == 2
    assert "preset 'huge'" in capsys.readouterr().err
    assert main(["--modality", "audio", "audio.hiden=3"]) == 2
    assert "did you mean 'audio.hidden'" in capsys.readouterr().err


def test_held_out_speakers_never_train(corpus):
    m = read_manifest(corpus)
    train, val = split_speakers(m.records, seed=0)
    assert {r.speaker for r in train}.isdisjoint({r.speaker for r in val}) and val
    assert split_speakers(m.records, seed=0) == (train, val)


def test_audio_frames_are_decoded_once_per_clip(corpus):
    from vqmae.tokenizers import AudioVQVAE, audio_preset

    m = read_manifest(corpus)
    tok = AudioVQVAE(audio_preset("tiny"))
    fs = load_frames(m, m.records[:2], tok, FrameDataConfig(workers=2), keep_waves=True)
    assert [c.id for c in fs.clips] == [r.id for r in m.records[:2]]
    assert fs.frames.shape[1] == 193 and fs.clips[0].length == 50  # 1 s = 50 frames
    assert fs.clips[0].wave is not None and fs.clips[0].wave.shape == (16000,)
    # the audio-only decode gives exactly load_aligned_clip's audio, without decoding video
    full = load_frames(m, m.records[:2], tok, FrameDataConfig(audio_only_decode=False), keep_waves=True)
    assert np.array_equal(full.clips[1].wave, fs.clips[1].wave)
    assert torch.equal(full.frames, fs.frames)


@pytest.mark.parametrize("modality", ["audio", "visual"])
def test_train_tokenizer_writes_model_quality_plots(corpus, tmp_path, modality):
    out = tmp_path / modality
    if modality == "audio":  # one epoch, then --resume to two: the run continues, it does not restart
        assert main(_args(corpus, out, modality, "train.epochs=1")) == 0
        first = json.loads((out / "quality.json").read_text())["steps"]
        assert main(_args(corpus, out, modality, "train.epochs=2", "--resume")) == 0
        assert json.loads((out / "quality.json").read_text())["steps"] == 2 * first
        val_rows = [r for r in read_jsonl(out / "metrics.jsonl") if r["split"] == "val"]
        assert [r["epoch"] for r in val_rows] == [0, 1]
    else:
        assert main(_args(corpus, out, modality)) == 0
    tok = load_tokenizer(out / "model")
    assert tok.modality == modality
    assert load_tokenizer(out).fingerprint() == tok.fingerprint()  # the run folder works too
    q = json.loads((out / "quality.json").read_text())
    held = q["held_out"]
    assert held["clips"] >= 1 and held["speakers"]
    if modality == "audio":
        assert np.isfinite(held["lsd_db"]) and held["lsd_db"] > 0
        assert list((out / "plots").glob("spectrogram_*.png"))
        wavs = sorted(p.name for p in (out / "examples").glob("*.wav"))
        assert len(wavs) == 3 and any("reconstruction" in w for w in wavs)
        import soundfile as sf

        data, sr = sf.read(str(out / "examples" / wavs[0]))
        assert sr == 16000 and data.shape[0] == 16000
    else:
        assert -1 <= held["ssim"] <= 1 and held["psnr_db"] > 5
        assert list((out / "plots").glob("frames_*.png"))
    assert 0 < held["codes_used_pct"] <= 100 and held["perplexity"] >= 1
    assert (out / "plots" / "codebook_usage.png").is_file()
    assert (out / "plots" / "training_curves.png").is_file()
    rows = read_jsonl(out / "metrics.jsonl")
    assert any(r["split"] == "val" and "codes_used_pct" in r for r in rows)
    assert q["fingerprint"] == tok.fingerprint()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.parametrize("preset_args", [
    ("--preset", "tiny"),                                                   # k-means init + dead codes
    ("--preset", "tiny", "audio.norm=batch", "audio.quantizer.kmeans_init=false"),  # BatchNorm
])
def test_two_process_training_keeps_identical_codebooks(corpus, tmp_path, preset_args):
    """2 CPU ranks (gloo): k-means init, EMA updates and dead-code replacement stay in sync."""
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "--main_process_port", str(_free_port()), "-m", "vqmae.pipelines.train_tokenizer",
           *_args(corpus, out, "audio", "train.batch_size=32", "train.epochs=2"),
           *preset_args]
    proc = subprocess.run(cmd, env=env, timeout=240, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    check = json.loads((out / "ddp_check.json").read_text())
    assert check["world"] == 2 and check["identical"], check
    q = json.loads((out / "quality.json").read_text())
    assert q["held_out"]["codes_used_pct"] > 0
    tok = load_tokenizer(out / "model")
    assert bool(tok.quantizer.vq._codebook.initted)
    assert torch.isfinite(tok.quantizer.codebook).all()

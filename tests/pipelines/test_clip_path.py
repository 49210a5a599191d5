"""One clip path: for the same clip, the tokenizer-training frames (``load_frames``), the stored
tokens (``vqmae tokenize``) and ``predict``'s inputs are identical; the audio-only fast path
gives the samples of the full path."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from support.media import write_clip

from vqmae.data.clips import ClipConfig, load_aligned_clip, load_clip, resolve_clip_config
from vqmae.data.frames import FrameDataConfig, input_to_uint8, load_frames
from vqmae.data.manifest import ClipRecord, read_manifest, write_manifest
from vqmae.data.token_store import TokenStore
from vqmae.evaluation.prediction import file_inputs, file_tokens, model_clip_config
from vqmae.pipelines import tokenize
from vqmae.tokenizers import AudioVQVAE, VisualVQVAE, audio_preset, visual_preset

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("clip_path")
    records = []
    for i, secs in enumerate((1.0, 1.3)):
        write_clip(root / "media" / f"c{i}.mp4", seconds=secs, size=(64, 48), seed=i)
        records.append(ClipRecord(id=f"c{i}", path=f"media/c{i}.mp4", speaker=f"s{i}", label=i))
    write_manifest(root, records, root=root, name="clip-path", classes=["x", "y"])
    a, v = audio_preset("tiny"), visual_preset("tiny")
    a.quantizer = dataclasses.replace(a.quantizer, kmeans_init=False)
    v.quantizer = dataclasses.replace(v.quantizer, kmeans_init=False)
    torch.manual_seed(0)
    toks = {"audio": AudioVQVAE(a).eval(), "visual": VisualVQVAE(v).eval()}
    for m, tok in toks.items():
        tok.save_pretrained(root / f"tok_{m}")
    common = ["--manifest", str(root / "manifest.jsonl"), "--detect-faces", "false", "--num-workers", "0",
              "--progress", "false"]
    assert tokenize.main([*common, "--audio-tokenizer", str(root / "tok_audio"), "--visual-tokenizer",
                          str(root / "tok_visual"), "--out", str(root / "store")]) == 0
    assert tokenize.main([*common, "--audio-tokenizer", str(root / "tok_audio"), "--out", str(root / "audio_store")]) == 0
    return root, toks


def test_training_frames_stored_tokens_and_predict_inputs_are_identical(setup):
    root, toks = setup
    manifest = read_manifest(root / "manifest.jsonl")
    store = TokenStore.open(root / "store")
    info = {"clip_config": store.meta["clip_config"]}  # what finetune records with the model
    clip_cfg = model_clip_config(info, toks)
    data = FrameDataConfig(detect_faces=False, workers=1)
    frames = {m: load_frames(manifest, manifest.records, tok, data) for m, tok in toks.items()}
    for i, rec in enumerate(manifest.records):
        path = str(manifest.media_path(rec))
        x, _ = file_inputs(path, clip_cfg, toks)
        codes, _ = file_tokens(path, clip_cfg, toks, torch.device("cpu"))
        # audio: training frames == predict's input, and their tokens == the stored ones
        torch.testing.assert_close(frames["audio"].prepared(i), x["audio"], rtol=0, atol=0)
        stored_a = np.asarray(store.read(rec.id, "audio"))
        np.testing.assert_array_equal(toks["audio"].encode(frames["audio"].prepared(i)).numpy(), stored_a)
        np.testing.assert_array_equal(codes["audio"], stored_a)
        # visual: training frames (uint8) == predict's input; stored tokens == predict's tokens
        torch.testing.assert_close(frames["visual"].clip_frames(i), input_to_uint8(x["visual"]), rtol=0, atol=0)
        stored_v = np.asarray(store.read(rec.id, "visual"))
        np.testing.assert_array_equal(toks["visual"].encode(x["visual"]).numpy(), stored_v)
        np.testing.assert_array_equal(codes["visual"], stored_v)


def test_audio_only_path_gives_the_full_path_samples(setup):
    root, toks = setup
    full, audio_only = TokenStore.open(root / "store"), TokenStore.open(root / "audio_store")
    for c in full.clips:
        np.testing.assert_array_equal(np.asarray(audio_only.read(c.id, "audio")), np.asarray(full.read(c.id, "audio")))
    cfg = ClipConfig(detect_faces=False)
    for path in sorted((root / "media").glob("*.mp4")):
        a = load_clip(path, cfg, modalities=("audio",))
        b = load_aligned_clip(path, cfg)
        np.testing.assert_array_equal(a.audio, b.audio)
        assert a.faces is None and a.num_frames == b.num_frames and a.peak == b.peak


def test_one_place_resolves_clip_settings(setup):
    root, toks = setup
    store = TokenStore.open(root / "store")
    from_store = resolve_clip_config(store.meta["clip_config"], toks)
    from_dataset = resolve_clip_config(Path(root / "manifest.jsonl"), toks, detect_faces=False)
    assert dataclasses.asdict(from_store) == {**dataclasses.asdict(from_dataset), "face_cache_dir": ""}
    assert resolve_clip_config(None, backend="", detect_faces=None) == ClipConfig()


def test_noise_evaluation_decodes_the_clean_audio_as_tokenize_did(setup):
    """evaluation/noise re-tokenizes the clean audio through the same clip path: all tokens agree."""
    from vqmae.evaluation.noise import NoisyAudioTokens

    root, _ = setup
    for name in ("store", "audio_store"):
        noisy = NoisyAudioTokens(TokenStore.open(root / name))
        assert noisy.check_clean(range(2)) == 1.0

"""Per-speaker code frequencies and speaker-normalised token models."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from vqmae.data.memory_store import MemoryTokenStore
from vqmae.data.speaker_reference import (
    code_frequencies,
    reference_inputs,
    speaker_code_frequencies,
    with_speaker_reference,
)
from vqmae.data.token_dataset import TokenDataset
from vqmae.mae.classifier import ClassifierConfig, EmotionClassifier
from vqmae.mae.config import mae_preset
from vqmae.mae.patching import patchify


def test_code_frequencies_counts_each_position():
    a = np.array([[0, 1], [0, 2], [3, 2]])  # 3 frames x 2 positions, codebook 4
    b = np.array([[0, 1]])
    f = code_frequencies([a, b], 4)
    assert f.shape == (2, 4)
    np.testing.assert_allclose(f.sum(1), 1.0)
    np.testing.assert_allclose(f[0], [3 / 4, 0, 0, 1 / 4])
    np.testing.assert_allclose(f[1], [0, 2 / 4, 2 / 4, 0])
    with pytest.raises(ValueError, match="outside the codebook"):
        code_frequencies([np.array([[4, 0]])], 4)


def _store(cfg, speakers=("s1", "s1", "s2"), seed=0):
    rng = np.random.default_rng(seed)
    rows, toks = [], []
    for i, spk in enumerate(speakers):
        rows.append({"id": f"c{i}", "speaker": spk, "label": i % 2})
        toks.append({
            "audio": rng.integers(0, cfg.audio_codebook_size, (cfg.audio_frames * 2, *cfg.audio_token_shape)),
            "visual": rng.integers(0, cfg.visual_codebook_size, (cfg.visual_frames * 2, *cfg.visual_token_shape)),
        })
    prov = {"audio": {"token_shape": list(cfg.audio_token_shape), "codebook_size": cfg.audio_codebook_size,
                      "frames_per_second": 20.0},
            "visual": {"token_shape": list(cfg.visual_token_shape), "codebook_size": cfg.visual_codebook_size,
                       "frames_per_second": 10.0}}
    return MemoryTokenStore.from_arrays(rows, toks, prov, ["a", "b"]), toks


def test_speaker_references_use_all_clips_of_the_speaker():
    cfg = mae_preset("tiny")
    store, toks = _store(cfg)
    refs = speaker_code_frequencies(store)
    assert sorted(refs) == ["s1", "s2"]
    want = code_frequencies([toks[0]["audio"], toks[1]["audio"]], cfg.audio_codebook_size)
    np.testing.assert_allclose(refs["s1"]["audio"].numpy(), want)
    assert refs["s2"]["visual"].shape == (math.prod(cfg.visual_token_shape), cfg.visual_codebook_size)
    ds = with_speaker_reference(TokenDataset(store, None, 1.0, "all"), refs)
    item = ds[len(ds) - 1]  # a window of the s2 clip
    assert torch.equal(item["audio_ref"], refs["s2"]["audio"])
    assert len(ds) == len(ds.dataset) and ds.modalities == ("audio", "visual")


def test_reference_of_constant_codes_centres_them_to_zero():
    """A speaker who always uses the same codes: its reference is those codes' embeddings."""
    cfg = mae_preset("tiny")
    enc = EmotionClassifier(ClassifierConfig(encoder=cfg, num_classes=2, speaker_norm=True)).encoder
    frame = torch.randint(0, cfg.visual_codebook_size, (2, 1, *cfg.visual_token_shape))
    tokens = frame.expand(-1, cfg.visual_frames, *cfg.visual_token_shape)
    onehot = torch.nn.functional.one_hot(frame[:, 0].reshape(2, -1), cfg.visual_codebook_size).float()
    ref = enc.reference_patches("visual", onehot, cfg.visual_frames)
    codes = enc.embed["visual"].codes(patchify(tokens, enc.specs["visual"].patch))
    assert ref.shape == codes.shape
    torch.testing.assert_close(codes - ref, torch.zeros_like(codes))


def test_speaker_normalised_classifier_needs_and_uses_references():
    cfg = mae_preset("tiny")
    store, _ = _store(cfg)
    model = EmotionClassifier(ClassifierConfig(encoder=cfg, num_classes=2, speaker_norm=True)).eval()
    batch = next(iter(torch.utils.data.DataLoader(
        with_speaker_reference(TokenDataset(store, None, 1.0, "all"), model), batch_size=4)))
    with pytest.raises(ValueError, match="speaker-normalised: give audio_ref"):
        model(audio=batch["audio"])
    refs = reference_inputs(batch, ("audio", "visual"))
    out = model(audio=batch["audio"], visual=batch["visual"], **refs)
    assert out.shape == (4, 2)
    # another speaker's reference changes the output: the reference is used
    other = {k: torch.softmax(torch.randn(v.shape, generator=torch.Generator().manual_seed(1)), -1)
             for k, v in refs.items()}
    assert not torch.allclose(out, model(audio=batch["audio"], visual=batch["visual"], **other))
    plain = EmotionClassifier(ClassifierConfig(encoder=cfg, num_classes=2))
    assert with_speaker_reference(batch, plain) is batch  # a model without speaker_norm: unchanged

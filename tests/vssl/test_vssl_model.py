"""Visually guided SSL models: shapes, targets, settings, losses, model folders (fast tests)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from vqmae.checkpoint import load_pretrained
from vqmae.config import ConfigError, config_from_dict
from vqmae.vssl import (
    AudioEncoder,
    PaseTargets,
    VSSLConfig,
    VSSLModel,
    mouth_mask,
    to_model_images,
    to_uint8_images,
    vssl_loss,
    vssl_model_preset,
)
from vqmae.vssl.data import ClipWindows, DecodedClip, collate
from vqmae.vssl.generator import audio_windows

SPF = 640


def test_shapes(one_thread):
    m = VSSLModel(vssl_model_preset("tiny", task="multitask")).eval()
    wave = torch.randn(3, 10 * SPF + 123)  # a partial frame at the end is dropped
    feats = m.encoder.encode(wave)
    assert feats.shape == (3, 10, 32) and m.encoder.out_dim == 32 and m.encoder.frame_rate == 25.0
    assert m.encoder.encode(wave[0]).shape == (1, 10, 32)
    still = to_model_images(torch.randint(0, 256, (3, 32, 32, 3), dtype=torch.uint8))
    assert still.shape == (3, 3, 32, 32) and still.min() >= -1 and still.max() <= 1
    out = m(wave, still)
    assert out["frames"].shape == (3, 10, 3, 32, 32) and out["targets"].shape == (3, 10, 18)
    assert out["frames"].abs().max() <= 1
    assert to_uint8_images(out["frames"]).shape == (3, 10, 32, 32, 3)
    assert m.standard_targets(wave).shape == (3, 10, 18)
    with pytest.raises(ValueError, match="shorter than one video frame"):
        m.encoder.encode(torch.zeros(1, 100))
    audio_only = VSSLModel(vssl_model_preset("tiny", task="audio"))
    assert audio_only.identity is None and "frames" not in audio_only(wave, still)
    with pytest.raises(RuntimeError, match="no frame generator"):
        audio_only.generate(wave, still)
    assert VSSLModel(vssl_model_preset("tiny", task="visual")).pretext_head is None


def test_audio_windows_take_the_neighbouring_steps():
    x = torch.arange(5.0)[None, :, None]  # (1, T=5, D=1)
    w = audio_windows(x, 2)
    assert w.shape == (1, 5, 5)
    assert w[0, 0].tolist() == [0, 0, 0, 1, 2] and w[0, 2].tolist() == [0, 1, 2, 3, 4]
    assert w[0, 4].tolist() == [2, 3, 4, 4, 4]
    assert torch.equal(audio_windows(x, 0), x)


def test_feature_frame_t_depends_on_audio_near_t(one_thread):
    enc = AudioEncoder(vssl_model_preset("tiny").encoder.__class__(rnn="none", conv_layers=1, dim=8)).eval()
    wave = torch.randn(1, 20 * SPF) * 0.1
    louder = wave.clone()
    louder[:, 15 * SPF:16 * SPF] *= 10  # change frame 15 only
    diff = (enc.encode(wave) - enc.encode(louder)).abs().sum(-1)[0]
    assert diff[15] > 0 and torch.all(diff[:12] == 0)  # conv receptive field is local


def test_mouth_mask_is_the_lower_middle():
    m = mouth_mask(30, top=0.6, left=0.2)
    assert m.sum() == 12 * 18 and m[18:, 6:24].all() and not m[:18].any() and not m[:, :6].any()


def _harmonic(f0: float, seconds: float = 1.0, sr: int = 16000) -> torch.Tensor:
    t = torch.arange(int(seconds * sr)) / sr
    return sum(torch.sin(2 * math.pi * f0 * k * t) / k for k in range(1, 8)) * 0.3


def test_pase_targets_measure_voicing_pitch_energy_and_brightness():
    p = PaseTargets()
    names = p.names()
    assert len(names) == p.num_targets == 18
    col = {n: i for i, n in enumerate(names)}
    voiced = p(_harmonic(150.0)[None])[0]
    noise = p(torch.randn(1, 16000) * 0.3)[0]
    quiet = p(_harmonic(150.0)[None] * 0.01)[0]
    assert voiced.shape == (25, 18)
    mid = slice(3, 22)
    assert voiced[mid, col["voicing"]].min() > 0.8 and noise[mid, col["voicing"]].max() < 0.45
    f0 = 100 * 2 ** voiced[mid, col["log_f0"]]
    assert torch.allclose(f0, torch.full_like(f0, 150.0), rtol=0.03)
    assert torch.all(noise[mid, col["log_f0"]] == 0)  # unvoiced
    energy_gap = (voiced[mid, col["log_energy"]] - quiet[mid, col["log_energy"]]).mean()
    assert energy_gap == pytest.approx(2 * math.log(100), rel=0.02)
    assert noise[mid, col["centroid"]].mean() > 2 * voiced[mid, col["centroid"]].mean()
    assert noise[mid, col["log_flatness"]].mean() > voiced[mid, col["log_flatness"]].mean() + 1


def test_settings_are_range_checked():
    with pytest.raises(ConfigError, match="n_mels"):
        config_from_dict(VSSLConfig, {"encoder": {"n_mels": 2}})
    with pytest.raises(ConfigError, match="mouth_top"):
        config_from_dict(VSSLConfig, {"mouth_top": 1.5})
    with pytest.raises(ConfigError, match="task"):
        config_from_dict(VSSLConfig, {"task": "video"})
    with pytest.raises((ConfigError, ValueError), match="multiple of"):
        config_from_dict(VSSLConfig, {"generator": {"face_size": 40, "levels": 4}})
    with pytest.raises((ConfigError, ValueError), match="must divide"):
        config_from_dict(VSSLConfig, {"encoder": {"hop_length": 150}})


@pytest.mark.parametrize("task", ["visual", "audio", "multitask"])
def test_loss_falls_on_a_tiny_batch(task, tiny_clips, one_thread):
    torch.manual_seed(0)
    clips, _ = tiny_clips
    m = VSSLModel(vssl_model_preset("tiny", task=task, adversarial_weight=0.05 if task == "visual" else 0.0))
    batch = collate([ClipWindows(clips, window=6, deterministic=True)[i] for i in (0, 5)])
    m.fit_normalization(list(batch["audio"]))
    opt = torch.optim.Adam(m.parameters(), lr=3e-3)
    losses = []
    for _ in range(20):
        loss, metrics = vssl_loss(m, batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        assert "loss" not in metrics  # the training loop logs the loss itself
        losses.append(metrics["l1"] if task == "visual" else float(loss.detach()))
    assert losses[-1] < 0.5 * losses[0], losses
    if task == "visual":
        assert {"g_adv", "d_loss", "mouth_l1", "face_l1"} <= set(metrics)


def test_the_still_frame_is_never_a_target():
    faces = np.arange(12, dtype=np.uint8)[:, None, None, None] * np.ones((1, 4, 4, 3), np.uint8)
    clip = DecodedClip(faces, np.zeros(12 * SPF, np.float32))
    ds = ClipWindows([clip], window=5, items_per_clip=20, seed=3)
    for epoch in (0, 1):
        ds.set_epoch(epoch)
        for i in range(len(ds)):
            it = ds[i]
            still = int(it["still"][0, 0, 0])
            targets = it["frames"][:, 0, 0, 0].tolist()
            assert it["audio"].shape == (5 * SPF,) and it["frames"].shape == (5, 4, 4, 3)
            assert still not in targets
    ds.set_epoch(0)
    assert torch.equal(ds[7]["frames"], ds[7]["frames"])  # (seed, epoch, index) decides
    short = ClipWindows([DecodedClip(faces[:4], np.zeros(4 * SPF, np.float32))], window=5)
    it = short[0]
    assert it["frame_mask"].tolist().count(0) == 2  # padded frame + the still inside the window
    assert collate([it, it])["frames"].shape == (2, 5, 4, 4, 3)


def test_model_folder_round_trip(tmp_path, one_thread):
    m = VSSLModel(vssl_model_preset("tiny", task="multitask", adversarial_weight=0.1)).eval()
    m.fit_normalization([torch.randn(8 * SPF) * 0.2])
    m.save_pretrained(tmp_path / "model")
    assert {"config.json", "model.safetensors"} <= {p.name for p in (tmp_path / "model").iterdir()}
    back = VSSLModel.from_pretrained(tmp_path / "model")
    assert back.fingerprint() == m.fingerprint() and back.discriminator is not None
    wave = torch.randn(2, 6 * SPF)
    still = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        a, b = m(wave, still), back(wave, still)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert torch.equal(back.target_mean, m.target_mean)
    # the model as accelerate's save_state writes it (safetensors save_model, no copies): every tensor owns its
    # storage (torchaudio's STFT window was a view, which safetensors refused: --resume crashed)
    from safetensors.torch import save_model

    save_model(m, str(tmp_path / "raw.safetensors"))
    enc = m.export_encoder()
    enc.save_pretrained(tmp_path / "enc")
    loaded = load_pretrained(tmp_path / "enc")
    assert isinstance(loaded, AudioEncoder) and torch.equal(loaded.mel_mean, m.encoder.mel_mean)
    with torch.no_grad():
        assert torch.equal(loaded.encode(wave), m.encoder.encode(wave))


def test_clip_cache_decodes_once_and_notices_a_changed_file(tmp_path):
    from vqmae.vssl.data import ClipCache

    media = tmp_path / "clip.mp4"
    media.write_bytes(b"x")
    calls = []

    def decode(path):
        calls.append(path)
        return DecodedClip(np.full((3, 4, 4, 3), len(calls), np.uint8), np.zeros(3 * SPF, np.float32))

    cache = ClipCache(tmp_path / "cache", decode, {"face_size": 4})
    a = cache.get(media, id="c1")
    b = cache.get(media, id="c1")
    assert len(calls) == 1 and (cache.hits, cache.misses) == (1, 1) and b.id == "c1"
    assert np.array_equal(a.faces, b.faces) and not b.faces.flags.writeable  # memory-mapped
    assert ClipWindows([b], window=2)[0]["frames"].numpy().flags.writeable  # items are copies
    media.write_bytes(b"changed")  # new size -> new key -> decoded again
    assert int(cache.get(media).faces[0, 0, 0, 0]) == 2 and len(calls) == 2
    other = ClipCache(tmp_path / "cache", decode, {"face_size": 8})  # other settings: other entry
    other.get(media)
    assert len(calls) == 3


def test_exported_encoder_loads_into_the_classifier(tmp_path, one_thread):
    from vqmae.vssl.classifier import VSSLClassifier

    m = VSSLModel(vssl_model_preset("tiny", task="audio"))
    m.fit_normalization([torch.randn(8 * SPF) * 0.2])
    m.export_encoder().save_pretrained(tmp_path / "enc")
    clf = VSSLClassifier.from_encoder(tmp_path / "enc", num_classes=6, num_targets=2)
    wave = torch.randn(3, 12 * SPF) * 0.2
    clf.eval()
    with torch.no_grad():
        assert clf(wave=wave).shape == (3, 8) and clf.forward_features(wave).shape == (3, 12, 32)
        assert clf.forward_head(clf.forward_features(wave), pre_logits=True).shape == (3, 32)
        assert torch.equal(clf.encoder.encode(wave), m.encoder.encode(wave))
    clf.freeze_encoder()
    assert not any(p.requires_grad for p in clf.encoder.parameters())
    assert all(p.requires_grad for p in clf.head.parameters())
    clf.save_pretrained(tmp_path / "clf")
    back = load_pretrained(tmp_path / "clf")
    with torch.no_grad():
        assert torch.allclose(back(wave=wave), clf(wave=wave), atol=1e-6)  # frozen GRU: other kernel


def test_logreg_features_are_the_mean_and_std_over_time(one_thread):
    """The linear probe's frozen features of a VSSL classifier: per clip, the mean over its windows
    of the encoder outputs' mean and std over time ``(2 D,)``; ``forward`` is the pooled head's."""
    from vqmae.evaluation.logreg_probe import clip_features
    from vqmae.vssl.classifier import VSSLClassifier, VSSLClassifierConfig

    torch.manual_seed(0)
    clf = VSSLClassifier(VSSLClassifierConfig(encoder=vssl_model_preset("tiny").encoder, num_classes=3)).eval()
    wave = torch.randn(4, 10 * SPF) * 0.2
    with torch.no_grad():
        feats = clf.forward_features(wave)  # (4, 10, 32)
        stats = clf.position_statistics(feats)
        assert stats.shape == (4, 64)
        torch.testing.assert_close(stats[:, :32], feats.mean(1))
        torch.testing.assert_close(stats[:, 32:], feats.var(1, unbiased=False).sqrt())
        w = torch.softmax(clf.score(feats).squeeze(-1), 1)[..., None]
        torch.testing.assert_close(clf(wave=wave), clf.head(clf.norm((w * feats).sum(1))))

    class Windows(torch.utils.data.Dataset):  # clip 0: windows 0, 1; clip 1: windows 2, 3
        modalities = ("wave",)

        def __len__(self):
            return 4

        def __getitem__(self, i):
            return {"wave": wave[i], "clip": i // 2}

    clips, x = clip_features(clf, Windows(), batch_size=3)
    assert clips.tolist() == [0, 1] and x.shape == (2, 64)
    np.testing.assert_allclose(x, [stats[:2].mean(0).numpy(), stats[2:].mean(0).numpy()], rtol=1e-5, atol=1e-6)


def test_animate_renders_every_frame_whatever_the_chunk(one_thread):
    from vqmae.vssl.animate import animate

    m = VSSLModel(vssl_model_preset("tiny", task="visual")).eval()
    face = np.random.default_rng(0).integers(0, 256, (40, 40, 3), dtype=np.uint8)  # resized to 32
    wave = np.random.default_rng(1).standard_normal(13 * SPF + 50).astype(np.float32) * 0.1
    a = animate(m, face, wave, chunk=4)
    b = animate(m, face, wave, chunk=64)
    assert a.shape == (13, 32, 32, 3) and a.dtype == np.uint8
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 1  # same frames (float rounding aside)
    with pytest.raises(ValueError, match="no face generator"):
        animate(VSSLModel(vssl_model_preset("tiny", task="audio")), face, wave)


def test_linear_probe_reports_uar_ccc_and_noise(one_thread):
    from vqmae.vssl.probe import probe

    enc = AudioEncoder(vssl_model_preset("tiny").encoder)
    rng = np.random.default_rng(0)
    labels = np.array([0, 1] * 8)
    # class 1 is louder: a probe on any log-mel encoder separates it
    waves = [rng.standard_normal(5 * SPF).astype(np.float32) * (0.5 if y else 0.05) for y in labels]
    groups = np.repeat(np.arange(4), 4)
    res = probe(enc, waves, labels, groups, arousal=labels * 1.0, snrs=(0.0,), folds=4)
    assert set(res) == {"uar", "uar_0dB", "ccc_arousal"}
    assert res["uar"]["mean"] == 1.0 and res["ccc_arousal"]["mean"] > 0.5

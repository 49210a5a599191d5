"""EmotionClassifier: pretrained encoder loading, timm-style API, heads, missing modalities, probes."""

from __future__ import annotations

import pytest
import torch

from vqmae.checkpoint import ModelFolderError, load_pretrained
from vqmae.mae import VQMAEAV, mae_preset
from vqmae.mae.classifier import ClassifierConfig, EmotionClassifier, load_classifier, mae_config_of
from vqmae.mae.config import MAEConfigError
from vqmae.mae.heads import PoolingHead, Query2EmoHead, make_head

pytestmark = pytest.mark.usefixtures("one_thread")


B = 3


def tokens(cfg, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    out = {}
    for m in cfg.modalities:
        s = cfg.spec(m)
        out[m] = torch.randint(0, s.codebook_size, (B, s.frames, *s.token_shape), generator=g)
    return out


@pytest.fixture(scope="module")
def mae_dir(tmp_path_factory):
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("mae")
    VQMAEAV(mae_preset("tiny", contrastive=True)).save_pretrained(folder)
    return folder


def test_pretrained_encoder_loads_and_reports_exactly_the_head_as_missing(mae_dir):
    mae = load_pretrained(mae_dir)
    model, report = EmotionClassifier.from_mae(mae_dir, num_classes=6)
    head_keys = sorted(k for k in model.state_dict() if k.startswith("head."))
    assert report.missing == head_keys  # only the new head is random
    assert report.loaded == sorted(k for k in mae.state_dict() if k.startswith("encoder."))
    assert any(k.startswith("decoder.") for k in report.ignored)  # the decoder is ignored
    assert any(k.startswith("pool.") for k in report.ignored)  # so is the contrastive pooling
    assert not any(k.startswith("encoder.") for k in report.ignored)
    for k, v in mae.state_dict().items():
        if k.startswith("encoder."):
            assert torch.equal(model.state_dict()[k], v), k
    # the same architecture from random init differs
    scratch, none = EmotionClassifier.from_mae(mae_dir, pretrained=False, num_classes=6)
    assert none is None
    assert not torch.equal(scratch.state_dict()["encoder.pos_embed.audio"], mae.state_dict()["encoder.pos_embed.audio"])


def test_unimodal_classifier_from_audiovisual_mae(mae_dir):
    model, report = EmotionClassifier.from_mae(mae_dir, modalities=("audio",), num_classes=4)
    assert all("visual" not in k for k in model.state_dict())
    assert any("encoder.embed.visual" in k for k in report.ignored)
    x = tokens(mae_config_of(mae_dir))
    assert model(audio=x["audio"]).shape == (B, 4)
    with pytest.raises(ValueError, match="takes"):
        model(visual=x["visual"])


def test_mismatched_pretrained_folder_is_refused(mae_dir, tmp_path):
    other = tmp_path / "other"
    VQMAEAV(mae_preset("tiny", width=64, heads=4, decoder_heads=4)).save_pretrained(other)
    model = EmotionClassifier(ClassifierConfig(encoder=mae_preset("tiny"), num_classes=3))
    with pytest.raises(ModelFolderError, match="do not fit"):
        model.load_pretrained_encoder(other)


@pytest.mark.parametrize("head", ["attention", "mean", "query2emo"])
def test_timm_api_and_every_parameter_gets_a_gradient(head):
    cfg = mae_preset("tiny")
    model = EmotionClassifier(ClassifierConfig(encoder=cfg, num_classes=5, num_targets=2, head=head))
    x = tokens(cfg)
    feats = model.forward_features(**x)
    assert set(feats) == {"audio", "visual"}
    assert feats["audio"].shape == (B, cfg.spec("audio").num_patches, cfg.width)
    out = model.forward_head(feats)
    assert out.shape == (B, 7)
    pooled = model.forward_head(feats, pre_logits=True)
    assert pooled.shape == (B, model.num_features)
    logits, affect = model.split_outputs(out)
    assert logits.shape == (B, 5) and affect.shape == (B, 2)
    # every parameter except the missing-modality stand-ins (unused when both are given) learns
    out.sum().backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert [n for n in no_grad if "missing" not in n] == []
    # with one modality given, the stand-in of the other gets gradient
    model.zero_grad()
    model(audio=x["audio"]).sum().backward()
    if head != "query2emo":
        assert model.head.missing["visual"].grad.abs().sum() > 0
    # reset_classifier: a new output layer
    model.reset_classifier(8, num_targets=0)
    assert model(**x).shape == (B, 8) and model.num_classes == 8 and model.num_targets == 0


def test_audiovisual_model_with_a_modality_missing():
    cfg = mae_preset("tiny")
    model = EmotionClassifier(ClassifierConfig(encoder=cfg, num_classes=3)).eval()
    x = tokens(cfg)
    both, a, v = model(**x), model(audio=x["audio"]), model(visual=x["visual"])
    assert both.shape == a.shape == v.shape == (B, 3)
    assert not torch.allclose(both, a) and not torch.allclose(a, v)
    with pytest.raises(ValueError):
        model()


def test_linear_probe_freezes_the_encoder():
    cfg = mae_preset("tiny", drop_path=0.1)
    model = EmotionClassifier(ClassifierConfig(encoder=cfg, num_classes=3))
    model.freeze_encoder()
    model.train()
    assert not model.encoder.training and model.head.training
    assert all(not p.requires_grad for p in model.encoder.parameters())
    model(**tokens(cfg)).sum().backward()
    assert all(p.grad is None for p in model.encoder.parameters())
    assert model.head.fc.weight.grad is not None


def test_save_and_load_round_trip(tmp_path):
    cfg = mae_preset("tiny")
    model = EmotionClassifier(ClassifierConfig(encoder=cfg, num_classes=2, classes=["a", "b"], head="query2emo"))
    model.info = {"task": {"kind": "classify", "classes": ["a", "b"], "target_names": []}}
    model.save_pretrained(tmp_path / "m")
    loaded, info = load_classifier(tmp_path / "m")
    assert info == model.info and loaded.config == model.config
    x = tokens(cfg)
    model.eval()
    assert torch.allclose(model(**x), loaded(**x))
    with pytest.raises(ModelFolderError, match="not a fine-tuned"):
        load_classifier_of_mae(tmp_path)


def load_classifier_of_mae(tmp_path):
    VQMAEAV(mae_preset("tiny")).save_pretrained(tmp_path / "mae")
    return load_classifier(tmp_path / "mae")


def test_config_checks():
    with pytest.raises(MAEConfigError):
        ClassifierConfig(encoder=mae_preset("tiny", modalities=("audio",)), modalities=("visual",))
    with pytest.raises(MAEConfigError):
        ClassifierConfig(encoder=mae_preset("tiny"), num_classes=0, num_targets=0)


def test_heads_alone():
    feats = {"audio": torch.randn(2, 7, 16), "visual": torch.randn(2, 5, 16)}
    h = make_head("attention", ["audio", "visual"], 16, 4)
    assert isinstance(h, PoolingHead) and h(feats).shape == (2, 4) and h(feats, pre_logits=True).shape == (2, 32)
    q = make_head("query2emo", ["audio", "visual"], {"audio": 16, "visual": 8}, 3)
    assert isinstance(q, Query2EmoHead)
    out = q({"audio": feats["audio"], "visual": torch.randn(2, 5, 8)})
    assert out.shape == (2, 3)
    assert q({"audio": feats["audio"]}).shape == (2, 3)  # one modality missing
    with pytest.raises(ValueError):
        make_head("max", ["audio"], 16, 2)


def test_code_readout_and_codebook_init(tmp_path):
    """The code read-out adds a linear function of the window's mean code embeddings (zero at
    start), learns, survives save/load and reset; codebook init puts the tokenizer's geometry in."""
    cfg = mae_preset("tiny")
    x = tokens(cfg)
    torch.manual_seed(0)
    plain = EmotionClassifier(ClassifierConfig(encoder=cfg, num_classes=3)).eval()
    torch.manual_seed(0)
    model = EmotionClassifier(ClassifierConfig(encoder=cfg, num_classes=3, code_readout=True)).eval()
    torch.testing.assert_close(model(**x), plain(**x))  # zero-initialised read-out
    stats = model.code_statistics("audio", x["audio"])
    assert stats.shape == (B, 2 * cfg.spec("audio").token_shape[0] * cfg.audio_embed_dim)
    emb = model.encoder.embed["audio"].codes(x["audio"].long())  # (B, T, P, e): mean, then std over T
    torch.testing.assert_close(stats[:, : stats.shape[1] // 2], emb.mean(1).flatten(1))
    torch.testing.assert_close(stats[:, stats.shape[1] // 2:], emb.std(1, correction=0).flatten(1))
    model.train()
    model(**x).sum().backward()
    assert model.readout["audio"].weight.grad.abs().sum() > 0 and model.readout["visual"].weight.grad.abs().sum() > 0
    with torch.no_grad():
        model.readout["visual"].weight.normal_()
    model.eval()
    assert not torch.allclose(model(**x), plain(**x))
    model.save_pretrained(tmp_path / "m")
    loaded, _ = load_classifier(tmp_path / "m")
    torch.testing.assert_close(loaded(**x), model(**x))
    model.reset_classifier(5)
    assert model(**x).shape == (B, 5) and model.readout["audio"].out_features == 5

    codebook = torch.randn(cfg.audio_codebook_size, 3) * 5 + 2
    emb = model.encoder.embed["audio"]
    emb.init_from_codebook(codebook)
    w = emb.codes.weight
    torch.testing.assert_close(w[:, :3].mean(0), torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(w[:, :3], (codebook - codebook.mean(0)) / codebook.std(0))
    assert w[:, 3:].abs().sum() == 0
    with pytest.raises(ValueError, match="codebook of"):
        emb.init_from_codebook(codebook[:5])


def test_position_statistics_keep_positions_and_ignore_time_order():
    """Frozen features for probes: per patch position, mean and std over the window's time steps
    of the encoder outputs; the same numbers whatever the order of the time steps, different
    ones when two positions swap their outputs."""
    cfg = mae_preset("tiny")
    torch.manual_seed(0)
    model = EmotionClassifier(ClassifierConfig(encoder=cfg, num_classes=3)).eval()
    with torch.no_grad():
        feats = model.forward_features(**tokens(cfg))
    stats = model.position_statistics(feats)
    sizes = {m: feats[m].shape[1] // cfg.spec(m).grid[0] for m in cfg.modalities}  # P_m
    assert stats.shape == (B, sum(2 * p * cfg.width for p in sizes.values()))
    a = feats["audio"].reshape(B, cfg.spec("audio").grid[0], sizes["audio"], cfg.width)
    torch.testing.assert_close(stats[:, : sizes["audio"] * cfg.width], a.mean(1).flatten(1))
    torch.testing.assert_close(stats[:, sizes["audio"] * cfg.width: 2 * sizes["audio"] * cfg.width],
                               a.std(1, correction=0).flatten(1))
    shuffled = dict(feats, audio=a.flip(1).reshape(B, -1, cfg.width))  # time steps reversed
    torch.testing.assert_close(model.position_statistics(shuffled), stats)
    moved = dict(feats, audio=a.flip(2).reshape(B, -1, cfg.width))  # positions swapped
    assert not torch.allclose(model.position_statistics(moved), stats)
    assert model.position_statistics({"visual": feats["visual"]}).shape[1] == 2 * sizes["visual"] * cfg.width

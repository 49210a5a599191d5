"""Tokenizers: reference stacks and token shapes, exact eval-mode round trips, gradients, learning."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from vqmae.data.frames import AudioFrameDataset, ClipSpan, FrameSet
from vqmae.tokenizers import (
    AUDIO_PRESETS,
    VISUAL_PRESETS,
    AudioVQVAE,
    Tokenizer,
    VisualVQVAE,
    audio_preset,
    load_tokenizer,
    visual_preset,
)

# ------------------------------------------------------------------ the reference layer lists
# (kind, in, out, kernel, stride, padding, bias) in module order, from ../shared/REFERENCE.md
# "Audio tokenizer" / "Visual tokenizer" (residual blocks: conv k3 no bias, conv k1 no bias).
AUDIO_ENCODER = [
    ("Conv1d", 1, 16, 4, 2, 1, True), ("BatchNorm1d", 16),
    ("Conv1d", 16, 32, 4, 2, 1, True), ("BatchNorm1d", 32),
    ("Conv1d", 32, 32, 3, 2, 1, True), ("BatchNorm1d", 32),
    ("Conv1d", 32, 32, 3, 1, 1, False), ("Conv1d", 32, 32, 1, 1, 0, False),  # 1 residual layer
    ("Conv1d", 32, 8, 1, 1, 0, True),                                          # to the 8-d latent
]
AUDIO_DECODER = [
    ("Conv1d", 8, 32, 3, 1, 1, True),
    ("Conv1d", 32, 32, 3, 1, 1, False), ("Conv1d", 32, 32, 1, 1, 0, False),
    ("ConvTranspose1d", 32, 32, 4, 2, 1, True), ("BatchNorm1d", 32),
    ("ConvTranspose1d", 32, 16, 4, 2, 1, True), ("BatchNorm1d", 16),
    ("ConvTranspose1d", 16, 1, 3, 2, 0, True),
]
VISUAL_ENCODER = [
    ("Conv2d", 3, 64, 4, 2, 1, True), ("Conv2d", 64, 128, 4, 2, 1, True),
    ("Conv2d", 128, 128, 3, 1, 1, True),
    ("Conv2d", 128, 64, 3, 1, 1, False), ("Conv2d", 64, 128, 1, 1, 0, False),
    ("Conv2d", 128, 64, 3, 1, 1, False), ("Conv2d", 64, 128, 1, 1, 0, False),
    ("Conv2d", 128, 4, 1, 1, 0, True),
]
VISUAL_DECODER = [
    ("Conv2d", 4, 128, 3, 1, 1, True),
    ("Conv2d", 128, 64, 3, 1, 1, False), ("Conv2d", 64, 128, 1, 1, 0, False),
    ("Conv2d", 128, 64, 3, 1, 1, False), ("Conv2d", 64, 128, 1, 1, 0, False),
    ("ConvTranspose2d", 128, 64, 4, 2, 1, True), ("ConvTranspose2d", 64, 3, 4, 2, 1, True),
]


def _layers(*modules: nn.Module) -> list[tuple]:
    out = []
    for mod in modules:
        for m in mod.modules():
            if isinstance(m, nn.modules.conv._ConvNd):
                out.append((type(m).__name__, m.in_channels, m.out_channels, m.kernel_size[0],
                            m.stride[0], m.padding[0], m.bias is not None))
            elif isinstance(m, nn.modules.batchnorm._BatchNorm):
                out.append((type(m).__name__, m.num_features))
    return out


def _count(layers: list[tuple]) -> int:
    n = 0
    for spec in layers:
        if spec[0].startswith("BatchNorm"):
            n += 2 * spec[1]
            continue
        kind, cin, cout, k, _, _, bias = spec
        dims = 2 if kind.endswith("2d") else 1
        n += cin * cout * k**dims + (cout if bias else 0)
    return n


def _params(*modules: nn.Module) -> int:
    return sum(p.numel() for m in modules for p in m.parameters())


def test_paper_audio_stack_matches_reference():
    tok = AudioVQVAE(audio_preset("paper"))
    assert _layers(tok.encoder, tok.pre_vq) == AUDIO_ENCODER
    assert _layers(tok.decoder) == AUDIO_DECODER
    assert _params(tok.encoder, tok.pre_vq) == _count(AUDIO_ENCODER) == 9_784
    assert _params(tok.decoder) == _count(AUDIO_DECODER) == 11_233
    codebook = tok.quantizer.codebook
    assert tuple(codebook.shape) == (256, 8)
    total = _params(tok) + codebook.numel()
    assert 20_000 < total < 27_000  # "about 25 k parameters" (23,065 with the codebook)
    assert all(isinstance(m, nn.Tanh) for m in tok.encoder.modules()
               if isinstance(m, (nn.Tanh, nn.ReLU)))
    q = tok.config.quantizer
    assert (q.decay, q.commitment_weight, q.kmeans_init, q.threshold_ema_dead_code) == (0.99, 0.25, False, 0)
    assert tok.config.loss == "itakura_saito" and tok.config.input_transform == "power"


def test_paper_visual_stack_matches_reference():
    tok = VisualVQVAE(visual_preset("paper"))
    assert _layers(tok.encoder, tok.pre_vq) == VISUAL_ENCODER
    assert _layers(tok.decoder) == VISUAL_DECODER
    assert _params(tok.encoder, tok.pre_vq) == _count(VISUAL_ENCODER) == 446_276
    assert _params(tok.decoder) == _count(VISUAL_DECODER) == 302_787
    assert tuple(tok.quantizer.codebook.shape) == (512, 4)
    assert 700_000 < _params(tok) + tok.quantizer.codebook.numel() < 800_000  # "about 0.75 M"
    q = tok.config.quantizer
    assert (q.decay, q.commitment_weight) == (0.99, 0.25) and tok.config.loss == "smooth_l1"


def test_paper_token_shapes_for_two_seconds():
    audio = AudioVQVAE(audio_preset("paper"))
    wave = 0.1 * torch.randn(32_000, generator=torch.Generator().manual_seed(0))
    x = audio.prepare(wave)
    assert x.shape == (100, 513) and x.dtype == torch.float32 and (x >= 0).all()
    codes = audio.encode(x)
    assert codes.shape == (100, 64) and codes.dtype == torch.int64
    assert 0 <= int(codes.min()) and int(codes.max()) < 256
    assert audio.token_shape == (64,) and audio.codebook_size == 256 and audio.frames_per_second == 50
    y = audio.decode(codes)
    assert y.shape == (100, 513) and (y > 0).all()  # exp() output: a positive power spectrum

    visual = VisualVQVAE(visual_preset("paper"))
    faces = torch.randint(0, 256, (50, 96, 96, 3), dtype=torch.uint8)
    v = visual.prepare(faces)
    assert v.shape == (50, 3, 96, 96) and v.min() >= -0.5 and v.max() <= 0.5
    vc = visual.encode(v)
    assert vc.shape == (50, 24, 24) and vc.dtype == torch.int64 and int(vc.max()) < 512
    assert visual.token_shape == (24, 24) and visual.frames_per_second == 25
    assert visual.decode(vc).shape == (50, 3, 96, 96)


def test_prepare_is_the_centred_hann_power_stft_with_s_over_hop_frames():
    tok = AudioVQVAE(audio_preset("paper"))
    wave = torch.randn(16_000 + 123, generator=torch.Generator().manual_seed(1))
    x = tok.prepare(wave)
    assert x.shape == (16_123 // 320, 513)
    ref = torch.stft(wave, 1024, 320, 1024, torch.hann_window(1024), center=True, pad_mode="constant",
                     return_complex=True).abs().pow(2).T[: x.shape[0]]
    torch.testing.assert_close(x, ref, rtol=1e-4, atol=1e-3)
    assert tok.prepare(torch.zeros(100)).shape == (0, 513)


def test_visual_prepare_resizes_and_scales():
    tok = VisualVQVAE(visual_preset("demo"))
    faces = torch.full((3, 96, 96, 3), 255, dtype=torch.uint8)
    faces[1] = 0
    x = tok.prepare(faces.numpy())
    assert x.shape == (3, 3, 64, 64)
    assert torch.allclose(x[0], torch.full_like(x[0], 0.5)) and torch.allclose(x[1], torch.full_like(x[1], -0.5))
    with pytest.raises(TypeError):
        tok.prepare(faces.float())


@pytest.mark.parametrize("name", list(AUDIO_PRESETS))
def test_presets_give_mae_compatible_token_shapes(name):
    a, v = AudioVQVAE(audio_preset(name)), VisualVQVAE(visual_preset(name))
    assert isinstance(a, Tokenizer) and isinstance(v, Tokenizer)
    assert a.token_shape[0] % 4 == 0, "audio positions must divide into 4-position patches"
    assert v.token_shape[0] % 4 == 0 and v.token_shape[1] % 4 == 0
    assert a.frames_per_second == 50 and v.frames_per_second == 25
    assert a.codebook_size <= 65536 and v.codebook_size <= 65536


def _trained(tok: Tokenizer, x: torch.Tensor, steps: int = 3) -> Tokenizer:
    """A few training steps so that BatchNorm statistics and the codebook are not at their init."""
    opt = torch.optim.Adam(tok.parameters(), lr=1e-3)
    tok.train()
    for _ in range(steps):
        out = tok(x)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
    return tok


def _audio_batch(tok: AudioVQVAE, n: int = 40, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(n * tok.config.hop_length + tok.config.n_fft) / tok.config.sample_rate
    wave = torch.sin(2 * torch.pi * (200 + 300 * t) * t) + 0.1 * torch.randn(t.shape, generator=g)
    return tok.prepare(wave)[:n]


@pytest.mark.parametrize("name", ["paper", "base", "tiny"])
def test_audio_decode_of_encode_equals_the_quantized_path_in_eval_mode(name):
    torch.manual_seed(0)
    tok = AudioVQVAE(audio_preset(name))
    x = _audio_batch(tok)
    tok.fit_normalization(x)
    _trained(tok, tok.windows(x))
    tok.eval()
    with torch.no_grad():
        out = tok(tok.windows(x))
    assert not tok.training
    codes = tok.encode(x)
    assert torch.equal(codes, out["indices"])
    assert torch.equal(tok.decode(codes), out["recon"])
    # the wrapper's lookup gives exactly the quantized latents
    with torch.no_grad():
        q = tok.quantizer(tok.encode_latents(tok.windows(x)))
    assert torch.equal(tok.quantizer.lookup(q.indices), q.quantized)
    tok.train()
    tok.encode(x)
    assert tok.training, "encode restores the training flag"


@pytest.mark.parametrize("name", ["paper", "tiny"])
def test_visual_decode_of_encode_equals_the_quantized_path_in_eval_mode(name):
    torch.manual_seed(0)
    tok = VisualVQVAE(visual_preset(name))
    s = tok.config.image_size
    x = torch.rand(6, 3, s, s, generator=torch.Generator().manual_seed(0)) - 0.5
    _trained(tok, x, steps=2)
    tok.eval()
    with torch.no_grad():
        out = tok(x)
    codes = tok.encode(x)
    assert torch.equal(codes, out["indices"])
    assert torch.equal(tok.decode(codes), out["recon"])


def test_encoding_does_not_depend_on_other_files_in_the_batch():
    """Eval mode everywhere: a clip's codes are the same alone or batched with other audio."""
    torch.manual_seed(0)
    tok = AudioVQVAE(audio_preset("paper"))  # BatchNorm: batch statistics must not leak
    a, b = _audio_batch(tok, 30, seed=1), 50 * _audio_batch(tok, 30, seed=2)
    _trained(tok, tok.windows(torch.cat([a, b])))
    alone = tok.encode(a)
    together = tok.encode(torch.cat([a, b]), batch_size=60)
    assert torch.equal(alone, together[:30])


def test_context_windows_repeat_clip_edges_like_the_training_dataset():
    tok = AudioVQVAE(audio_preset("tiny", context=2))
    x = torch.arange(5 * 193, dtype=torch.float32).reshape(5, 193)
    w = tok.windows(x)
    assert w.shape == (5, 5, 193)
    assert torch.equal(w[0, :, 0], torch.tensor([0.0, 0, 0, 193, 386]))
    assert torch.equal(w[4, :, 0], x[[2, 3, 4, 4, 4], 0])
    frames = FrameSet("audio", torch.cat([x, x + 10_000]), [ClipSpan("a", "s", 0, 5), ClipSpan("b", "s", 5, 5)])
    ds = AudioFrameDataset(frames, context=2)
    assert torch.equal(ds.__getitems__(list(range(5))), w)
    assert torch.equal(ds[5], tok.windows(x + 10_000)[0])  # the second clip's edge, not the first's
    strided = AudioFrameDataset(frames, context=2, stride=2)  # frames 0, 2, 4 of each clip
    assert len(strided) == 6
    assert torch.equal(strided.__getitems__([1, 3]), torch.stack([w[2], tok.windows(x + 10_000)[0]]))


@pytest.mark.parametrize("modality,name", [("audio", "paper"), ("audio", "base"), ("audio", "demo"),
                                           ("visual", "paper"), ("visual", "demo"), ("visual", "tiny")])
def test_every_parameter_gets_a_gradient(modality, name):
    torch.manual_seed(0)
    if modality == "audio":
        tok = AudioVQVAE(audio_preset(name, quantizer=audio_preset(name).quantizer))
        x = _audio_batch(tok, 16)
        tok.fit_normalization(x)
        batch = tok.windows(x)
    else:
        tok = VisualVQVAE(visual_preset(name))
        s = tok.config.image_size
        batch = torch.rand(4, 3, s, s) - 0.5
    tok.train()
    tok(batch)["loss"].backward()
    missing = [n for n, p in tok.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()
               or p.grad.abs().sum() == 0]
    assert not missing, missing


def test_low_dim_cosine_codebook_gets_gradients_and_round_trips():
    torch.manual_seed(0)
    q = audio_preset("tiny").quantizer
    q.codebook_dim, q.use_cosine_sim, q.rotation_trick = 2, True, True
    tok = AudioVQVAE(audio_preset("tiny", quantizer=q))
    x = _audio_batch(tok, 16)
    tok.fit_normalization(x)
    tok(tok.windows(x))["loss"].backward()
    assert all(p.grad is not None for p in tok.parameters())
    codes = tok.encode(x)
    tok.eval()
    with torch.no_grad():
        assert torch.equal(tok.decode(codes), tok(tok.windows(x))["recon"])


@pytest.mark.parametrize("modality", ["audio", "visual"])
def test_tiny_tokenizer_loss_falls_on_a_fixed_batch(modality):
    torch.manual_seed(0)
    if modality == "audio":
        tok = AudioVQVAE(audio_preset("tiny"))
        x = _audio_batch(tok, 64)
        tok.fit_normalization(x)
        batch = tok.windows(x)
    else:
        tok = VisualVQVAE(visual_preset("tiny"))
        g = torch.Generator().manual_seed(0)
        yy, xx = torch.meshgrid(torch.arange(16.0), torch.arange(16.0), indexing="ij")
        batch = torch.stack([torch.stack([torch.sin(xx / (2 + k)), torch.cos(yy / (3 + k)),
                                          torch.full_like(xx, k / 8)]) * 0.4 for k in range(8)])
        batch = batch + 0.01 * torch.randn(batch.shape, generator=g)
    opt = torch.optim.Adam(tok.parameters(), lr=1e-2)
    tok.train()
    losses = []
    for _ in range(100):
        out = tok(batch)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        losses.append(float(out["recon_loss"].detach()))
    assert sum(losses[-5:]) / 5 < 0.6 * sum(losses[:5]) / 5, losses[::10]


def test_save_and_load_round_trip(tmp_path):
    torch.manual_seed(0)
    for tok in (AudioVQVAE(audio_preset("tiny")), VisualVQVAE(visual_preset("tiny"))):
        if isinstance(tok, AudioVQVAE):
            x = _audio_batch(tok, 20)
            tok.fit_normalization(x)
            _trained(tok, tok.windows(x))
        else:
            x = torch.rand(4, 3, 16, 16) - 0.5
            _trained(tok, x)
        folder = tok.save_pretrained(tmp_path / tok.modality)
        loaded = load_tokenizer(folder)
        assert type(loaded) is type(tok) and not loaded.training
        assert loaded.fingerprint() == tok.fingerprint()
        assert torch.equal(loaded.encode(x), tok.encode(x))
        assert (loaded.token_shape, loaded.codebook_size) == (tok.token_shape, tok.codebook_size)
        meta = (folder / "config.json").read_text()
        assert '"token_shape"' in meta and '"frames_per_second"' in meta


def test_quantizer_runs_in_fp32_under_autocast():
    torch.manual_seed(0)
    tok = VisualVQVAE(visual_preset("tiny"))
    x = torch.rand(4, 3, 16, 16) - 0.5
    tok.eval()
    with torch.no_grad():
        z = tok.encode_latents(x)
        ref = tok.quantizer(z)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = tok.quantizer(z.bfloat16())
    assert out.quantized.dtype == torch.float32
    assert torch.equal(out.indices, tok.quantizer(z.bfloat16().float()).indices)
    assert ref.quantized.dtype == torch.float32


def test_preset_overrides_and_unknown_presets():
    assert audio_preset("paper", hidden=64).hidden == 64
    assert visual_preset("demo").image_size == 64
    with pytest.raises(ValueError, match="unknown audio preset"):
        audio_preset("huge")
    with pytest.raises(ValueError, match="n_fft"):
        audio_preset("paper", n_fft=1000)
    assert set(AUDIO_PRESETS) == set(VISUAL_PRESETS) >= {"paper", "base", "demo", "tiny"}


@pytest.mark.parametrize("modality", ["audio", "visual"])
def test_encoding_an_untrained_kmeans_tokenizer_leaves_it_unchanged(modality):
    from vqmae.tokenizers import build_tokenizer, tokenizer_preset

    torch.manual_seed(0)
    tok = build_tokenizer(modality, tokenizer_preset(modality, "tiny")).eval()
    assert tok.config.quantizer.kmeans_init
    before = tok.fingerprint()
    media = torch.randn(8000) if modality == "audio" else torch.randint(0, 255, (6, 16, 16, 3), dtype=torch.uint8)
    x = tok.prepare(media)
    first = tok.encode(x)
    assert tok.fingerprint() == before  # eval mode never runs the k-means init
    assert torch.equal(tok.encode(x), first)
    codebook = tok.quantizer.codebook.clone()
    tok.train()  # training still initialises the codebook by k-means on the first batch
    tok.quantizer(torch.randn(2, 64, tok.quantizer.dim))
    assert not torch.equal(tok.quantizer.codebook, codebook)


def test_dead_code_threshold_is_a_count_without_deprecation_warning(capfd):
    """Fault 6: vector-quantize-pytorch reads a deprecated threshold_ema_dead_code as a ratio of
    the mean cluster size (with a warning on every build); ours stays a count of latents."""
    from vqmae.tokenizers.quantizer import QuantizerConfig, VectorQuantizer

    torch.manual_seed(0)
    vq = VectorQuantizer(4, QuantizerConfig(codebook_size=6, threshold_ema_dead_code=2.0))
    assert "deprecated" not in capfd.readouterr().err
    cb = vq.vq._codebook
    vq.train()
    with torch.no_grad():
        cb.cluster_size.copy_(torch.tensor([[0.5, 1.9, 2.0, 3.0, 100.0, 200.0]]))
    before = cb.embed.detach().clone()
    cb.expire_codes_(torch.randn(1, 64, 4))
    changed = (cb.embed != before).any(-1)[0].tolist()
    assert changed == [True, True, False, False, False, False]  # below 2 latents, whatever the mean
    assert cb.cluster_size[0, :2].tolist() == [2.0, 2.0]  # replaced codes restart at the count

"""VQ-MAE-AV: preset sizes, shapes, gradients, SDPA vs math attention, learning, model folders."""

import pytest
import torch

from vqmae.checkpoint import load_pretrained
from vqmae.mae import (
    VQMAEAV,
    LossConfig,
    MaskingConfig,
    VQMAEEncoder,
    cfg_for_store,
    count_parameters,
    mae_loss,
    mae_preset,
    make_masks,
    masked_code_ce,
)
from vqmae.mae.config import MAEConfigError

pytestmark = pytest.mark.usefixtures("one_thread")


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def tokens(cfg, batch=3, seed=0):
    g = gen(seed)
    out = {}
    for m in cfg.modalities:
        s = cfg.spec(m)
        out[m] = torch.randint(0, s.codebook_size, (batch, s.frames, *s.token_shape), generator=g)
    return out


@pytest.mark.parametrize("depth,count", [(6, 7_739_840), (12, 12_670_400), (16, 15_957_440), (20, 19_244_480)])
def test_paper_parameter_counts(depth, count):
    with torch.device("meta"):  # shapes only: instant
        model = VQMAEAV(mae_preset("paper", depth=depth))
    assert count_parameters(model) == count


def test_paper_geometry():
    cfg = mae_preset("paper")
    v, a = cfg.spec("visual"), cfg.spec("audio")
    assert (v.num_patches, v.indices, a.num_patches, a.indices) == (360, 80, 160, 40)
    assert v.indices * cfg.visual_embed_dim == a.indices * cfg.audio_embed_dim == cfg.width == 320
    with torch.device("meta"):
        model = VQMAEAV(cfg)
    blk = model.encoder.fusion.blocks[0]
    assert count_parameters(blk) == 821_760 and blk.attn.qkv.bias is None
    assert model.decoder.fusion.norm is None and len(model.decoder.fusion.blocks) == 3
    assert tuple(model.decoder.heads["visual"].out.weight.shape) == (512, 4)
    assert tuple(model.decoder.heads["audio"].out.weight.shape) == (256, 8)


def test_encoder_contract_shapes_and_missing_modality():
    cfg = mae_preset("tiny")
    model = VQMAEAV(cfg).eval()
    x = tokens(cfg)
    out = model.encoder(audio=x["audio"], visual=x["visual"])
    assert out["audio"].shape == (3, cfg.spec("audio").num_patches, cfg.width)
    assert out["visual"].shape == (3, cfg.spec("visual").num_patches, cfg.width)
    only = model.encoder(audio=x["audio"])
    assert set(only) == {"audio"}
    assert isinstance(model.encoder, VQMAEEncoder)
    assert all(k.startswith(("encoder.", "decoder.")) for k in model.state_dict())
    with pytest.raises(ValueError, match="expects"):
        model.encoder(audio=x["audio"][:, :-1])


@pytest.mark.parametrize("kw", [
    {}, {"fusion": "caf"}, {"fusion": "caf", "decoder_fusion": "caf"}, {"contrastive": True},
    {"modalities": ("audio",)}, {"modalities": ("visual",)}, {"width": 48, "heads": 4, "decoder_heads": 4},
])
def test_every_parameter_gets_a_gradient(kw):
    cfg = mae_preset("tiny", **kw)
    model = VQMAEAV(cfg)
    x = tokens(cfg)
    masks = make_masks(model.mask_grids(), 3, MaskingConfig(), gen())
    out = model(x, masks)
    loss, metrics = mae_loss(out, LossConfig(contrastive_weight=1.0 if cfg.contrastive else 0.0), cfg.modalities)
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, missing
    for m in cfg.modalities:
        assert 0.0 <= metrics[f"acc_{m}"] <= 1.0
    if cfg.contrastive:
        assert "contrastive" in metrics


def _set_fused(model, flag):
    for mod in model.modules():
        if hasattr(mod, "fused_attn"):
            mod.fused_attn = flag


@pytest.mark.parametrize("fusion", ["saf", "caf"])
def test_sdpa_and_math_attention_agree(fusion):
    cfg = mae_preset("tiny", fusion=fusion, decoder_fusion=fusion, contrastive=True)
    model = VQMAEAV(cfg).eval()
    x = tokens(cfg)
    masks = make_masks(model.mask_grids(), 3, MaskingConfig(), gen(5))
    results = []
    for flag in (True, False):
        _set_fused(model, flag)
        model.zero_grad()
        out = model(x, masks)
        loss, _ = mae_loss(out, LossConfig(contrastive_weight=1.0), cfg.modalities)
        loss.backward()
        enc = model.encoder(**x)
        results.append((loss.detach(), {k: v.detach() for k, v in enc.items()},
                        {n: p.grad.clone() for n, p in model.named_parameters()}))
    (la, ea, ga), (lb, eb, gb) = results
    torch.testing.assert_close(la, lb, rtol=1e-5, atol=1e-5)
    for k in ea:
        torch.testing.assert_close(ea[k], eb[k], rtol=1e-4, atol=1e-5)
    for n in ga:
        torch.testing.assert_close(ga[n], gb[n], rtol=1e-3, atol=1e-5)


def test_fused_cross_entropy_matches_plain():
    g = gen(1)
    h = torch.randn(3000, 4, generator=g, requires_grad=True)
    w = torch.randn(64, 4, generator=g, requires_grad=True)
    b = torch.randn(64, generator=g, requires_grad=True)
    t = torch.randint(0, 64, (3000,), generator=g)
    grads = []
    for fused in (True, False):
        loss, correct = masked_code_ce(h, w, b, t, fused=fused, chunk=512)
        (0.3 * loss).backward()
        grads.append((loss.detach(), correct, h.grad.clone(), w.grad.clone(), b.grad.clone()))
        h.grad = w.grad = b.grad = None
    for x, y in zip(*grads):
        torch.testing.assert_close(x.float(), y.float(), rtol=1e-4, atol=1e-4)
    # under no_grad no gradient buffers are made, and the values are the same
    with torch.no_grad():
        loss, _ = masked_code_ce(h, w, b, t, fused=True)
    torch.testing.assert_close(loss, grads[0][0])


def test_fused_cross_entropy_is_finite_for_extreme_logits():
    h = torch.tensor([[200.0, 0, 0, 0]], requires_grad=True)
    w = torch.zeros(8, 4)
    w[0, 0], w[1, 0] = 1.0, -1.0
    b = torch.zeros(8)
    loss, _ = masked_code_ce(h, w, b, torch.tensor([1]), fused=True)
    assert torch.isfinite(loss) and loss.item() == pytest.approx(400.0, rel=1e-4)


def test_loss_falls_on_a_fixed_tiny_batch():
    torch.manual_seed(0)
    cfg = mae_preset("tiny")
    model = VQMAEAV(cfg)
    x = tokens(cfg, batch=4)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    masks = make_masks(model.mask_grids(), 4, MaskingConfig(ratio_mode="fixed"), gen())
    losses = []
    for _ in range(60):
        loss, _ = mae_loss(model(x, masks), LossConfig(), cfg.modalities)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.6 * losses[0], (losses[0], losses[-1])


def test_predict_keeps_visible_tokens():
    cfg = mae_preset("tiny")
    model = VQMAEAV(cfg).eval()
    x = tokens(cfg)
    masks = make_masks(model.mask_grids(), 3, MaskingConfig(), gen())
    pred = model.predict(x, masks)
    for m in cfg.modalities:
        assert pred[m].shape == x[m].shape
        spec = cfg.spec(m)
        from vqmae.mae.patching import patchify
        keep = masks[m].ids_keep
        a, b = patchify(pred[m], spec.patch), patchify(x[m], spec.patch)
        idx = keep.unsqueeze(-1).expand(-1, -1, spec.indices)
        assert torch.equal(a.gather(1, idx), b.gather(1, idx))


def test_model_folder_round_trip(tmp_path):
    cfg = mae_preset("tiny", fusion="caf", contrastive=True)
    model = VQMAEAV(cfg).eval()
    model.save_pretrained(tmp_path / "m")
    again = load_pretrained(tmp_path / "m")
    assert isinstance(again, VQMAEAV) and again.config == cfg
    x = tokens(cfg)
    a, b = model.encoder(**x), again.encoder(**x)
    for k in a:
        assert torch.equal(a[k], b[k])


def _prov(shape_a, k_a, shape_v, k_v):
    return {"audio": {"token_shape": list(shape_a), "codebook_size": k_a, "frames_per_second": 50.0},
            "visual": {"token_shape": list(shape_v), "codebook_size": k_v, "frames_per_second": 25.0}}


def test_cfg_for_store_matches_paper_tokens():
    cfg = cfg_for_store(_prov((64,), 256, (24, 24), 512), preset="paper")
    assert cfg == mae_preset("paper")


def test_cfg_for_store_other_tokenizers():
    prov = _prov((16,), 128, (12, 12), 256)
    with pytest.raises(MAEConfigError, match="visual_patch .* does not fit.*divisors"):
        cfg_for_store(_prov((16,), 128, (10, 10), 256), preset="paper")
    cfg = cfg_for_store(prov, preset="demo")
    assert cfg.visual_codebook_size == 256 and cfg.audio_token_shape == (16,)
    assert cfg.visual_frames == 50 and cfg.audio_frames == 100
    for m in cfg.modalities:
        s = cfg.spec(m)
        assert all(n % p == 0 for n, p in zip((s.frames, *s.token_shape), s.patch))
    cfg2 = cfg_for_store(_prov((10,), 64, (9, 9), 64), preset="demo", window_seconds=1.0)
    assert cfg2.visual_patch[1] in (3, 9) and cfg2.audio_frames == 50
    with pytest.raises(MAEConfigError, match="does not fit"):
        cfg_for_store(prov, preset="demo", visual_patch=(5, 5, 5))
    a_only = cfg_for_store(prov, preset="demo", modalities=("audio",))
    assert a_only.modalities == ("audio",)
    VQMAEAV(cfg)  # builds


@pytest.mark.parametrize("fusion", ["saf", "caf"])
def test_bf16_autocast_path_runs(fusion):
    """The GPU path (bf16 autocast, unfused loss) exercised on CPU."""
    cfg = mae_preset("tiny", fusion=fusion, contrastive=True)
    model = VQMAEAV(cfg)
    x = tokens(cfg)
    masks = make_masks(model.mask_grids(), 3, MaskingConfig(), gen())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x, masks)
        loss, metrics = mae_loss(out, LossConfig(contrastive_weight=0.5), cfg.modalities)
    loss.backward()
    assert torch.isfinite(loss) and loss.dtype == torch.float32
    assert all(p.grad is not None for p in model.parameters())
    ref, _ = mae_loss(model(x, masks), LossConfig(contrastive_weight=0.5), cfg.modalities)
    assert abs(loss.item() - ref.item()) < 0.1 * ref.item()


def test_sincos_position_start_encodes_the_patch_grid():
    cfg = mae_preset("tiny", pos_init="sincos")
    model = VQMAEAV(cfg)
    for m, spec in cfg.specs.items():
        for table in (model.encoder.pos_embed[m], model.decoder.pos_embed[m]):
            t = table[0].detach()
            assert t.shape == (spec.num_patches, cfg.width)
            assert t.abs().max() <= 1.0 + 1e-6
            # every patch's most similar other patch is a grid neighbour (one step on one axis)
            sim = torch.nn.functional.normalize(t, dim=1) @ torch.nn.functional.normalize(t, dim=1).T
            sim.fill_diagonal_(-2)
            coords = torch.stack(torch.meshgrid(*[torch.arange(n) for n in spec.grid], indexing="ij"), -1)
            coords = coords.reshape(-1, len(spec.grid))
            nearest = coords[sim.argmax(1)]
            assert ((nearest - coords).abs().sum(1) == 1).all(), m
    # the paper keeps random starts, different in encoder and decoder
    paper = VQMAEAV(mae_preset("tiny"))
    assert not torch.allclose(paper.encoder.pos_embed["audio"], paper.decoder.pos_embed["audio"])
    assert mae_preset("paper").pos_init == "random" and mae_preset("demo").pos_init == "sincos"

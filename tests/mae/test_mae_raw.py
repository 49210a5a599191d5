"""The raw-input MAE baseline: same sequence as the discrete model, gradients, normalised MSE."""

import pytest
import torch

from vqmae.checkpoint import load_pretrained
from vqmae.mae import (
    LossConfig,
    MaskingConfig,
    RawMAE,
    count_parameters,
    mae_loss,
    mae_preset,
    make_masks,
    raw_config_like,
)
from vqmae.mae.raw_mae import normalise_patches

pytestmark = pytest.mark.usefixtures("one_thread")


def inputs(cfg, batch=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"audio": torch.randn(batch, *cfg.input_shape("audio"), generator=g),
            "visual": torch.rand(batch, *cfg.input_shape("visual"), generator=g) - 0.5}


def test_raw_config_matches_the_discrete_sequence_and_transformer():
    mae = mae_preset("paper")
    raw = raw_config_like(mae)
    assert raw.input_shape("audio") == (100, 512) and raw.input_shape("visual") == (50, 96, 96, 3)
    assert raw.num_patches("audio") == 160 and raw.num_patches("visual") == 360
    assert raw.patch_dim("audio") == 320 and raw.patch_dim("visual") == 3840
    assert (raw.width, raw.depth, raw.heads, raw.decoder_depth) == (mae.width, mae.depth, mae.heads, mae.decoder_depth)
    with torch.device("meta"):
        model = RawMAE(raw)
    # same blocks; only the input/output layers differ
    assert count_parameters(model.encoder) == 6 * 821_760 + 640


def test_every_parameter_gets_a_gradient_and_loss_falls():
    torch.manual_seed(0)
    cfg = raw_config_like(mae_preset("tiny"))
    model = RawMAE(cfg)
    x = inputs(cfg)
    masks = make_masks(model.mask_grids(), 2, MaskingConfig(ratio_mode="fixed"), torch.Generator().manual_seed(0))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for i in range(40):
        loss, metrics = mae_loss(model(x, masks), LossConfig(), cfg.modalities)
        opt.zero_grad()
        loss.backward()
        if i == 0:
            assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
            assert set(metrics) == {"loss_audio", "loss_visual"}
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]


def test_normalised_patches_and_model_folder(tmp_path):
    x = torch.randn(3, 5, 40) * 4 + 2
    y = normalise_patches(x)
    torch.testing.assert_close(y.mean(-1), torch.zeros(3, 5), atol=1e-5, rtol=0)
    torch.testing.assert_close(y.std(-1, unbiased=False), torch.ones(3, 5), atol=1e-4, rtol=0)
    cfg = raw_config_like(mae_preset("tiny"))
    RawMAE(cfg).save_pretrained(tmp_path / "raw")
    assert isinstance(load_pretrained(tmp_path / "raw"), RawMAE)

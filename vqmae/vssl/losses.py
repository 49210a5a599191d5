"""Losses of the visually guided SSL model, and the per-batch loss used by the training loop.

A batch (see :mod:`vqmae.vssl.data`) holds ``audio`` float ``(B, T * 640)``, ``frames`` uint8
``(B, T, H, W, 3)``, ``still`` uint8 ``(B, H, W, 3)`` (a frame of the clip outside the window)
and ``frame_mask`` float ``(B, T)`` (0 for a target frame that is the still itself).

* Talking face: L1 between generated and real frames, weighted ``1 + mouth_weight`` inside the
  mouth region (:func:`mouth_mask`) and 1 elsewhere, normalised by the total weight.
* Audio pretext: mean squared error of the standardised PASE-style targets.
* Optional (``adversarial_weight`` > 0): LSGAN frame discriminator. The generator term is
  computed through a copy of the discriminator's parameters with gradients cut, and the
  discriminator term on detached generated frames, so one optimizer step updates both
  networks each on its own objective (one loss, as the shared loop wants).
"""

from __future__ import annotations

import torch
from torch.func import functional_call

from vqmae.vssl.config import VSSLConfig
from vqmae.vssl.model import VSSLModel, to_model_images


def mouth_mask(size: int, top: float, left: float, device=None) -> torch.Tensor:
    """``(size, size)`` float, 1 in the mouth region (rows ``>= top·size``, columns in
    ``[left·size, (1 - left)·size)``), else 0."""
    m = torch.zeros(size, size, device=device)
    r0, c0, c1 = int(round(top * size)), int(round(left * size)), int(round((1 - left) * size))
    m[r0:, c0:c1] = 1.0
    return m


def mouth_weights(cfg: VSSLConfig, size: int, device=None) -> torch.Tensor:
    """``(size, size)`` pixel weights: ``1 + mouth_weight`` in the mouth region, 1 elsewhere."""
    return 1.0 + cfg.mouth_weight * mouth_mask(size, cfg.mouth_top, cfg.mouth_left, device)


def frame_l1(gen: torch.Tensor, real: torch.Tensor, weights: torch.Tensor,
             frame_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Weighted L1: ``gen``/``real`` ``(B, T, 3, H, W)``, ``weights`` ``(H, W)``, ``frame_mask`` ``(B, T)``."""
    w = weights[None, None, None]
    if frame_mask is not None:
        w = w * frame_mask[:, :, None, None, None]
    w = w.expand_as(gen)
    return ((gen - real).abs() * w).sum() / w.sum().clamp_min(1e-8)


def region_l1(gen: torch.Tensor, real: torch.Tensor, region: torch.Tensor) -> torch.Tensor:
    """Mean |gen - real| inside ``region`` ``(H, W)`` (for metrics), frames ``(B, T, 3, H, W)``."""
    w = region[None, None, None].expand_as(gen)
    return ((gen - real).abs() * w).sum() / w.sum().clamp_min(1e-8)


def _disc_frozen(model: VSSLModel, x: torch.Tensor) -> torch.Tensor:
    d = model.discriminator
    params = {k: v.detach() for k, v in d.named_parameters()}
    return functional_call(d, params, (x,))


def vssl_loss(model: VSSLModel, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
    """The training loss of a batch (module doc) and its parts as floats (without ``loss``)."""
    cfg: VSSLConfig = model.config
    wave = batch["audio"].float()
    feats = model.encoder.encode(wave)
    total = feats.new_zeros(())
    metrics: dict[str, float] = {}
    if cfg.visual and cfg.visual_weight > 0:
        real = to_model_images(batch["frames"])
        still = to_model_images(batch["still"])
        t = min(real.shape[1], feats.shape[1])
        real, f = real[:, :t], feats[:, :t]
        gen = model.decode_frames(f, still)
        size = real.shape[-1]
        mask = batch.get("frame_mask")
        mask = mask[:, :t].float() if mask is not None else None
        l1 = frame_l1(gen, real, mouth_weights(cfg, size, real.device), mask)
        total = total + cfg.visual_weight * l1
        mouth = mouth_mask(size, cfg.mouth_top, cfg.mouth_left, real.device)
        metrics.update(l1=float(l1.detach()), mouth_l1=float(region_l1(gen.detach(), real, mouth)),
                       face_l1=float(region_l1(gen.detach(), real, 1 - mouth)))
        if model.discriminator is not None and cfg.adversarial_weight > 0:
            flat_gen = gen.flatten(0, 1)
            g_adv = ((_disc_frozen(model, flat_gen) - 1) ** 2).mean()
            d_real = model.discriminator(real.flatten(0, 1))
            d_fake = model.discriminator(flat_gen.detach())
            d_loss = 0.5 * ((d_real - 1) ** 2).mean() + 0.5 * (d_fake ** 2).mean()
            total = total + cfg.adversarial_weight * (g_adv + d_loss)
            metrics.update(g_adv=float(g_adv.detach()), d_loss=float(d_loss.detach()))
    if cfg.audio and cfg.audio_weight > 0:
        target = model.standard_targets(wave)
        t = min(target.shape[1], feats.shape[1])
        pred = model.predict_targets(feats[:, :t])
        pre = ((pred - target[:, :t]) ** 2).mean()
        total = total + cfg.audio_weight * pre
        metrics["pretext_mse"] = float(pre.detach())
    return total, metrics  # the loop logs "loss" itself (a "loss" key here would be added twice)

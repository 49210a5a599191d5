"""The visually guided self-supervised model (architecture ``vssl``).

    model = VSSLModel(VSSLConfig(task="multitask"))
    feats = model.encoder.encode(wave)                # (B, S) -> (B, T, D), T = S // 640
    video = model.generate(wave, still)               # + (B, 3, H, W) in [-1, 1] -> (B, T, 3, H, W)
    pred = model.predict_targets(feats)               # (B, T, K) standardised PASE-style targets
    model.export_encoder().save_pretrained("out/audio_encoder")

Parts by task: ``visual`` = encoder + identity encoder + frame decoder (+ a frame discriminator
when ``adversarial_weight`` > 0); ``audio`` = encoder + pretext head; ``multitask`` = all.
Images enter and leave as uint8 ``(..., H, W, 3)`` through :func:`to_model_images` /
:func:`to_uint8_images`.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from vqmae.checkpoint import PretrainedModel, register_model
from vqmae.vssl.config import VSSLConfig
from vqmae.vssl.encoder import AudioEncoder
from vqmae.vssl.features import PaseTargets
from vqmae.vssl.generator import FrameDecoder, FrameDiscriminator, IdentityEncoder


def to_model_images(x: torch.Tensor) -> torch.Tensor:
    """uint8 ``(..., H, W, 3)`` -> float ``(..., 3, H, W)`` in [-1, 1]."""
    return x.float().movedim(-1, -3) / 127.5 - 1.0


def to_uint8_images(x: torch.Tensor) -> torch.Tensor:
    """float ``(..., 3, H, W)`` in [-1, 1] -> uint8 ``(..., H, W, 3)``."""
    return ((x.detach().float().clamp(-1, 1) + 1.0) * 127.5).round().to(torch.uint8).movedim(-3, -1)


@register_model("vssl")
class VSSLModel(PretrainedModel):
    """Audio encoder + talking-face generator and/or PASE-style pretext head (module doc)."""

    config_class = VSSLConfig

    def __init__(self, config: VSSLConfig):
        super().__init__(config)
        c = config
        self.encoder = AudioEncoder(c.encoder)
        d = c.encoder.dim
        self.identity: IdentityEncoder | None = None
        self.decoder: FrameDecoder | None = None
        self.discriminator: FrameDiscriminator | None = None
        self.pretext_head: nn.Module | None = None
        if c.visual:
            self.identity = IdentityEncoder(c.generator)
            self.decoder = FrameDecoder(c.generator, d)
            if c.adversarial_weight > 0:
                self.discriminator = FrameDiscriminator(c.disc_channels)
        p = c.pretext
        self.targets = PaseTargets(c.encoder.sample_rate, c.encoder.fps, c.encoder.n_fft,
                                   c.encoder.hop_length, p.n_mels, p.n_mfcc, p.fmin_pitch, p.fmax_pitch)
        k = p.num_targets
        self.register_buffer("target_mean", torch.zeros(k))
        self.register_buffer("target_std", torch.ones(k))
        if c.audio:
            self.pretext_head = nn.Sequential(nn.Linear(d, p.hidden), nn.GELU(), nn.Linear(p.hidden, k))

    # ----------------------------------------------------------------------------- setup
    @torch.no_grad()
    def fit_normalization(self, waves: list[torch.Tensor]) -> None:
        """Per-band log-mel and per-target statistics from training audio (a list of ``(S,)``)."""
        self.encoder.fit_normalization(waves)
        dev = self.target_mean.device
        t = torch.cat([self.targets(w.reshape(1, -1).to(dev))[0] for w in waves])  # (sum T, K)
        self.target_mean.copy_(t.mean(0))
        self.target_std.copy_(t.std(0).clamp_min(1e-3))

    # --------------------------------------------------------------------------- compute
    def still_mask(self, size: int, device=None) -> torch.Tensor:
        """``(size, size)``: 1 on the mouth region greyed out in the still (``mask_still_mouth``)."""
        c = self.config
        m = torch.zeros(size, size, device=device)
        r0, c0 = int(round(c.mouth_top * size)), int(round(c.mouth_left * size))
        m[r0:, c0:size - c0] = 1.0
        return m

    def standard_targets(self, wave: torch.Tensor) -> torch.Tensor:
        """``(B, S)`` -> standardised targets ``(B, T, K)`` (no gradient)."""
        return (self.targets(wave) - self.target_mean) / self.target_std

    def predict_targets(self, feats: torch.Tensor) -> torch.Tensor:
        """Encoder features ``(B, T, D)`` -> predicted standardised targets ``(B, T, K)``."""
        if self.pretext_head is None:
            raise RuntimeError(f"a '{self.config.task}' model has no audio pretext head")
        return self.pretext_head(feats)

    def decode_frames(self, feats: torch.Tensor, still: torch.Tensor) -> torch.Tensor:
        """Features ``(B, T, D)`` + still ``(B, 3, H, W)`` in [-1, 1] -> frames ``(B, T, 3, H, W)``."""
        if self.identity is None or self.decoder is None:
            raise RuntimeError(f"a '{self.config.task}' model has no frame generator")
        if self.config.generator.mask_still_mouth:
            still = still * (1.0 - self.still_mask(still.shape[-1], still.device))
        bottleneck, skips = self.identity(still)
        return self.decoder(bottleneck, skips, feats)

    def generate(self, wave: torch.Tensor, still: torch.Tensor) -> torch.Tensor:
        """Waveform ``(B, S)`` + still ``(B, 3, H, W)`` in [-1, 1] -> ``(B, S // 640, 3, H, W)``."""
        return self.decode_frames(self.encoder.encode(wave), still)

    def forward(self, wave, still: torch.Tensor | None = None):
        """``{"features": (B, T, D), "frames": (B, T, 3, H, W) if visual, "targets": (B, T, K) if audio}``.

        Called with a training batch (a dict, see :mod:`vqmae.vssl.losses`) instead of a waveform
        it returns ``(loss, metrics)``: the training loop calls the (data-parallel) model itself."""
        if isinstance(wave, dict):
            from vqmae.vssl.losses import vssl_loss

            return vssl_loss(self, wave)
        feats = self.encoder.encode(wave)
        out = {"features": feats}
        if self.config.visual and still is not None:
            out["frames"] = self.decode_frames(feats, still)
        if self.config.audio:
            out["targets"] = self.predict_targets(feats)
        return out

    # --------------------------------------------------------------------------- export
    def export_encoder(self) -> AudioEncoder:
        """A standalone copy of the audio encoder (its own model folder, ``vssl-audio-encoder``)."""
        enc = copy.deepcopy(self.encoder).cpu().eval()
        return enc

    def extra_metadata(self) -> dict:
        return {"task": self.config.task, "target_names": self.targets.names()}

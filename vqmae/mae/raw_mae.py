"""The raw-input MAE baseline: the same transformer on spectrogram patches and pixel tubes.

For the discrete-vs-raw comparison the patches cover the same media as the paper's token
patches (so the sequence lengths, encoder and decoder are identical):

    audio  log-power spectrogram (B, 100 frames, 512 bins): patch 10 frames × 32 bins
           (= 4 latent positions × 8 bins per position of the audio VQ-VAE) -> 160 patches × 320 values
    visual pixels (B, 50, 96, 96, 3) in [-0.5, 0.5]: tube 5 frames × 16 × 16 × 3
           (= 4 × 4 codes × 4 × 4 pixels per code) -> 360 tubes × 3,840 values

Patches enter through a linear embedding; the decoder predicts every value of a masked patch
through a linear layer; the loss is the MSE on *normalised* patches (each target patch minus
its mean, over its standard deviation; MAE's ``norm_pix_loss``), masked patches only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from timm.layers import trunc_normal_
from torch import nn

from vqmae.checkpoint import PretrainedModel, register_model
from vqmae.mae.config import MAEConfig, MAEConfigError
from vqmae.mae.embedding import init_weights
from vqmae.mae.masking import Mask
from vqmae.mae.model import _Fusion, _gather_rows
from vqmae.mae.patching import patch_grid, patchify


@dataclass
class RawMAEConfig:
    """Input geometry of the raw baseline + the same transformer fields as :class:`MAEConfig`."""

    modalities: tuple[str, ...] = ("audio", "visual")
    audio_frames: int = 100
    audio_bins: int = 512
    audio_patch: tuple[int, ...] = (10, 32)
    visual_frames: int = 50
    image_size: int = 96
    channels: int = 3
    visual_patch: tuple[int, ...] = (5, 16, 16, 3)
    width: int = 320
    depth: int = 6
    heads: int = 4
    mlp_ratio: float = 2.0
    qkv_bias: bool = False
    fusion: Literal["saf", "caf"] = "saf"
    decoder_depth: int = 3
    decoder_heads: int = 4
    decoder_fusion: Literal["saf", "caf"] = "saf"
    drop_path: float = 0.0
    norm_pix_loss: bool = True

    def __post_init__(self) -> None:
        self.modalities = tuple(self.modalities)
        for m in self.modalities:
            shape, patch = self.input_shape(m), tuple(getattr(self, f"{m}_patch"))
            if len(shape) != len(patch) or any(n % p for n, p in zip(shape, patch)):
                raise MAEConfigError(f"{m}_patch {patch} does not divide the {m} input {shape}")

    def input_shape(self, modality: str) -> tuple[int, ...]:
        """Shape of one sample: audio (T, bins), visual (T, H, W, C)."""
        if modality == "audio":
            return (self.audio_frames, self.audio_bins)
        return (self.visual_frames, self.image_size, self.image_size, self.channels)

    def grid(self, modality: str) -> tuple[int, ...]:
        """Patch grid for masking: (T, *S) without the channel axis."""
        g = patch_grid(self.input_shape(modality), tuple(getattr(self, f"{modality}_patch")))
        return g[:-1] if modality == "visual" else g

    def num_patches(self, modality: str) -> int:
        return math.prod(self.grid(modality))

    def patch_dim(self, modality: str) -> int:
        return math.prod(getattr(self, f"{modality}_patch"))


def raw_config_like(cfg: MAEConfig, audio_bins_per_code: int = 8, pixels_per_code: int = 4,
                    channels: int = 3) -> RawMAEConfig:
    """The raw baseline matching a discrete config: same transformer, patches covering the same
    media (paper: an audio code = 8 of 512 bins, a visual code = 4 × 4 pixels)."""
    a, v = cfg.spec("audio") if "audio" in cfg.modalities else None, \
        cfg.spec("visual") if "visual" in cfg.modalities else None
    kw = {}
    if a is not None:
        kw.update(audio_frames=a.frames, audio_bins=a.token_shape[0] * audio_bins_per_code,
                  audio_patch=(a.patch[0], a.patch[1] * audio_bins_per_code))
    if v is not None:
        kw.update(visual_frames=v.frames, image_size=v.token_shape[0] * pixels_per_code, channels=channels,
                  visual_patch=(v.patch[0], v.patch[1] * pixels_per_code, v.patch[2] * pixels_per_code, channels))
    same = ("width", "depth", "heads", "mlp_ratio", "qkv_bias", "fusion", "decoder_depth", "decoder_heads",
            "decoder_fusion", "drop_path")
    return RawMAEConfig(modalities=cfg.modalities, **kw, **{k: getattr(cfg, k) for k in same})


def normalise_patches(x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Each patch (last axis) minus its mean over its standard deviation."""
    mean = x.mean(-1, keepdim=True)
    var = x.var(-1, keepdim=True, unbiased=False)
    return (x - mean) / (var + eps).sqrt()


@register_model("raw-mae")
class RawMAE(PretrainedModel):
    """MAE on spectrogram patches and pixel tubes (the baseline of the discrete model)."""

    config_class = RawMAEConfig

    def __init__(self, config: RawMAEConfig):
        super().__init__(config)
        w = config.width
        ms = config.modalities
        self.patch_embed = nn.ModuleDict({m: nn.Linear(config.patch_dim(m), w) for m in ms})
        self.pos_embed = nn.ParameterDict({m: nn.Parameter(torch.zeros(1, config.num_patches(m), w)) for m in ms})
        self.modality_embed = nn.ParameterDict({m: nn.Parameter(torch.zeros(1, 1, w)) for m in ms})
        self.encoder = _Fusion(config, config.fusion, config.depth, config.heads, final_norm=True)  # type: ignore[arg-type]
        self.mask_token = nn.Parameter(torch.zeros(1, 1, w))
        self.dec_pos_embed = nn.ParameterDict({m: nn.Parameter(torch.zeros(1, config.num_patches(m), w)) for m in ms})
        self.dec_modality_embed = nn.ParameterDict({m: nn.Parameter(torch.zeros(1, 1, w)) for m in ms})
        self.decoder = _Fusion(config, config.decoder_fusion, config.decoder_depth, config.decoder_heads,  # type: ignore[arg-type]
                               final_norm=False)
        self.pred = nn.ModuleDict({m: nn.Linear(w, config.patch_dim(m)) for m in ms})
        init_weights(self)
        for p in [*self.pos_embed.values(), *self.modality_embed.values(), *self.dec_pos_embed.values(),
                  *self.dec_modality_embed.values()]:
            trunc_normal_(p, std=0.02)

    def mask_grids(self) -> dict[str, tuple[int, ...]]:
        return {m: self.config.grid(m) for m in self.config.modalities}

    def no_weight_decay(self) -> set[str]:
        names = {"mask_token"}
        for m in self.config.modalities:
            names |= {f"pos_embed.{m}", f"modality_embed.{m}", f"dec_pos_embed.{m}", f"dec_modality_embed.{m}"}
        return names

    def forward(self, inputs: dict[str, torch.Tensor], masks: dict[str, Mask]) -> dict[str, torch.Tensor]:
        """``inputs``: audio ``(B, T, bins)`` log-spectrogram, visual ``(B, T, H, W, C)`` pixels.
        Returns ``loss_sum_<m>`` (sum over masked patches of the per-patch MSE) and ``count_<m>``."""
        cfg = self.config
        patches = {m: patchify(inputs[m], tuple(getattr(cfg, f"{m}_patch"))) for m in cfg.modalities}
        x = {}
        for m, p in patches.items():
            ids = masks[m].ids_keep
            x[m] = self.patch_embed[m](_gather_rows(p, ids)) + self.pos_embed[m][0][ids] + self.modality_embed[m]
        enc = self.encoder(x)
        dec_in = {}
        for m, z in enc.items():
            b, _, w = z.shape
            full = torch.cat([z, self.mask_token.to(z.dtype).expand(b, masks[m].num_masked, w)], 1)
            dec_in[m] = _gather_rows(full, masks[m].ids_restore) + self.dec_pos_embed[m] + self.dec_modality_embed[m]
        dec = self.decoder(dec_in)
        out = {}
        for m in cfg.modalities:
            ids = masks[m].ids_masked
            pred = self.pred[m](_gather_rows(dec[m], ids)).float()      # masked patches only
            target = _gather_rows(patches[m], ids).float()
            if cfg.norm_pix_loss:
                target = normalise_patches(target)
            out[f"loss_sum_{m}"] = (pred - target).pow(2).mean(-1).sum()
            out[f"count_{m}"] = torch.tensor(ids.numel(), device=pred.device)
        return out

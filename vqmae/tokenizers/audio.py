"""The audio tokenizer: a per-frame 1-D convolutional VQ-VAE on STFT power spectra.

    tok = AudioVQVAE(audio_preset("paper"))
    x = tok.prepare(wave)          # (S,) float32 at 16 kHz -> (S // 320, 513) power frames
    codes = tok.encode(x)          # (T, 64) int64 in [0, 256)
    power = tok.decode(codes)      # (T, 513) positive power frames

Each STFT frame is one 1-D signal of F = n_fft/2 + 1 bins (``context`` > 0 adds the
neighbouring frames as extra input channels; the frame itself is still what is coded). The
encoder halves the frequency axis three times (F = 8P + 1 -> P positions), a quantizer codes
each position, and the decoder mirrors the encoder and ends in ``exp()``, so it outputs a
positive power spectrum.

Presets (:func:`audio_preset`): ``paper`` (the published stack: raw power in, BatchNorm, tanh,
codebook 256 × 8, Itakura–Saito loss; ~23 k parameters), ``base`` (our default: standardised
log-power input, no batch statistics, log-spectral loss, 64 channels, 512 codes with k-means
init, EMA 0.95 and dead-code replacement), ``demo`` (``base``'s recipe at the paper's size, 256
codes) and ``tiny`` (tests; uses ``context`` 1).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from vqmae.checkpoint import register_model
from vqmae.config import setting
from vqmae.tokenizers.base import Tokenizer, config_from_preset
from vqmae.tokenizers.layers import (
    ResidualStack,
    activation,
    conv,
    conv_transpose,
    eval_mode,
    module_device,
    norm_layer,
)
from vqmae.tokenizers.quantizer import QuantizerConfig, VectorQuantizer
from vqmae.tokenizers.spectrogram import power_spectrogram


@dataclass
class AudioVQVAEConfig:
    """Architecture + front end of the audio VQ-VAE (see the module docstring)."""

    sample_rate: int = setting(16000, ge=1, help="Sample rate (Hz) of the input waves.")
    n_fft: int = setting(1024, ge=16)
    """STFT size; F = n_fft/2 + 1 bins, which must be 8P + 1 (P = coded positions per frame)."""
    hop_length: int = setting(320, ge=1, help="STFT hop (samples); frames per second = sample_rate / hop_length.")
    win_length: int = setting(0, ge=0)
    """0 = n_fft."""
    input_transform: Literal["power", "log"] = "power"
    """What the encoder sees: the raw power (paper), or log(power + power_floor) standardised
    with per-bin statistics of the training frames (buffers ``log_mean``/``log_std``, set by
    :meth:`AudioVQVAE.fit_normalization`); the decoder then predicts standardised log power."""
    power_floor: float = setting(1e-10, gt=0)
    """Added to the power before logs and ratios (the reference's Itakura–Saito epsilon)."""
    context: int = setting(0, ge=0)
    """Neighbouring STFT frames on each side given to the encoder as extra input channels."""
    hidden: int = setting(32, ge=2)
    """Channels after the second downsampling (the first has hidden/2)."""
    residual_layers: int = setting(1, ge=0, help="Residual blocks of encoder and decoder.")
    residual_hidden: int = setting(32, ge=1, help="Channels inside a residual block.")
    embedding_dim: int = setting(8, ge=1)
    """Latent dimension per coded position."""
    norm: Literal["batch", "group", "none"] = "batch"
    """Normalisation after each convolution (batch: BatchNorm; group: GroupNorm; none)."""
    act: Literal["tanh", "relu"] = "tanh"
    """Activation of encoder and decoder."""
    loss: Literal["itakura_saito", "log_mse"] = "itakura_saito"
    """Reconstruction loss: Itakura–Saito divergence on power, or MSE of natural-log power."""
    quantizer: QuantizerConfig = field(default_factory=QuantizerConfig)

    def __post_init__(self) -> None:
        if isinstance(self.quantizer, dict):
            self.quantizer = QuantizerConfig(**self.quantizer)
        bins = self.n_fft // 2 + 1
        if self.n_fft % 16 != 0:
            raise ValueError(f"n_fft must be a multiple of 16 (F = 8P + 1 bins), got {self.n_fft}")
        if self.hidden % 2 != 0:
            raise ValueError(f"hidden must be even, got {self.hidden}")
        if self.context < 0:
            raise ValueError(f"context must be >= 0, got {self.context}")
        assert (bins - 1) % 8 == 0

    @property
    def bins(self) -> int:
        return self.n_fft // 2 + 1

    @property
    def positions(self) -> int:
        """Coded positions per frame (64 for n_fft 1024)."""
        return (self.bins - 1) // 8


AUDIO_PRESETS: dict[str, dict[str, Any]] = {
    # The published stack (VQ-MAE-S / VQ-MAE-AV speech VQ-VAE), see docs/TOKENIZERS.md.
    "paper": dict(
        input_transform="power", norm="batch", act="tanh", loss="itakura_saito", context=0,
        hidden=32, residual_layers=1, residual_hidden=32, embedding_dim=8, power_floor=1e-10,
        quantizer=QuantizerConfig(codebook_size=256, decay=0.99, commitment_weight=0.25),
    ),
    # Ours: log-power input (standardised per bin), no batch statistics, log-spectral loss,
    # wider (64 channels, 2 residual layers), 512 codes with k-means init, EMA 0.95 and
    # dead-code replacement. Chosen by measured held-out LSD (docs/TOKENIZERS.md); temporal
    # context (``context``) measured no better on the synthetic corpus, so it is off.
    "base": dict(
        input_transform="log", norm="none", act="tanh", loss="log_mse", context=0,
        hidden=64, residual_layers=2, residual_hidden=32, embedding_dim=8, power_floor=1e-4,
        quantizer=QuantizerConfig(codebook_size=512, decay=0.95, commitment_weight=0.25,
                                  kmeans_init=True, threshold_ema_dead_code=2.0),
    ),
    # ``base``'s recipe at the paper's size, which the CPU demo trains in about a minute;
    # EMA decay 0.95 lets dead codes be replaced within the few hundred steps it gets.
    "demo": dict(
        input_transform="log", norm="none", act="tanh", loss="log_mse", context=0,
        hidden=32, residual_layers=1, residual_hidden=32, embedding_dim=8, power_floor=1e-4,
        quantizer=QuantizerConfig(codebook_size=256, decay=0.95, commitment_weight=0.25,
                                  kmeans_init=True, threshold_ema_dead_code=2.0),
    ),
    # For tests: 193 bins -> 24 positions, about 1.5 k parameters.
    "tiny": dict(
        n_fft=384, input_transform="log", norm="none", act="tanh", loss="log_mse", context=1,
        hidden=8, residual_layers=1, residual_hidden=8, embedding_dim=4, power_floor=1e-4,
        quantizer=QuantizerConfig(codebook_size=32, decay=0.9, commitment_weight=0.25,
                                  kmeans_init=True, threshold_ema_dead_code=1.0),
    ),
}


def audio_preset(name: str, **overrides: Any) -> AudioVQVAEConfig:
    """A named audio configuration (``paper``, ``base``, ``demo``, ``tiny``) with overrides."""
    return config_from_preset(AUDIO_PRESETS, name, AudioVQVAEConfig, "audio", **overrides)


class AudioEncoder(nn.Module):
    """(B, 1 + 2·context, F) -> (B, hidden, P): three stride-2 convolutions + residual stack."""

    def __init__(self, cfg: AudioVQVAEConfig):
        super().__init__()
        h, c_in = cfg.hidden, 1 + 2 * cfg.context
        self.conv1 = conv(1, c_in, h // 2, kernel_size=4, stride=2, padding=1)
        self.norm1 = norm_layer(cfg.norm, h // 2, 1)
        self.conv2 = conv(1, h // 2, h, kernel_size=4, stride=2, padding=1)
        self.norm2 = norm_layer(cfg.norm, h, 1)
        self.conv3 = conv(1, h, h, kernel_size=3, stride=2, padding=1)
        self.norm3 = norm_layer(cfg.norm, h, 1)
        self.residual = ResidualStack(1, h, cfg.residual_hidden, cfg.residual_layers, cfg.act)
        self.act = activation(cfg.act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.norm1(self.conv1(x)))
        x = self.act(self.norm2(self.conv2(x)))
        x = self.norm3(self.conv3(x))
        return self.residual(x)


class AudioDecoder(nn.Module):
    """(B, embedding_dim, P) -> (B, 1, 8P + 1) log power (the model applies exp)."""

    def __init__(self, cfg: AudioVQVAEConfig):
        super().__init__()
        h = cfg.hidden
        self.conv_in = conv(1, cfg.embedding_dim, h, kernel_size=3, stride=1, padding=1)
        self.residual = ResidualStack(1, h, cfg.residual_hidden, cfg.residual_layers, cfg.act)
        self.up1 = conv_transpose(1, h, h, kernel_size=4, stride=2, padding=1)
        self.norm1 = norm_layer(cfg.norm, h, 1)
        self.up2 = conv_transpose(1, h, h // 2, kernel_size=4, stride=2, padding=1)
        self.norm2 = norm_layer(cfg.norm, h // 2, 1)
        self.up3 = conv_transpose(1, h // 2, 1, kernel_size=3, stride=2, padding=0)
        self.act = activation(cfg.act)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.residual(self.conv_in(z))
        x = self.act(self.norm1(self.up1(x)))
        x = self.act(self.norm2(self.up2(x)))
        return self.up3(x)


@register_model("audio-vqvae")
class AudioVQVAE(Tokenizer):
    """Audio VQ-VAE tokenizer (registered as ``audio-vqvae``)."""

    config_class = AudioVQVAEConfig
    modality = "audio"

    def __init__(self, config: AudioVQVAEConfig):
        super().__init__(config)
        self.encoder = AudioEncoder(config)
        self.pre_vq = conv(1, config.hidden, config.embedding_dim, kernel_size=1)
        self.quantizer = VectorQuantizer(config.embedding_dim, config.quantizer)
        self.decoder = AudioDecoder(config)
        if config.input_transform == "log":
            self.register_buffer("log_mean", torch.zeros(config.bins))
            self.register_buffer("log_std", torch.ones(1))

    # ------------------------------------------------------------------ interface facts
    @property
    def codebook_size(self) -> int:
        return self.config.quantizer.codebook_size

    @property
    def token_shape(self) -> tuple[int, ...]:
        return (self.config.positions,)

    @property
    def frames_per_second(self) -> float:
        return self.config.sample_rate / self.config.hop_length

    @property
    def sample_rate(self) -> int:
        return self.config.sample_rate

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (self.config.bins,)

    def extra_metadata(self) -> dict[str, Any]:
        return {"modality": self.modality, "codebook_size": self.codebook_size,
                "token_shape": list(self.token_shape), "frames_per_second": self.frames_per_second,
                "input_shape": list(self.input_shape)}

    # ----------------------------------------------------------------------- model path
    @torch.no_grad()
    def fit_normalization(self, power: torch.Tensor) -> None:
        """Set ``log_mean`` (F,) and ``log_std`` (1,) from training power frames (N, F) (log input)."""
        if self.config.input_transform != "log":
            return
        logp = torch.log(power.double().clamp_min(0) + self.config.power_floor)
        mean = logp.mean(dim=0)
        self.log_mean.copy_(mean.float())
        self.log_std.copy_((logp - mean).std().clamp_min(1e-3).float())

    def _encoder_input(self, power: torch.Tensor) -> torch.Tensor:
        if self.config.input_transform == "log":
            logp = torch.log(power.float().clamp_min(0) + self.config.power_floor)
            return (logp - self.log_mean) / self.log_std
        return power

    def encode_latents(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1 + 2·context, F) power windows -> (B, P, embedding_dim) continuous latents."""
        z = self.pre_vq(self.encoder(self._encoder_input(x)))
        return rearrange(z, "b d p -> b p d")

    def decode_latents(self, q: torch.Tensor) -> torch.Tensor:
        """(B, P, embedding_dim) -> (B, F) natural-log power (exp gives the power)."""
        y = self.decoder(rearrange(q, "b p d -> b d p"))[:, 0].float()
        if self.config.input_transform == "log":
            y = y * self.log_std + self.log_mean
        return y

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """x: (B, 1 + 2·context, F) power windows (centre frame in the middle), or (B, F) when
        context is 0.

        Returns ``loss`` (reconstruction + commitment, batch means), ``recon_loss``,
        ``commit_loss``, ``log_recon`` (B, F), ``recon`` (B, F) power = exp(log_recon),
        ``indices`` (B, P).
        """
        if x.ndim == 2:
            x = x[:, None]
        c = self.config.context
        if x.ndim != 3 or x.shape[1] != 1 + 2 * c or x.shape[2] != self.config.bins:
            raise ValueError(f"expected (B, {1 + 2 * c}, {self.config.bins}) power windows, "
                             f"got {tuple(x.shape)}")
        target = x[:, c].float()
        q = self.quantizer(self.encode_latents(x))
        log_recon = self.decode_latents(q.quantized)
        recon_loss = reconstruction_loss(target, log_recon, self.config.loss, self.config.power_floor)
        return {"loss": recon_loss + q.commit_loss, "recon_loss": recon_loss,
                "commit_loss": q.commit_loss, "log_recon": log_recon, "recon": torch.exp(log_recon),
                "indices": q.indices}

    # ------------------------------------------------------------------ tokenizer API
    def prepare(self, media: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Waveform (S,) float at ``sample_rate`` -> power frames (S // hop, F) float32 (CPU)."""
        wave = torch.as_tensor(np.asarray(media) if not isinstance(media, torch.Tensor) else media)
        if wave.ndim != 1:
            raise ValueError(f"expected a mono waveform (S,), got shape {tuple(wave.shape)}")
        return power_spectrogram(wave.float().cpu(), self.config.n_fft, self.config.hop_length,
                                 self.config.win_length or None)

    def windows(self, x: torch.Tensor) -> torch.Tensor:
        """Power frames (T, F) -> (T, 1 + 2·context, F) windows, edges repeated."""
        c = self.config.context
        if c == 0:
            return x[:, None]
        padded = torch.cat([x[:1].expand(c, -1), x, x[-1:].expand(c, -1)], dim=0)
        return padded.unfold(0, 1 + 2 * c, 1).permute(0, 2, 1)

    def _check_frames(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.as_tensor(x)
        if x.ndim != 2 or x.shape[1] != self.config.bins:
            raise ValueError(f"expected power frames (T, {self.config.bins}), got {tuple(x.shape)}")
        return x.float()

    def encode(self, x: torch.Tensor, batch_size: int = 4096) -> torch.Tensor:
        """Power frames (T, F) -> codes (T, P) int64 (eval mode, batched; same device as x)."""
        x = self._check_frames(x)
        device = module_device(self)
        out = []
        with eval_mode(self):
            for s in range(0, x.shape[0], batch_size):
                # context windows need the neighbours: cut windows from the whole sequence
                lo, hi = s, min(s + batch_size, x.shape[0])
                w = self.windows(x)[lo:hi] if self.config.context else x[lo:hi, None]
                out.append(self.quantizer(self.encode_latents(w.to(device))).indices.to(x.device))
        if not out:
            return torch.zeros((0, *self.token_shape), dtype=torch.long, device=x.device)
        return torch.cat(out)

    def decode(self, codes: torch.Tensor, batch_size: int = 4096) -> torch.Tensor:
        """Codes (T, P) int -> power frames (T, F) float32 (eval mode, batched)."""
        codes = torch.as_tensor(codes)
        if codes.ndim != 2 or codes.shape[1] != self.config.positions:
            raise ValueError(f"expected codes (T, {self.config.positions}), got {tuple(codes.shape)}")
        device = module_device(self)
        out = []
        with eval_mode(self):
            for s in range(0, codes.shape[0], batch_size):
                q = self.quantizer.lookup(codes[s:s + batch_size].to(device).long())
                out.append(torch.exp(self.decode_latents(q)).to(codes.device))
        if not out:
            return torch.zeros((0, self.config.bins), device=codes.device)
        return torch.cat(out)


def itakura_saito(target: torch.Tensor, log_recon: torch.Tensor, eps: float) -> torch.Tensor:
    """Mean Itakura–Saito divergence D(P || P̂) with P̂ = exp(log_recon), both + eps (fp32)."""
    target = target.float().clamp_min(0) + eps
    recon = torch.exp(log_recon.float()) + eps
    ratio = target / recon
    return (ratio - torch.log(ratio) - 1.0).mean()


def reconstruction_loss(target: torch.Tensor, log_recon: torch.Tensor, kind: str, eps: float) -> torch.Tensor:
    """Batch-mean reconstruction loss of power frames ``target`` from log power ``log_recon``."""
    if kind == "itakura_saito":
        return itakura_saito(target, log_recon, eps)
    if kind == "log_mse":
        return F.mse_loss(log_recon.float(), torch.log(target.float().clamp_min(0) + eps))
    raise ValueError(f"unknown audio loss '{kind}'")

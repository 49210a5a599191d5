"""The audio encoder: log-mel frames -> one feature vector per video frame.

    enc = AudioEncoder(AudioEncoderConfig())
    feats = enc.encode(wave)                # (B, S) at 16 kHz -> (B, S // 640, D) at 25 fps
    enc.save_pretrained("out/audio_encoder"); AudioEncoder.from_pretrained("out/audio_encoder")

Stack: log-mel (64 bands, 10 ms hop) standardised per band with buffers ``mel_mean`` /
``mel_std`` (:meth:`fit_normalization`; loudness differences between clips are kept), a
Conv1d stem, one strided Conv1d from the 100 Hz hop rate to the 25 Hz video rate (kernel 2r,
stride r = 4 hops), ``conv_layers`` residual conv blocks (kernel 3, GELU), an optional
bidirectional GRU, LayerNorm and a Linear to ``dim``. Output frame ``t`` covers the audio of
video frame ``t`` (samples ``[640 t, 640 (t + 1))``) plus the receptive field around it.

It is the part of a ``vssl`` model kept for downstream tasks; it runs without video.
"""

from __future__ import annotations

import torch
from torch import nn

from vqmae.checkpoint import PretrainedModel, register_model
from vqmae.vssl.config import AudioEncoderConfig
from vqmae.vssl.features import LogMel


class _ResConv(nn.Module):
    def __init__(self, c: int, dropout: float):
        super().__init__()
        self.norm = nn.LayerNorm(c)  # per frame: a frame's features never see the clip's statistics
        self.conv = nn.Conv1d(c, c, 3, padding=1)
        self.act = nn.GELU()
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.drop(self.act(self.conv(self.norm(x.transpose(1, 2)).transpose(1, 2))))


@register_model("vssl-audio-encoder")
class AudioEncoder(PretrainedModel):
    """``encode((B, S)) -> (B, T, D)`` with ``T = S // samples_per_frame`` (see module doc)."""

    config_class = AudioEncoderConfig

    def __init__(self, config: AudioEncoderConfig):
        super().__init__(config)
        c = config
        self.logmel = LogMel(c.sample_rate, c.n_fft, c.hop_length, c.n_mels)
        self.register_buffer("mel_mean", torch.full((c.n_mels,), -6.0))
        self.register_buffer("mel_std", torch.full((c.n_mels,), 4.0))
        r = c.hops_per_frame
        self.stem = nn.Sequential(nn.Conv1d(c.n_mels, c.channels, 3, padding=1), nn.GELU())
        if r > 1:
            self.down = nn.Conv1d(c.channels, c.channels, 2 * r, stride=r, padding=r // 2)
        else:
            self.down = nn.Conv1d(c.channels, c.channels, 1)
        self.blocks = nn.Sequential(*[_ResConv(c.channels, c.dropout) for _ in range(c.conv_layers)])
        if c.rnn == "gru":
            self.rnn = nn.GRU(c.channels, c.channels // 2, num_layers=c.rnn_layers, batch_first=True,
                              bidirectional=True, dropout=c.dropout if c.rnn_layers > 1 else 0.0)
            rnn_out = 2 * (c.channels // 2)
        else:
            self.rnn = None
            rnn_out = c.channels
        self.norm = nn.LayerNorm(rnn_out)
        self.proj = nn.Linear(rnn_out, c.dim)

    # ---------------------------------------------------------------- facts for downstream use
    @property
    def out_dim(self) -> int:
        """D, the size of each feature vector."""
        return self.config.dim

    @property
    def frame_rate(self) -> float:
        """Feature vectors per second (the video rate, 25)."""
        return self.config.fps

    @property
    def samples_per_frame(self) -> int:
        return self.config.samples_per_frame

    @property
    def sample_rate(self) -> int:
        return self.config.sample_rate

    # ------------------------------------------------------------------------------ compute
    @torch.no_grad()
    def fit_normalization(self, waves: torch.Tensor | list[torch.Tensor]) -> None:
        """Set ``mel_mean`` / ``mel_std`` (per band) from training audio: ``(B, S)`` or a list of ``(S,)``."""
        items = [waves] if isinstance(waves, torch.Tensor) and waves.ndim == 2 else list(waves)
        mels = [self.logmel(w.reshape(-1, w.shape[-1]).to(self.mel_mean.device)) for w in items]
        flat = torch.cat([m.transpose(1, 2).reshape(-1, m.shape[1]) for m in mels])
        self.mel_mean.copy_(flat.mean(0))
        self.mel_std.copy_(flat.std(0).clamp_min(1e-3))

    def features_in(self, wave: torch.Tensor) -> torch.Tensor:
        """``(B, S)`` -> standardised log-mel ``(B, n_mels, 4T + 1)``."""
        mel = self.logmel(wave)
        return (mel - self.mel_mean[:, None]) / self.mel_std[:, None]

    def encode(self, wave: torch.Tensor) -> torch.Tensor:
        """``(B, S)`` or ``(S,)`` float waveform (16 kHz, peak-normalised like the clip loader)
        -> ``(B, T, D)`` with ``T = S // samples_per_frame`` (one vector per 25 fps video frame)."""
        if wave.ndim == 1:
            wave = wave[None]
        t = wave.shape[-1] // self.samples_per_frame
        if t < 1:
            raise ValueError(f"audio of {wave.shape[-1]} samples is shorter than one video frame "
                             f"({self.samples_per_frame} samples)")
        wave = wave[:, : t * self.samples_per_frame]
        x = self.down(self.stem(self.features_in(wave)))[:, :, :t]  # (B, C, T)
        x = self.blocks(x).transpose(1, 2)  # (B, T, C)
        if self.rnn is not None:
            x, _ = self.rnn(x)
        return self.proj(self.norm(x))

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        return self.encode(wave)

"""Talking-face generator: identity encoder (one still face) + audio-driven frame decoder.

Images are float ``(N, 3, H, W)`` in [-1, 1] (``H = W = face_size``).

* :class:`IdentityEncoder` — the still ``(B, 3, H, W)`` -> bottleneck ``(B, C_L, H/2^L, W/2^L)``
  and U-Net skips at ``H, H/2, ..., H/2^(L-1)``.
* :func:`audio_windows` — ``(B, T, D)`` -> ``(B, T, (2k+1) D)``: the features of steps
  ``t-k .. t+k`` (edges repeated), so frame ``t`` is generated from the audio around it.
* :class:`FrameDecoder` — identity code + per-frame audio code -> ``(B, T, 3, H, W)``: the audio
  code becomes a spatial map (a Linear to ``A × h × w``, so it can act where the mouth is)
  concatenated to the bottleneck, and modulates every up level (FiLM); skips are concatenated
  U-Net style.
* :class:`FrameDiscriminator` — optional patch discriminator ``(N, 3, H, W) -> (N, 1, h, w)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vqmae.vssl.config import GeneratorConfig


def _ch(cfg: GeneratorConfig, level: int) -> int:
    return min(cfg.base_channels * 2 ** level, cfg.max_channels)


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.GroupNorm(min(8, cout), cout), nn.GELU())


class IdentityEncoder(nn.Module):
    """``(B, 3, H, W)`` -> ``(bottleneck (B, C_L, H/2^L, W/2^L), skips [(B, C_i, H/2^i, W/2^i)] i < L)``."""

    def __init__(self, cfg: GeneratorConfig):
        super().__init__()
        self.stem = _block(3, _ch(cfg, 0))
        self.downs = nn.ModuleList()
        for i in range(cfg.levels):
            cin, cout = _ch(cfg, i), _ch(cfg, i + 1)
            self.downs.append(nn.Sequential(nn.Conv2d(cin, cout, 4, stride=2, padding=1),
                                            nn.GroupNorm(min(8, cout), cout), nn.GELU(), _block(cout, cout)))

    def forward(self, still: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        x = self.stem(still)
        skips = []
        for down in self.downs:
            skips.append(x)
            x = down(x)
        return x, skips


def audio_windows(feats: torch.Tensor, k: int) -> torch.Tensor:
    """``(B, T, D)`` -> ``(B, T, (2k+1) D)``; step ``t`` gets steps ``t-k .. t+k`` (edges repeated)."""
    if k == 0:
        return feats
    b, t, d = feats.shape
    padded = F.pad(feats.transpose(1, 2), (k, k), mode="replicate")  # (B, D, T + 2k)
    win = padded.unfold(-1, 2 * k + 1, 1)  # (B, D, T, 2k+1)
    return win.permute(0, 2, 3, 1).reshape(b, t, (2 * k + 1) * d)


class _Film(nn.Module):
    def __init__(self, code: int, channels: int):
        super().__init__()
        self.lin = nn.Linear(code, 2 * channels)
        nn.init.zeros_(self.lin.weight)
        nn.init.zeros_(self.lin.bias)

    def forward(self, x: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        scale, shift = self.lin(code)[:, :, None, None].chunk(2, dim=1)
        return x * (1 + scale) + shift


class FrameDecoder(nn.Module):
    """Generate every frame: ``(bottleneck (B, C_L, h, w), skips, audio (B, T, D))`` -> ``(B, T, 3, H, W)``."""

    def __init__(self, cfg: GeneratorConfig, audio_dim: int):
        super().__init__()
        self.cfg = cfg
        a = cfg.audio_code
        self.audio = nn.Sequential(nn.Linear((2 * cfg.audio_window + 1) * audio_dim, 2 * a), nn.GELU(),
                                   nn.Linear(2 * a, a))
        cl = _ch(cfg, cfg.levels)
        self.hw = cfg.face_size // 2 ** cfg.levels
        self.spatial = nn.Linear(a, a * self.hw * self.hw)
        self.fuse = _block(cl + a, cl)
        self.ups = nn.ModuleList()
        self.merges = nn.ModuleList()
        self.films = nn.ModuleList()
        for i in reversed(range(cfg.levels)):
            cin, cout = _ch(cfg, i + 1), _ch(cfg, i)
            self.ups.append(nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"),
                                          nn.Conv2d(cin, cout, 3, padding=1), nn.GELU()))
            self.merges.append(_block(2 * cout if cfg.skips else cout, cout))
            self.films.append(_Film(a, cout))
        self.out = nn.Conv2d(_ch(cfg, 0), 3, 1)

    def audio_code(self, audio: torch.Tensor) -> torch.Tensor:
        """``(B, T, D)`` -> ``(B, T, audio_code)`` from the window around each step."""
        return self.audio(audio_windows(audio, self.cfg.audio_window))

    def forward(self, bottleneck: torch.Tensor, skips: list[torch.Tensor],
                audio: torch.Tensor) -> torch.Tensor:
        b, t = audio.shape[:2]
        code = self.audio_code(audio).reshape(b * t, -1)  # (BT, A)

        def per_frame(x: torch.Tensor) -> torch.Tensor:  # (B, ...) -> (B*T, ...)
            return x[:, None].expand(b, t, *x.shape[1:]).reshape(b * t, *x.shape[1:])

        amap = self.spatial(code).reshape(b * t, -1, self.hw, self.hw)
        x = torch.cat([per_frame(bottleneck), amap], dim=1)
        x = self.fuse(x)
        for j, (up, merge, film) in enumerate(zip(self.ups, self.merges, self.films)):
            x = up(x)
            if self.cfg.skips:
                x = torch.cat([x, per_frame(skips[len(skips) - 1 - j])], dim=1)
            x = film(merge(x), code)
        img = torch.tanh(self.out(x))
        return img.reshape(b, t, *img.shape[1:])


class FrameDiscriminator(nn.Module):
    """Patch discriminator on single frames: ``(N, 3, H, W)`` -> ``(N, 1, H/8, W/8)`` realness scores."""

    def __init__(self, channels: int = 32):
        super().__init__()
        c = channels
        self.net = nn.Sequential(
            nn.Conv2d(3, c, 4, 2, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(c, 2 * c, 4, 2, 1), nn.GroupNorm(8, 2 * c), nn.LeakyReLU(0.2),
            nn.Conv2d(2 * c, 4 * c, 4, 2, 1), nn.GroupNorm(8, 4 * c), nn.LeakyReLU(0.2),
            nn.Conv2d(4 * c, 1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

"""Tiny tokenizers, a fake clip loader and a fake corpus for the token-store / tokenize tests.

The fake "media" files are small JSON files ({"frames": T, "seed": s}); ``load_clip`` turns one
into a deterministic aligned clip (audio T*640 samples, faces (T, 16, 16, 3)), so the tests
exercise the job (parts, resume, processes, errors) without video decoding. ``FAKE_SLEEP`` (env,
seconds per clip) slows loading down for the kill -9 test.
Importing this module registers the test tokenizers "test-audio-tok" / "test-visual-tok".
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from torch import nn

from vqmae.checkpoint import register_model
from vqmae.data.manifest import ClipRecord, write_manifest
from vqmae.tokenizers.base import Tokenizer

HOP = 320
FACE = 16


@dataclass
class FakeAudioConfig:
    codebook: int = 32
    positions: int = 4
    dim: int = 3
    seed: int = 0


@dataclass
class FakeVisualConfig:
    codebook: int = 40
    patch: int = 4
    dim: int = 3
    seed: int = 0


def _quantize(z: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """z (..., D), codebook (K, D) -> int64 (...) nearest code."""
    d = (z.unsqueeze(-2) - codebook).pow(2).sum(-1)
    return d.argmin(-1)


@register_model("test-audio-tok")
class FakeAudioTok(Tokenizer):
    modality = "audio"
    config_class = FakeAudioConfig
    sample_rate = 16000

    def __init__(self, config: FakeAudioConfig):
        super().__init__(config)
        g = torch.Generator().manual_seed(config.seed)
        self.proj = nn.Linear(HOP, config.positions * config.dim)
        with torch.no_grad():
            self.proj.weight.copy_(torch.randn(self.proj.weight.shape, generator=g) / HOP**0.5)
            self.proj.bias.zero_()
        self.codebook = nn.Parameter(torch.randn(config.codebook, config.dim, generator=g))

    codebook_size = property(lambda self: self.config.codebook)
    token_shape = property(lambda self: (self.config.positions,))
    frames_per_second = property(lambda self: self.sample_rate / HOP)

    def prepare(self, media: torch.Tensor) -> torch.Tensor:
        """(S,) -> (S // 320, 320)."""
        T = media.shape[0] // HOP
        return media[: T * HOP].reshape(T, HOP).float()

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        z = self.proj(x).reshape(x.shape[0], self.config.positions, self.config.dim)
        return _quantize(z, self.codebook)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


@register_model("test-visual-tok")
class FakeVisualTok(Tokenizer):
    modality = "visual"
    config_class = FakeVisualConfig

    def __init__(self, config: FakeVisualConfig):
        super().__init__(config)
        g = torch.Generator().manual_seed(config.seed + 1)
        self.conv = nn.Conv2d(3, config.dim, config.patch, stride=config.patch)
        with torch.no_grad():
            self.conv.weight.copy_(torch.randn(self.conv.weight.shape, generator=g) / 4)
            self.conv.bias.zero_()
        self.codebook = nn.Parameter(torch.randn(config.codebook, config.dim, generator=g))

    codebook_size = property(lambda self: self.config.codebook)
    token_shape = property(lambda self: (FACE // self.config.patch,) * 2)
    frames_per_second = property(lambda self: 25.0)

    def prepare(self, media: torch.Tensor) -> torch.Tensor:
        """(T, H, W, 3) uint8 -> (T, 3, H, W) in [-0.5, 0.5]."""
        return media.permute(0, 3, 1, 2).float() / 255.0 - 0.5

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        z = self.conv(x).permute(0, 2, 3, 1)
        return _quantize(z, self.codebook)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


def save_tokenizers(folder: Path, seed: int = 0) -> tuple[Path, Path]:
    a = FakeAudioTok(FakeAudioConfig(seed=seed)).save_pretrained(folder / f"audio_tok{seed}")
    v = FakeVisualTok(FakeVisualConfig(seed=seed)).save_pretrained(folder / f"visual_tok{seed}")
    return a, v


def load_clip(path: str, clip_config: dict) -> SimpleNamespace:
    """The fake loader (contract-1 shaped): audio float32 (T*640,), faces uint8 (T, 16, 16, 3)."""
    delay = float(os.environ.get("FAKE_SLEEP", "0"))
    if delay:
        time.sleep(delay)
    spec = json.loads(Path(path).read_text())
    if spec.get("broken"):
        raise ValueError(f"{path}: cannot decode (test clip marked broken)")
    T = spec["frames"]
    rng = np.random.default_rng(spec["seed"])
    audio = rng.standard_normal(T * 640).astype(np.float32)
    faces = rng.integers(0, 256, (T, FACE, FACE, 3), dtype=np.uint8)
    return SimpleNamespace(audio=audio, faces=faces, fps=25.0, sample_rate=16000, path=path)


LOADER = "support.tokenize_fixture:load_clip"


def make_corpus(folder: Path, n: int = 30, broken: tuple[int, ...] = (), seed: int = 0) -> Path:
    """n fake clips of 20..90 video frames over 4 speakers; returns the manifest path."""
    rng = np.random.default_rng(seed)
    media = folder / "media"
    media.mkdir(parents=True, exist_ok=True)
    records = []
    for i in range(n):
        name = f"clip{i:04d}.json"
        spec = {"frames": int(rng.integers(20, 90)), "seed": seed * 100_000 + i, "broken": i in broken}
        (media / name).write_text(json.dumps(spec))
        records.append(ClipRecord(id=f"c{i:04d}", path=f"media/{name}", speaker=f"spk{i % 4}",
                                  label=i % 3, label_name=["a", "b", "c"][i % 3],
                                  targets={"arousal": i / n, "valence": -i / n}, dataset="fake"))
    return write_manifest(folder, records, root=folder, name="fake", classes=["a", "b", "c"])


def store_files(root: Path) -> dict[str, bytes]:
    """Every file of a store folder (relative path -> bytes), lock file and the run's settings
    record (tokenize_config*.json: paths, thread counts) excluded."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != ".lock" and not p.name.startswith("tokenize_config")}

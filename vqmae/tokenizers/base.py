"""The tokenizer interface. The MAE, the token writer and the classifier depend only on it.

A tokenizer turns one modality of an aligned clip into a grid of discrete codes per frame::

    x = tok.prepare(media)   # audio: waveform (S,) float32 at tok.sample_rate -> (T, *input_shape)
                             # visual: face crops (T, H, W, 3) uint8 at 25 fps  -> (T, 3, h, w) float
    codes = tok.encode(x)    # (T, *tok.token_shape) int64 in [0, tok.codebook_size)
    x_hat = tok.decode(codes)  # (T, *input_shape): back in the space of ``prepare``'s output

``encode``/``decode`` run in eval mode (no batch statistics from other files) and accept any T
(they batch internally). ``decode(encode(x))`` equals the model's quantized reconstruction exactly.
"""

from __future__ import annotations

import dataclasses
from abc import abstractmethod
from typing import Any, ClassVar, TypeVar

import torch

from vqmae.checkpoint import PretrainedModel


class Tokenizer(PretrainedModel):
    """Abstract base of :class:`AudioVQVAE` and :class:`VisualVQVAE`."""

    modality: ClassVar[str] = ""
    """'audio' or 'visual'."""

    @property
    @abstractmethod
    def codebook_size(self) -> int:
        """Number of codes K; tokens are in [0, K)."""

    @property
    @abstractmethod
    def token_shape(self) -> tuple[int, ...]:
        """Codes per frame: (64,) for the paper audio preset, (24, 24) for the visual one."""

    @property
    @abstractmethod
    def frames_per_second(self) -> float:
        """Token frames per second of media: 50 (audio, hop 320 at 16 kHz) or 25 (video)."""

    @abstractmethod
    def prepare(self, media: torch.Tensor) -> torch.Tensor:
        """Media -> model input frames (see the module docstring for shapes)."""

    @abstractmethod
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """(T, *input_shape) float -> (T, *token_shape) int64."""

    @abstractmethod
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """(T, *token_shape) int64 -> (T, *input_shape) float."""

    def tokenize(self, media: torch.Tensor) -> torch.Tensor:
        """``encode(prepare(media))``."""
        return self.encode(self.prepare(media))


C = TypeVar("C")


def config_from_preset(table: dict[str, dict[str, Any]], name: str, cls: type[C], kind: str,
                       **overrides: Any) -> C:
    """``cls`` built from the named entry of a preset ``table`` (nested configs copied), with
    ``overrides``; ValueError naming the known presets when ``name`` is not one."""
    if name not in table:
        raise ValueError(f"unknown {kind} preset '{name}' (known: {', '.join(table)})")
    kwargs = {k: (dataclasses.replace(v) if dataclasses.is_dataclass(v) else v)
              for k, v in table[name].items()}
    kwargs.update(overrides)
    return cls(**kwargs)

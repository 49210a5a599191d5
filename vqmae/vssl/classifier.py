"""A classifier / regressor on the pretrained VSSL audio encoder, in the evaluation harness's
model interface (see :mod:`vqmae.evaluation.protocol`), for raw waveforms.

    clf = VSSLClassifier.from_encoder("runs/vssl/audio_encoder", num_classes=6, num_targets=2)
    out = clf(wave=wave)                  # (B, S) 16 kHz -> (B, num_classes + num_targets)
    feats = clf.forward_features(wave)    # (B, T, D) encoder outputs; clf.forward_head(feats) = out
    clf.position_statistics(feats)        # (B, 2 D): mean and std over T (the logreg probe's features)
    clf.freeze_encoder()                  # linear probe

The input modality is ``wave``: peak-normalised waveforms as the clip loader returns them (the
harness's token inputs do not apply: this encoder reads audio, not tokens). Pooling over the
``T`` feature vectors: attention (one learned query scoring each frame) or the mean.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from vqmae.checkpoint import PretrainedModel, register_model
from vqmae.config import setting
from vqmae.vssl.config import AudioEncoderConfig
from vqmae.vssl.encoder import AudioEncoder


@dataclass
class VSSLClassifierConfig:
    encoder: AudioEncoderConfig = field(default_factory=AudioEncoderConfig)
    num_classes: int = setting(6, ge=0, help="class logits first in the output")
    num_targets: int = setting(0, ge=0, help="continuous outputs after the logits (e.g. arousal, valence)")
    pooling: Literal["attention", "mean"] = "attention"
    dropout: float = setting(0.1, ge=0, lt=1, help="dropout before the output layer")
    window_seconds: float = setting(2.0, gt=0, help=(
        "audio window the harness trains and scores on (the encoder itself takes any length)"))

    def __post_init__(self) -> None:
        if isinstance(self.encoder, dict):
            self.encoder = AudioEncoderConfig(**self.encoder)


@register_model("vssl-classifier")
class VSSLClassifier(PretrainedModel):
    """``forward(wave=(B, S)) -> (B, num_classes + num_targets)`` (module doc)."""

    config_class = VSSLClassifierConfig
    modalities = ("wave",)

    def __init__(self, config: VSSLClassifierConfig):
        super().__init__(config)
        self.encoder = AudioEncoder(config.encoder)
        d = config.encoder.dim
        self.score = nn.Linear(d, 1) if config.pooling == "attention" else None
        self.norm = nn.LayerNorm(d)
        self.drop = nn.Dropout(config.dropout)
        self.head = nn.Linear(d, config.num_classes + config.num_targets)
        self.info: dict[str, Any] = {}
        """What ``vqmae finetune`` records with a saved fold model (task, clip settings, fold)."""

    @classmethod
    def from_encoder(cls, folder: str | Path | AudioEncoder, **settings) -> VSSLClassifier:
        """A classifier whose encoder is the pretrained ``vssl-audio-encoder`` (folder or model)."""
        enc = folder if isinstance(folder, AudioEncoder) else AudioEncoder.from_pretrained(folder)
        model = cls(VSSLClassifierConfig(encoder=enc.config, **settings))
        model.encoder.load_state_dict(enc.state_dict())
        return model.train()

    def extra_metadata(self) -> dict[str, Any]:
        return {"info": self.info} if self.info else {}

    def freeze_encoder(self) -> None:
        for p in self.encoder.parameters():
            p.requires_grad_(False)

    def forward_features(self, wave: torch.Tensor) -> torch.Tensor:
        """``(B, S)`` -> the encoder's outputs ``(B, T, D)``, ``T = S // samples_per_frame``."""
        return self.encoder.encode(wave)

    def pool(self, features: torch.Tensor) -> torch.Tensor:
        """``(B, T, D)`` -> ``(B, D)``: attention-weighted or plain mean over ``T``."""
        if self.score is None:
            return features.mean(1)
        w = torch.softmax(self.score(features).squeeze(-1), dim=1)  # (B, T)
        return (w[..., None] * features).sum(1)

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """``(B, T, D)`` -> ``(B, num_classes + num_targets)``, or the pooled, normalised ``(B, D)``
        with ``pre_logits``."""
        x = self.drop(self.norm(self.pool(features)))
        return x if pre_logits else self.head(x)

    def position_statistics(self, features: torch.Tensor) -> torch.Tensor:
        """Encoder outputs ``(B, T, D)`` (:meth:`forward_features`) -> ``(B, 2 D)``: their mean and
        standard deviation over time, the frozen-feature summary of the linear probe
        (:func:`vqmae.evaluation.logreg_probe.clip_features`; as
        :meth:`vqmae.mae.classifier.EmotionClassifier.position_statistics`, with one position)."""
        return torch.cat([features.mean(1), features.std(1, correction=0)], 1)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(wave))

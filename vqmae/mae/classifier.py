"""Emotion / word classifier and affect regressor on a (pretrained) VQ-MAE-AV encoder.

``EmotionClassifier`` = ``self.encoder`` (:class:`VQMAEEncoder`, so ``encoder.*`` weights load
from a pretrained ``VQMAEAV`` folder) + a head from :mod:`vqmae.mae.heads`. timm-style API::

    model = EmotionClassifier.from_mae("runs/mae", num_classes=6)      # pretrained encoder
    feats = model.forward_features(audio=a, visual=v)   # {"audio": (B, Na, D), "visual": (B, Nv, D)}
    out = model.forward_head(feats)                      # (B, num_classes + num_targets)
    pooled = model.forward_head(feats, pre_logits=True)  # (B, F): what the last linear layer sees
    model.reset_classifier(8)                            # new output layer for 8 classes
    model.freeze_encoder()                               # linear probe: only the head trains

Inputs: audio tokens int64 ``(B, Ta, *audio_token_shape)`` and/or visual tokens int64
``(B, Tv, *visual_token_shape)`` (2-s windows; Ta = 100, Tv = 50 for the paper rates). Any
subset of ``config.modalities`` may be given: an audiovisual model evaluated with one modality
missing uses the head's learned stand-in for the absent one. A model built with
``speaker_norm=True`` also takes ``audio_ref`` / ``visual_ref``: the speaker's code frequencies
``(B, prod token_shape, K)`` (:mod:`vqmae.data.speaker_reference`), on which the code embeddings
are centred.

Outputs: ``(B, num_classes + num_targets)`` — class logits first, then continuous targets
(arousal, valence); :meth:`split_outputs` separates them. Word recognition is the same
classification task with other classes.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from vqmae.checkpoint import (
    ModelFolderError,
    PretrainedModel,
    _load_weights,
    read_model_config,
    register_model,
)
from vqmae.config import config_from_dict
from vqmae.mae.config import MAEConfig, MAEConfigError
from vqmae.mae.heads import make_head

MAE_ARCHITECTURE = "vqmae-av"


@dataclass
class ClassifierConfig:
    """Shapes of an :class:`EmotionClassifier` (the encoder's config nested)."""

    encoder: MAEConfig = field(default_factory=MAEConfig)
    modalities: tuple[str, ...] = ("audio", "visual")
    """Inputs the classifier takes (a subset of the encoder's modalities)."""
    num_classes: int = 6
    """Class outputs (0 = regression only)."""
    num_targets: int = 0
    """Continuous outputs (2 = arousal, valence; 0 = classification only)."""
    classes: list[str] = field(default_factory=list)
    target_names: list[str] = field(default_factory=list)
    head: Literal["attention", "mean", "query2emo"] = "attention"
    """attention: per-modality attention pooling (paper); mean: mean pooling; query2emo:
    transformer decoder with one learned query per output."""
    head_heads: int = 4
    head_layers: int = 1
    """Decoder layers of the query2emo head."""
    head_dropout: float = 0.1
    speaker_norm: bool = False
    """Centre the code embeddings on the speaker's usual codes: ``forward`` then needs
    ``{m}_ref``, the speaker's code frequencies (:mod:`vqmae.data.speaker_reference`)."""
    code_readout: bool = False
    """Add a linear read-out of each modality's code embeddings summarised over the window (mean
    and standard deviation over time per token position; the mean centred with ``speaker_norm``)
    to the head's outputs: a path from the codes to the outputs that does not go through the
    transformer (a linear probe on the codes learns emotion on new speakers from a few hundred
    clips where the transformer alone does not)."""

    def __post_init__(self) -> None:
        self.modalities = tuple(self.modalities)
        bad = [m for m in self.modalities if m not in self.encoder.modalities]
        if bad or not self.modalities:
            raise MAEConfigError(f"classifier modalities {list(self.modalities)} must be a non-empty "
                                 f"subset of the encoder's {list(self.encoder.modalities)}")
        if self.num_classes < 0 or self.num_targets < 0 or self.num_classes + self.num_targets < 1:
            raise MAEConfigError("the classifier needs num_classes > 0 and/or num_targets > 0")
        if self.classes and len(self.classes) != self.num_classes:
            raise MAEConfigError(f"{len(self.classes)} class names for num_classes={self.num_classes}")


@dataclass
class LoadReport:
    """What loading a pretrained folder into a classifier did."""

    source: str
    loaded: list[str]
    missing: list[str]
    """Classifier weights the folder did not provide (the head: randomly initialised)."""
    ignored: list[str]
    """Weights of the folder the classifier does not use (decoder, mask token, ...)."""

    def summary(self) -> str:
        return (f"loaded {len(self.loaded)} tensors from {self.source}; {len(self.missing)} new "
                f"(head), {len(self.ignored)} ignored (decoder etc.)")


def _encoder_class():
    from vqmae.mae.model import VQMAEEncoder

    return VQMAEEncoder


def encoder_config_for(mae_cfg: MAEConfig, modalities: tuple[str, ...]) -> MAEConfig:
    """The encoder config restricted to ``modalities`` (a unimodal classifier carries no
    parameters of the other modality). Falls back to the full config where the architecture
    cannot be restricted (cross-attention fusion needs both)."""
    if tuple(mae_cfg.modalities) == tuple(modalities):
        return mae_cfg
    try:
        return dataclasses.replace(mae_cfg, modalities=tuple(modalities))
    except MAEConfigError:
        return mae_cfg


@register_model("vqmae-classifier")
class EmotionClassifier(PretrainedModel):
    """VQ-MAE-AV encoder (no masking) + classification / regression head."""

    config_class = ClassifierConfig

    def __init__(self, config: ClassifierConfig):
        super().__init__(config)
        self.encoder = _encoder_class()(config.encoder)
        self.head = make_head(config.head, config.modalities, config.encoder.width,
                              config.num_classes + config.num_targets, num_heads=config.head_heads,
                              dropout=config.head_dropout, num_layers=config.head_layers)
        self.readout = nn.ModuleDict({
            m: nn.Linear(2 * math.prod(config.encoder.spec(m).token_shape) * config.encoder.spec(m).embed_dim,
                         config.num_classes + config.num_targets)
            for m in config.modalities}) if config.code_readout else None
        if self.readout is not None:
            for lin in self.readout.values():
                nn.init.zeros_(lin.weight)
                nn.init.zeros_(lin.bias)
        self._encoder_frozen = False
        self.info: dict[str, Any] = {}
        """Facts written into config.json (classes, tokenizers, fold, training) by the harness."""

    # ------------------------------------------------------------------ properties
    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(self.config.modalities)

    @property
    def num_classes(self) -> int:
        return self.config.num_classes

    @property
    def num_targets(self) -> int:
        return self.config.num_targets

    @property
    def num_features(self) -> int:
        return self.head.num_features

    # ------------------------------------------------------------------ timm API
    @property
    def needs_speaker_reference(self) -> bool:
        """Built with ``speaker_norm``: every call needs ``{m}_ref`` for the modalities given."""
        return bool(self.config.speaker_norm)

    def forward_features(self, audio: torch.Tensor | None = None, visual: torch.Tensor | None = None,
                         audio_ref: torch.Tensor | None = None, visual_ref: torch.Tensor | None = None,
                         **_: Any) -> dict[str, torch.Tensor]:
        """Token windows → ``{modality: (B, N_m, width)}`` for the modalities given.

        ``audio_ref`` / ``visual_ref``: the speaker's code frequencies ``(B, prod token_shape, K)``;
        required when the model was built with ``speaker_norm``, ignored otherwise."""
        inputs = {m: x for m, x in (("audio", audio), ("visual", visual)) if x is not None}
        unknown = [m for m in inputs if m not in self.modalities]
        if unknown:
            raise ValueError(f"this classifier takes {list(self.modalities)}, not {unknown}")
        if not inputs:
            raise ValueError(f"give at least one of {list(self.modalities)}")
        if self.config.speaker_norm:
            refs = {"audio_ref": audio_ref, "visual_ref": visual_ref}
            absent = [f"{m}_ref" for m in inputs if refs[f"{m}_ref"] is None]
            if absent:
                raise ValueError(f"this classifier is speaker-normalised: give {', '.join(absent)} "
                                 "(the speaker's code frequencies, vqmae.data.speaker_reference)")
            inputs.update({k: v for k, v in refs.items() if k[:-4] in inputs})
        if self._encoder_frozen:
            with torch.no_grad():
                return self.encoder(**inputs)
        return self.encoder(**inputs)

    def forward_head(self, features: Mapping[str, torch.Tensor], pre_logits: bool = False) -> torch.Tensor:
        """``(B, num_classes + num_targets)``, or ``(B, num_features)`` with ``pre_logits``."""
        return self.head(features, pre_logits=pre_logits)

    def forward(self, audio: torch.Tensor | None = None, visual: torch.Tensor | None = None,
                audio_ref: torch.Tensor | None = None, visual_ref: torch.Tensor | None = None,
                **_: Any) -> torch.Tensor:
        out = self.forward_head(self.forward_features(audio=audio, visual=visual, audio_ref=audio_ref,
                                                      visual_ref=visual_ref))
        if self.readout is not None:
            refs = {"audio": audio_ref, "visual": visual_ref}
            for m, tokens in (("audio", audio), ("visual", visual)):
                if tokens is not None:
                    out = out + self.readout[m](self.code_statistics(m, tokens, refs[m]))
        return out

    def code_statistics(self, modality: str, tokens: torch.Tensor, reference: torch.Tensor | None = None
                        ) -> torch.Tensor:
        """Tokens ``(B, T, *S)`` → mean and standard deviation over the window of their code
        embeddings per token position, ``(B, 2 * prod S * e)``; the mean minus the reference's
        expected embedding ``(B, prod S, K)`` when given (``speaker_norm``)."""
        codes = self.encoder.embed[modality].codes
        x = codes(tokens.long()).flatten(2, -2)  # (B, T, prod S, e)
        mean, std = x.mean(1), x.std(1, correction=0)
        if reference is not None and self.config.speaker_norm:
            mean = mean - self.encoder.expected_embeddings(modality, reference)
        return torch.cat([mean.flatten(1), std.flatten(1)], 1)

    def position_statistics(self, features: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Encoder outputs ``{m: (B, N_m, D)}`` (:meth:`forward_features`) → for every patch
        position of the token grid (its time axis excepted) the mean and standard deviation over
        the window's time steps, concatenated over the modalities in ``self.modalities`` order:
        ``(B, sum_m 2 * P_m * D)``, ``P_m = prod(grid[1:])``. Frozen features that keep *where*
        each code sits (mean-pooling every token together loses most of the emotion information
        the codes carry: docs/PIPELINE.md, information ladder)."""
        parts = []
        for m in self.modalities:
            if m not in features:
                continue
            x = features[m]
            x = x.reshape(x.shape[0], self.config.encoder.spec(m).grid[0], -1, x.shape[-1])  # (B, Tg, P, D)
            parts += [x.mean(1).flatten(1), x.std(1, correction=0).flatten(1)]
        return torch.cat(parts, 1)

    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int, num_targets: int | None = None,
                         classes: list[str] | None = None) -> None:
        """A fresh output layer for ``num_classes`` (+ ``num_targets``) outputs."""
        num_targets = self.config.num_targets if num_targets is None else num_targets
        self.config = dataclasses.replace(self.config, num_classes=num_classes, num_targets=num_targets,
                                          classes=list(classes or []))
        self.head.reset(num_classes + num_targets)
        if self.readout is not None:
            for m, lin in self.readout.items():
                self.readout[m] = nn.Linear(lin.in_features, num_classes + num_targets).to(lin.weight.device)
                nn.init.zeros_(self.readout[m].weight)
                nn.init.zeros_(self.readout[m].bias)

    def split_outputs(self, out: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """``(B, C + T)`` → class logits ``(B, C)`` (or None), continuous targets ``(B, T)`` (or None)."""
        c = self.config.num_classes
        return (out[:, :c] if c else None), (out[:, c:] if self.config.num_targets else None)

    # ------------------------------------------------------------------ fine-tuning modes
    def freeze_encoder(self, frozen: bool = True) -> None:
        """Linear probe: the encoder gets no gradients and stays in eval mode."""
        self._encoder_frozen = frozen
        for p in self.encoder.parameters():
            p.requires_grad_(not frozen)
        self.encoder.train(self.training and not frozen)

    def train(self, mode: bool = True):
        super().train(mode)
        if self._encoder_frozen:
            self.encoder.eval()
        return self

    def no_weight_decay(self) -> set[str]:
        inner = getattr(self.encoder, "no_weight_decay", None)
        names = {f"encoder.{n}" for n in inner()} if callable(inner) else set()
        return names | {n for n, _ in self.named_parameters() if "pos_embed" in n or "missing" in n
                        or n.endswith("query") or "queries" in n or "modality_embed" in n}

    def extra_metadata(self) -> dict[str, Any]:
        return {"info": self.info} if self.info else {}

    # ------------------------------------------------------------------ pretrained encoders
    def load_pretrained_encoder(self, folder: str | Path) -> LoadReport:
        """Copy the ``encoder.*`` weights of a pretrained VQ-MAE-AV folder into this model.

        The head stays randomly initialised (reported as ``missing``); the MAE's decoder and other
        pretraining-only weights are ``ignored``. Raises :class:`ModelFolderError` when an encoder
        weight is absent or has another shape."""
        folder = Path(folder)
        meta = read_model_config(folder)
        state = _load_weights(folder)
        own = self.state_dict()
        loaded, ignored, bad = [], [], []
        take = {}
        for k, v in state.items():
            if k in own and k.startswith("encoder."):
                if tuple(own[k].shape) != tuple(v.shape):
                    bad.append(f"{k} {tuple(v.shape)} vs {tuple(own[k].shape)}")
                else:
                    take[k] = v
                    loaded.append(k)
            else:
                ignored.append(k)
        missing = sorted(k for k in own if k not in take)
        enc_missing = [k for k in missing if k.startswith("encoder.")]
        if bad or enc_missing:
            raise ModelFolderError(
                f"{folder}: its '{meta['architecture']}' weights do not fit this encoder "
                f"(shape mismatches {bad[:3]}, absent {enc_missing[:3]}); build the classifier with "
                "EmotionClassifier.from_mae(folder) so the encoder config matches"
            )
        self.load_state_dict(take, strict=False)
        return LoadReport(str(folder), sorted(loaded), missing, sorted(ignored))

    @classmethod
    def from_mae(cls, folder: str | Path, pretrained: bool = True, **fields: Any
                 ) -> tuple[EmotionClassifier, LoadReport | None]:
        """A classifier whose encoder has the architecture of the VQ-MAE-AV folder ``folder``
        (and its weights unless ``pretrained=False``: the same architecture from random init).

        ``fields`` are :class:`ClassifierConfig` fields (``modalities``, ``num_classes``, ``head``...).
        Returns ``(model, report)``; ``report`` is None when not pretrained."""
        mae_cfg = mae_config_of(folder)
        modalities = tuple(fields.pop("modalities", mae_cfg.modalities))
        cfg = ClassifierConfig(encoder=encoder_config_for(mae_cfg, modalities), modalities=modalities,
                               **fields)
        model = cls(cfg)
        report = model.load_pretrained_encoder(folder) if pretrained else None
        return model, report


def mae_config_of(folder: str | Path) -> MAEConfig:
    """The :class:`MAEConfig` of a pretrained VQ-MAE-AV folder (``config.json``)."""
    meta = read_model_config(folder)
    cfg = meta["config"]
    if meta["architecture"] == "vqmae-classifier":
        cfg = cfg["encoder"]
    elif meta["architecture"] != MAE_ARCHITECTURE:
        raise ModelFolderError(f"{folder}: holds a '{meta['architecture']}' model, not a "
                               f"pretrained '{MAE_ARCHITECTURE}'")
    return config_from_dict(MAEConfig, cfg)


def load_classifier(folder: str | Path) -> tuple[EmotionClassifier, dict[str, Any]]:
    """A fine-tuned classifier folder → ``(model in eval mode, its config.json info)``."""
    meta = read_model_config(folder)
    if meta["architecture"] != EmotionClassifier.architecture:
        raise ModelFolderError(f"{folder}: holds a '{meta['architecture']}' model, not a fine-tuned "
                               f"'{EmotionClassifier.architecture}' (is it a pretraining folder?)")
    model = EmotionClassifier.from_pretrained(folder)
    model.info = dict(meta.get("info", {}))
    return model, model.info

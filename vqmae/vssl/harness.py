"""The VSSL audio encoder on the evaluation harness (``vqmae finetune --init <VSSL folder>``).

A ``pretrain-vssl`` output (its ``audio_encoder/`` folder, architecture ``vssl-audio-encoder``, or
its ``model/`` folder, architecture ``vssl``) given as ``--init`` makes every fold start from a
:class:`~vqmae.vssl.classifier.VSSLClassifier` reading waveform windows
(:class:`~vqmae.vssl.wave_dataset.WaveDataset`) of the store's clips:

* ``finetune``: the pretrained encoder, all weights trained; ``probe``: the encoder frozen;
  ``logreg``: logistic regression on its frozen features (mean and std over time of the encoder
  outputs, :meth:`~vqmae.vssl.classifier.VSSLClassifier.position_statistics`);
* ``scratch``: the same encoder architecture with random weights (supervised from scratch); its
  log-mel standardisation (per-band mean / std of the pretraining audio, not learned) is the
  pretrained encoder's, so only learned weights differ.

The encoder reads audio only: the modality set must be ``audio`` (:func:`check_vssl_settings`).
Saved fold models (``vssl-classifier``) record the task, the store's clip settings and the fold
(no tokenizers: they read the media files' audio); ``vqmae evaluate`` scores them
(:func:`load_fold_model`), ``vqmae predict`` runs them on media files (:mod:`vqmae.vssl.predict`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from vqmae.checkpoint import ModelFolderError, read_model_config
from vqmae.data.clips import WINDOW_SECONDS
from vqmae.errors import UserError
from vqmae.evaluation.task import Task
from vqmae.vssl.classifier import VSSLClassifier
from vqmae.vssl.encoder import AudioEncoder

VSSL_ARCHITECTURES = ("vssl-audio-encoder", "vssl")
"""Folders ``--init`` accepts as a VSSL encoder: ``pretrain-vssl``'s audio_encoder/ and model/."""
POOLING = {"attention": "attention", "mean": "mean"}
"""The finetune ``head`` settings a VSSL classifier has (its pooling over the 25 fps vectors)."""


def is_vssl_folder(folder: str | Path) -> bool:
    """Whether ``folder`` holds a VSSL audio encoder or a whole VSSL model (by config.json)."""
    try:
        return read_model_config(folder).get("architecture") in VSSL_ARCHITECTURES
    except (ModelFolderError, OSError, ValueError):
        return False


def load_vssl_encoder(folder: str | Path) -> AudioEncoder:
    """The audio encoder of a VSSL folder (``vssl-audio-encoder``, or a whole ``vssl`` model's)."""
    from vqmae.vssl.model import VSSLModel

    try:
        if read_model_config(folder)["architecture"] == "vssl":
            return VSSLModel.from_pretrained(folder).export_encoder()
        return AudioEncoder.from_pretrained(folder)
    except ModelFolderError as e:
        raise UserError(f"--init {e}") from None


def check_vssl_settings(cfg: Any, init: str) -> None:
    """A VSSL init reads audio only: every modality setting of ``cfg`` (a FinetuneConfig) must be
    ``audio``, and ``head`` one the VSSL classifier has. Else a :class:`UserError` naming the setting."""
    for name in ("modalities", "trained_modalities", "label_modalities"):
        value = getattr(cfg, name)
        values = [value] if isinstance(value, str) else list(value)
        bad = [v for v in values if v and v != "audio"]
        if bad:
            raise UserError(f"{name}={','.join(values)}: the VSSL audio encoder of --init {init} reads audio "
                            f"only; use {name}=audio")
    if cfg.head not in POOLING:
        raise UserError(f"head={cfg.head}: a VSSL classifier pools with {' or '.join(POOLING)}")


class VSSLBuilders:
    """Fresh VSSL classifiers for each fold (module doc): ``builders(("audio",), pretrained)``
    returns a function that builds one."""

    def __init__(self, init: str, task: Task, head: str = "attention", window_seconds: float = 0.0):
        self.init, self.task, self.head = init, task, head
        self.encoder = load_vssl_encoder(init)
        self.window_seconds = float(window_seconds or WINDOW_SECONDS)
        spf = self.encoder.samples_per_frame / self.encoder.sample_rate
        if abs(self.window_seconds / spf - round(self.window_seconds / spf)) > 1e-6:
            raise UserError(f"window_seconds={self.window_seconds:g} is not a whole number of the encoder's "
                            f"{spf:g}-s frames")

    @property
    def arch_config(self) -> Any:
        """The encoder's architecture (what an experiment's cache key records)."""
        return self.encoder.config

    def __call__(self, modalities: tuple[str, ...], pretrained: bool, head: str | None = None
                 ) -> Callable[[], VSSLClassifier]:
        if tuple(modalities) != ("audio",):
            raise UserError(f"modalities {'+'.join(modalities)}: the VSSL audio encoder of --init {self.init} "
                            "reads audio only; use modalities=audio")
        head = head or self.head
        if head not in POOLING:
            raise UserError(f"head={head}: a VSSL classifier pools with {' or '.join(POOLING)}")
        t = self.task
        settings = dict(num_classes=t.num_classes, num_targets=t.num_targets, pooling=POOLING[head],
                        window_seconds=self.window_seconds)

        def build() -> VSSLClassifier:
            if pretrained:
                return VSSLClassifier.from_encoder(self.encoder, **settings)
            model = VSSLClassifier(VSSLClassifier.config_class(encoder=self.encoder.config, **settings))
            model.encoder.mel_mean.copy_(self.encoder.mel_mean)  # input standardisation, not learned
            model.encoder.mel_std.copy_(self.encoder.mel_std)
            return model.train()

        return build


def load_fold_model(folder: str | Path) -> tuple[Any, dict[str, Any]]:
    """A saved fine-tuned fold model, token (``emotion-classifier``) or waveform
    (``vssl-classifier``) → ``(model in eval mode, its recorded info)``."""
    from vqmae.mae.classifier import load_classifier

    meta = read_model_config(folder)
    if meta.get("architecture") != VSSLClassifier.architecture:
        return load_classifier(folder)
    model = VSSLClassifier.from_pretrained(folder)
    model.info = dict(meta.get("info", {}))
    return model, model.info


def reads_waves(model: Any) -> bool:
    """Whether a harness model takes waveforms (``wave``) rather than tokens."""
    return tuple(getattr(model, "modalities", ())) == ("wave",)

"""The speaker-independent evaluation protocol: per fold, train on the training speakers, select
the epoch on the validation speakers only, test once on the test speakers.

What makes it trustworthy (the published protocol selected on test speakers and scored random
windows):

* folds come from ``vqmae.data.folds`` (seeded; every speaker tested exactly once) and
  :func:`vqmae.evaluation.splits.fold_clips` refuses a fold whose splits share a speaker;
* the epoch is chosen by ``vqmae.training.fit`` from the *validation* metric (``eval_fn`` +
  ``select_metric``); the test split is never looked at before the best epoch is restored;
* test windows are deterministic (``TokenDataset`` mode ``"all"``) and a clip's prediction is the
  average over all of its windows (class probabilities, or continuous outputs);
* results are per fold plus mean ± std over folds; a fold too small to mean anything (one test
  speaker, a handful of test clips, few training speakers) is flagged in the log and the results.

Where each part lives: :mod:`~vqmae.evaluation.task` (what is predicted),
:mod:`~vqmae.evaluation.splits` (clips of each split, label fractions, fold warnings),
:mod:`~vqmae.evaluation.fold_training` (one fold: train, select, test),
:mod:`~vqmae.evaluation.scoring` (windows averaged per clip, metrics),
:mod:`~vqmae.evaluation.logreg_probe` (the scikit-learn baseline),
:mod:`~vqmae.evaluation.experiments` (every fold of an experiment, cached),
:mod:`~vqmae.evaluation.finetune_job` (``vqmae finetune``'s job). This module holds the settings.

The harness is model-agnostic. A model is any ``nn.Module`` with

* ``modalities``: the inputs it takes (``("audio",)``, ``("visual",)`` or both);
* ``forward(**{modality: tokens (B, T_m, *token_shape)}) -> (B, num_classes + num_targets)``
  (class logits first, then continuous targets), working with any subset of its modalities;
* for the feature baseline: ``forward_features(**inputs)`` and ``forward_head(f, pre_logits=True)``;
* optionally ``freeze_encoder()`` (linear probe) and ``save_pretrained(folder)``.

:class:`vqmae.mae.classifier.EmotionClassifier` is one; another self-supervised encoder only
needs a wrapper with this interface.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from vqmae.config import config_from_dict, setting
from vqmae.training import TrainConfig

TRAIN_PRESET = "paper"
"""The ``vqmae/presets/finetune.yaml`` preset whose ``train`` settings every protocol run starts from."""


def finetune_train_config(**overrides: Any) -> TrainConfig:
    """The fine-tuning :class:`TrainConfig`: the ``paper`` preset of ``vqmae/presets/finetune.yaml``
    (AdamW lr 1e-4, batch 8, weight decay 0.05, warm-up and cosine decay) with ``overrides``."""
    from vqmae.presets import preset_values

    values = dict(preset_values("finetune", TRAIN_PRESET).get("train", {}))
    values.update(overrides)
    return config_from_dict(TrainConfig, values)


@dataclass
class ProtocolConfig:
    """How each fold is trained and scored (shared by finetune, evaluate and the baselines)."""

    task: Literal["auto", "classify", "regress", "both"] = "auto"
    """classify: class labels (emotion, word); regress: arousal/valence (CCC); both: one model
    with both outputs; auto: what the store's labels allow (labels and targets -> both)."""
    head: Literal["attention", "mean", "query2emo"] = "attention"
    loss: Literal["asl", "ce"] = "asl"
    """asl: single-label asymmetric loss (paper; γ−, γ+ below); ce: cross-entropy."""
    label_smoothing: float = setting(0.1, ge=0, lt=1, help="Label smoothing of the class loss.")
    gamma_neg: float = setting(4.0, ge=0, help="Asymmetric loss focusing of the negative classes (γ−).")
    gamma_pos: float = setting(0.0, ge=0, help="Asymmetric loss focusing of the true class (γ+).")
    affect_weight: float = setting(1.0, ge=0, help="Weight of the CCC loss next to the class loss (task both).")
    modality_dropout: float = setting(0.0, ge=0, le=1, help=(
        "Probability that a training batch of a two-modality model sees only one modality "
        "(teaches the head's stand-in for a missing modality)."))
    window_seconds: float = setting(0.0, ge=0, help="Window length; 0 = the model's (2 s for the paper presets).")
    eval_stride_seconds: float = setting(0.0, ge=0, help=(
        "Step between evaluation windows; 0 = the window length (non-overlapping)."))
    eval_batch_size: int = setting(64, ge=1, help="Windows per batch when scoring.")
    select_metric: str = "auto"
    """Validation metric that picks the epoch; auto = UAR with ties broken by the lower
    validation cross-entropy (classify/both), mean CCC (regress)."""
    min_train_batches: int = setting(4, ge=1, help=(
        "Repeat a small training set (label-efficiency runs) to at least this many batches per epoch."))
    eval_missing_modality: bool = True
    """Also test two-modality models with only audio and only visual given."""
    speaker_norm: bool = True
    """Speaker normalisation (no labels used; transductive at test time: a test speaker's
    statistics come from its unlabelled test clips). Token models (finetune, scratch, probe,
    logreg): code embeddings centred on the speaker's usual codes (its code frequencies per token
    position over all of its clips, :mod:`vqmae.data.speaker_reference`). logreg / codes probes:
    each speaker's clip features standardised with that speaker's own clips. False: neither."""
    code_readout: bool = True
    """Token models: add a linear read-out of the window's mean code embeddings (per token
    position, speaker-centred with speaker_norm) to the head — a path from the codes to the
    outputs beside the transformer."""
    codebook_init: bool = True
    """scratch models: start the code embeddings from the tokenizers' codebooks (pretrained
    models bring their own, see ``vqmae pretrain codebook_init``)."""
    keep_checkpoints: bool = False
    """Keep the resumable training state of each fold (the fine-tuned model is always saved)."""
    train: TrainConfig = field(default_factory=finetune_train_config)
    """Training of each fold; defaults: the ``paper`` preset of vqmae/presets/finetune.yaml."""

"""Stage one: train the audio or the visual VQ-VAE tokenizer on a manifest.

    vqmae train-tokenizer --modality audio --manifest data/manifest.jsonl --out runs/tok_audio \
        [--preset paper|base|demo|tiny] [train.epochs=20] [audio.quantizer.codebook_size=512] ...
    accelerate launch [--multi_gpu --num_processes N] -m vqmae.pipelines.train_tokenizer ...

The preset picks the model config (``audio`` / ``visual`` section, from the architecture
factories ``audio_preset``/``visual_preset``) and the training defaults (``train``/``data``, from
vqmae/presets/train_tokenizer.yaml, per modality); every key can still be overridden (the
defaults listed below are the classes' own; the preset's are in the run's config.yaml). Clips
are decoded once and held in memory (``vqmae.data.frames``); whole speakers are held out for
validation. The job is :func:`vqmae.tokenizers.training.train_tokenizer`.

Outputs in ``--out``:
    config.yaml, metrics.jsonl, train.log, tb/, checkpoints/   (the run folder; --resume continues)
    model/                    the tokenizer (config.json + model.safetensors; load_tokenizer)
    quality.json              held-out-speaker reconstruction quality + codebook usage
    plots/*.png               spectrograms or frame grids, codebook usage, training curves
    examples/*.wav            (audio) original, Griffin-Lim of the original, Griffin-Lim of the
                              reconstruction
    ddp_check.json            (with 2+ processes) per-rank hashes of codebook and weights
"""

from __future__ import annotations

import sys

from vqmae.pipelines.common import resolve_stage_config, stage_main
from vqmae.tokenizers.training import (
    TokenizerTrainingError,
    TrainTokenizerConfig,
    architecture_base,
    train_tokenizer,
)

DESCRIPTION = __doc__ or ""

__all__ = ["TrainTokenizerConfig", "resolve_config", "run", "main"]

run = train_tokenizer


def resolve_config(argv: list[str]) -> TrainTokenizerConfig:
    """The config ``vqmae train-tokenizer argv`` runs with (preset, architecture, files, overrides)."""
    return resolve_stage_config(TrainTokenizerConfig, argv, presets="train_tokenizer",
                                base_from=architecture_base)


def main(argv: list[str] | None = None) -> int:
    return stage_main("train-tokenizer", DESCRIPTION, TrainTokenizerConfig, train_tokenizer,
                      list(sys.argv[1:] if argv is None else argv), presets="train_tokenizer",
                      base_from=architecture_base, user_errors=(TokenizerTrainingError,))


if __name__ == "__main__":
    raise SystemExit(main())

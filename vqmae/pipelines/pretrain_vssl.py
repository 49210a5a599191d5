r"""Visually guided self-supervised pretraining of an audio encoder (Shukla et al. 2020/2021).

    vqmae pretrain-vssl --manifest data/demo --out runs/vssl --task visual|audio|multitask \
        [--preset tiny|demo|base] [model.generator.face_size=64] [model.audio_weight=0.5] \
        [model.adversarial_weight=0.01] [train.epochs=20] [--resume]
    accelerate launch [--multi_gpu --num_processes N] -m vqmae.pipelines.pretrain_vssl ...

``visual``: animate a still face frame of the clip into the clip's talking face from the audio
(mouth-weighted L1); ``audio``: predict PASE-style targets (MFCCs, log-energy, voicing, pitch,
spectral centroid and flatness) per frame; ``multitask``: both, weighted by model.visual_weight /
model.audio_weight. The preset gives the model size (vqmae.vssl.vssl_model_preset) and the
recipe (vqmae/presets/vssl.yaml). Method and results: docs/VISUAL_SSL.md. The job is
:func:`vqmae.vssl.job.pretrain_vssl`.

Outputs in ``--out``:
    config.yaml, metrics.jsonl, train.log, tb/, checkpoints/   (the run folder; --resume continues)
    model/                the whole model (config.json + model.safetensors; `vqmae animate --model`)
    audio_encoder/        the audio encoder alone (architecture vssl-audio-encoder)
    generated_vs_real.png held-out clips: real frames (still first) over generated ones
                          (generated_vs_real_seen.png: the same for training speakers)
    curves.png, summary.json, clip_cache/ (decoded face-cropped clips; cache=false to skip)
"""

from __future__ import annotations

import sys

from vqmae.pipelines.common import resolve_stage_config, stage_main
from vqmae.vssl.job import PretrainVSSLConfig, VSSLTrainingError, model_base, pretrain_vssl

DESCRIPTION = __doc__ or ""

__all__ = ["PretrainVSSLConfig", "resolve_config", "run", "main"]

run = pretrain_vssl


def resolve_config(argv: list[str]) -> PretrainVSSLConfig:
    """The config ``vqmae pretrain-vssl argv`` runs with (preset, architecture, files, overrides)."""
    return resolve_stage_config(PretrainVSSLConfig, argv, presets="vssl", base_from=model_base)


def main(argv: list[str] | None = None) -> int:
    return stage_main("pretrain-vssl", DESCRIPTION, PretrainVSSLConfig, pretrain_vssl,
                      list(sys.argv[1:] if argv is None else argv), presets="vssl",
                      base_from=model_base, user_errors=(VSSLTrainingError,))


if __name__ == "__main__":
    raise SystemExit(main())

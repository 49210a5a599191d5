"""Mask a clip, predict the missing tokens with a pretrained VQ-MAE-AV, decode and plot.

    vqmae reconstruct --model RUN/pretrain/model --clip FILE.mp4 --mask-ratio 0.5 [--out DIR]
        [--audio-tokenizer DIR] [--visual-tokenizer DIR] [start=1.0] [sweep=[0,0.1,...,0.9]]

The tokenizer folders default to the ones recorded in the model folder (the token store's
provenance); their fingerprints must match the ones the model was pretrained on. The clip is
decoded and checked like the token store's clips (its ``clip_config`` when the store is still
there). The job: ``vqmae.mae.reconstruction``.

Outputs in ``--out`` (default ``reconstruct_<clip name>`` beside the model folder):
    reconstruction.png   original / masked / reconstructed face frames and spectrograms
    audio_original.wav, audio_tokenizer.wav, audio_reconstructed.wav
                         the input window, Griffin-Lim of the tokenizer's decode of the original
                         codes, Griffin-Lim of the decode of the predicted codes
    sweep.png, sweep.json  PSNR (faces) and log-spectral distance (audio) vs mask ratio,
                         masked-token accuracy per modality
    reconstruction.json  the metrics at --mask-ratio
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from vqmae.data.media import MediaError
from vqmae.mae.reconstruction import ReconstructConfig, out_folder, run_reconstruction
from vqmae.mae.reconstruction_plots import bin_mask, pixel_mask
from vqmae.pipelines.common import UserError, stage_main

__all__ = ["ReconstructConfig", "bin_mask", "main", "pixel_mask", "run"]


def run(cfg: ReconstructConfig) -> dict[str, Any]:
    if not cfg.model or not cfg.clip:
        raise UserError("model, clip: --model DIR and --clip FILE are required")
    if not Path(cfg.clip).is_file():
        raise UserError(f"clip: not found: {cfg.clip}")
    bad = [r for r in cfg.sweep if not 0 <= r <= 1]
    if bad:
        raise UserError(f"sweep: mask ratios must be in [0, 1], got {bad}")
    out_dir = out_folder(cfg)
    if out_dir.is_file():
        raise UserError(f"out: '{out_dir}' is a file; give a folder")
    try:
        result = run_reconstruction(cfg, out_dir)
    except MediaError as e:  # truncated, too_short, silent, corrupt, ...
        raise UserError(f"clip: {e} ({e.kind})") from None
    print(f"reconstruction written to {out_dir}", file=sys.stderr)
    return result


def main(argv: list[str] | None = None) -> int:
    return stage_main("reconstruct", __doc__ or "", ReconstructConfig, lambda c: (run(c), 0)[1], argv)


if __name__ == "__main__":
    raise SystemExit(main())

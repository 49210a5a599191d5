"""Stage two: pretrain VQ-MAE-AV on a token store (masked-token prediction).

    vqmae pretrain --tokens STORE --out DIR [--preset paper|base|demo|tiny] \
        [model.depth=12] [model.fusion=caf] [modalities=[audio]] [loss.contrastive_weight=0.1] \
        [masking.ratio_mode=fixed] [train.epochs=100] [train.batch_size=16] [--resume]
    accelerate launch [--multi_gpu --num_processes N] -m vqmae.pipelines.pretrain ...

The model geometry follows the store (token shapes, codebooks, frame rates); the preset gives
the architecture (vqmae/presets/mae.yaml) and the training recipe (vqmae/presets/pretrain.yaml;
``paper``: AdamW (0.9, 0.95), weight decay 0.05, lr = 1e-3 × effective batch / 256, 40 warm-up
epochs, cosine to 800 epochs, batch 16). The job is :func:`vqmae.mae.pretraining.pretrain`.
``--resume`` continues the newest checkpoint, and refuses another token store.

Outputs in ``--out``:
    config.yaml, metrics.jsonl, train.log, tb/, checkpoints/   (the run folder; --resume continues)
    token_store.json  the store the run trains on (path, tokenizer fingerprints)
    model/            VQ-MAE-AV folder (config.json + model.safetensors; the token store's
                      provenance — tokenizer fingerprints and folders — is recorded in config.json)
    summary.json      final masked-token accuracy per modality vs the code-frequency baselines
    curves.png        loss and masked-token accuracy per modality, baselines dashed
    example/          (``example=true``) a held-out clip masked, predicted and decoded
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

from vqmae.io import write_json
from vqmae.mae.pretraining import PretrainConfig, PretrainError, pretrain
from vqmae.pipelines.common import UserError, stage_main

DESCRIPTION = __doc__ or ""
log = logging.getLogger("vqmae")

__all__ = ["PretrainConfig", "run", "main"]


def run(cfg: PretrainConfig) -> dict[str, Any]:
    """Pretrain, then (main process) add the reconstruction example. Returns summary.json."""
    result = pretrain(cfg)
    summary = result.summary
    if result.is_main and cfg.example and result.val_ids:
        summary["example"] = _reconstruction_example(cfg, result.store, result.val_ids[0])
        write_json(Path(cfg.out) / "summary.json", summary)
    return summary


def _reconstruction_example(cfg: PretrainConfig, store, index: int) -> str:
    """``vqmae reconstruct`` of one held-out clip into OUT/example; '' when it cannot run."""
    from vqmae.data.manifest import read_manifest
    from vqmae.pipelines import reconstruct

    clip = store.clips[int(index)]
    out = Path(cfg.out) / "example"
    try:
        media = read_manifest(store.meta["manifest"]).root / clip.path
        if not media.is_file():
            raise FileNotFoundError(f"media file not found: {media}")
        reconstruct.run(reconstruct.ReconstructConfig(
            model=str(Path(cfg.out) / "model"), clip=str(media), out=str(out),
            mask_ratio=cfg.eval_ratio, seed=cfg.train.seed, sweep=[0.25, 0.5, 0.75]))
    except (UserError, FileNotFoundError, KeyError, ValueError) as e:
        log.warning("no reconstruction example for %s: %s", clip.id, e)
        return ""
    log.info("reconstruction example (held-out clip %s): %s", clip.id, out)
    return str(out.relative_to(cfg.out))


def main(argv: list[str] | None = None) -> int:
    return stage_main("pretrain", DESCRIPTION, PretrainConfig, lambda c: (run(c), 0)[1],
                      list(sys.argv[1:] if argv is None else argv), presets="pretrain",
                      user_errors=(PretrainError,))


if __name__ == "__main__":
    raise SystemExit(main())

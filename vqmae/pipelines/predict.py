"""``vqmae predict``: class probabilities (and arousal/valence) for media files, as JSON.

    vqmae predict --model OUT/finetune-av/fold_0/model clip1.mp4 clip2.mp4 [--out preds.json]
    vqmae predict --model OUT/finetune-av video.mp4      # an experiment folder: fold models averaged

Straight from media: each file is decoded and checked like ``vqmae tokenize`` did for the
training store (the clip settings recorded in the model), tokenized by the tokenizers recorded
with the model (fingerprints checked), cut into the same deterministic windows as the test
protocol, and the window outputs averaged (``vqmae.evaluation.prediction``). Output (stdout, or
``--out``)::

    {"model": ..., "classes": [...], "predictions": [
        {"file": "clip1.mp4", "label": "angry", "probabilities": {"angry": 0.71, ...},
         "arousal": 0.62, "valence": -0.4, "windows": 2, "seconds": 2.5}, ...],
     "errors": [{"file": ..., "kind": "too_short", "error": ...}]}

Probabilities sum to 1; ``arousal``/``valence`` are present when the model predicts them.
A file that cannot be used (``missing``, ``truncated``, ``too_short``, ``silent``, ``corrupt``,
...) is reported under ``errors``; the others are still predicted. Exit code 2 when every file
failed.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

from vqmae.data.encoding import check_device
from vqmae.evaluation.prediction import PredictConfig, load_models, predict_files
from vqmae.pipelines.common import UserError, stage_main
from vqmae.runs import log

__all__ = ["PredictConfig", "main", "predict_files", "run", "split_files"]


def run(cfg: PredictConfig) -> int:
    if not cfg.model:
        raise UserError("model: --model is required")
    if not cfg.files:
        raise UserError("files: give one or more media files")
    if cfg.out and Path(cfg.out).is_dir():
        raise UserError(f"out: '{cfg.out}' is a folder; give a JSON file name")
    check_device(cfg.device)  # before loading any model
    missing = [f for f in cfg.files if not Path(f).is_file()]
    result = predict_files(load_models(cfg.model), [f for f in cfg.files if f not in missing], cfg)
    result["errors"] = [{"file": f, "kind": "missing", "error": "file not found"} for f in missing] + result["errors"]
    text = json.dumps(result, indent=2)
    if cfg.out:
        from vqmae.io import atomic_write_text

        atomic_write_text(cfg.out, text + "\n")
        log.info("predict: %d file(s) → %s", len(result["predictions"]), cfg.out)
    else:
        print(text)
    if not result["predictions"]:
        print(f"vqmae predict: error: every file failed ({len(result['errors'])}): "
              + "; ".join(f"{e['file']}: {e['kind']}" for e in result["errors"][:5]), file=sys.stderr)
        return 2
    return 0


def split_files(argv: list[str]) -> tuple[list[str], list[str]]:
    """Separate plain media-file arguments from settings (``key=value``, ``--key value``)."""
    fields = {f.name: f for f in dataclasses.fields(PredictConfig)}
    settings, files = [], []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a.startswith("-"):
            settings.append(a)
            key = a.lstrip("-").split("=", 1)[0].replace("-", "_")
            if "=" not in a and (key in fields or key in ("config", "c")) and i + 1 < len(argv):
                settings.append(argv[i + 1])
                i += 1
        elif "=" in a and a.split("=", 1)[0].replace("-", "_") in fields and not Path(a).exists():
            settings.append(a)
        else:
            files.append(a)
        i += 1
    return settings, files


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    settings, files = split_files(argv)
    base = {"files": files} if files else None
    return stage_main("predict", __doc__ or "", PredictConfig, run, settings, base=base)


if __name__ == "__main__":
    raise SystemExit(main())

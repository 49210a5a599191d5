"""``vqmae evaluate``: score a fine-tuned model on a token store.

    vqmae evaluate --model OUT/finetune-av/fold_0/model [--tokens STORE] [split=test]
    vqmae evaluate --model OUT/finetune-av --tokens OTHER_STORE      # every fold model, mean ± std
    vqmae evaluate --model OUT/finetune-av modalities=audio            # AV model, video missing
    vqmae evaluate --model OUT/finetune-av noise=white,babble snr_db=20,10,5,0

``--model`` is a model folder written by ``vqmae finetune`` (``.../fold_k/model``) or an
experiment folder holding ``fold_*/model``. Each model is scored on the clips of its own fold's
``split`` speakers (``all``: every clip), with deterministic windows averaged per clip. The
store must hold tokens of the model's tokenizers (fingerprints checked). Writes
``OUT/results.json``, ``OUT/results.md``, ``OUT/predictions.jsonl`` and ``OUT/confusion.png``.
The job itself is :mod:`vqmae.evaluation.evaluate_job`.
"""

from __future__ import annotations

from vqmae.evaluation.evaluate_job import EvaluateConfig, model_folders, run
from vqmae.pipelines.common import stage_main

__all__ = ["EvaluateConfig", "main", "model_folders", "run"]


def main(argv: list[str] | None = None) -> int:
    return stage_main("evaluate", __doc__ or "", EvaluateConfig, run, argv)


if __name__ == "__main__":
    raise SystemExit(main())

"""``vqmae finetune``: fine-tune and evaluate classifiers over speaker-independent folds.

    vqmae finetune --tokens STORE --init MAE_DIR --folds FOLDS.json --out DIR \\
        [modalities=audio,visual,av] [experiments=finetune,scratch,logreg] [init=none] \\
        [label_fractions=0.01,0.05,0.1,0.25,1] [noise=white,babble] [preset=demo]

Every experiment × modality set runs every fold (train on the training speakers with random
windows, pick the epoch on the validation speakers, test once on the test speakers with all
windows of each clip averaged) and lands in ``DIR/<experiment>-<modalities>/fold_<k>/``
(``model/``, ``predictions.jsonl``, ``metrics.jsonl``, ``train.log``, ``fold_result.json``).
``DIR/results.json`` and ``DIR/results.md`` hold per-fold results and mean ± std; PNGs hold the
confusion matrices, the label-efficiency curve and the noise curves. A rerun reuses finished folds.

Experiments: ``finetune`` (the pretrained encoder, all weights trained), ``scratch`` (the same
architecture from random init), ``probe`` (pretrained encoder frozen, head trained), ``logreg``
(scikit-learn logistic regression on frozen encoder features, per patch position). ``init=none``: no pretrained
model; the architecture comes from ``arch`` (an MAE preset fitted to the store) and only
``scratch`` runs. Presets (``preset=paper|demo``): vqmae/presets/finetune.yaml.

The job itself is :mod:`vqmae.evaluation.finetune_job`.
"""

from __future__ import annotations

import sys
from typing import Any

from vqmae.config import parse_config
from vqmae.evaluation.finetune_job import FinetuneConfig, run
from vqmae.pipelines.common import stage_main

__all__ = ["FinetuneConfig", "main", "make_config", "run"]


def make_config(preset: str = "", argv: list[str] | None = None, **overrides: Any) -> FinetuneConfig:
    """A :class:`FinetuneConfig` from a named preset, command-line style ``argv`` and (nested)
    ``overrides``, e.g. ``make_config("demo", tokens=..., init=..., out=..., train={"epochs": 3})``."""
    base = {**overrides, **({"preset": preset} if preset else {})}
    return parse_config(FinetuneConfig, argv or [], base=base, presets="finetune")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    return stage_main("finetune", __doc__ or "", FinetuneConfig, run, argv, presets="finetune")


if __name__ == "__main__":
    raise SystemExit(main())

"""``vqmae demo`` / ``vqmae run``: every stage end to end, cached in one run folder, then a report.

    vqmae demo                          # synthetic corpus -> ... -> runs/demo/report.html (~15 min, 2 CPUs)
    vqmae demo --quick                  # a smaller corpus and shorter training (~3 min): preset=quick
    vqmae demo --fresh                  # redo every stage
    vqmae run --config configs/ravdess.yaml root=/data/RAVDESS

Stages (each one is the same command a user would type; the exact command lines are recorded in
``RUN/stages.json`` and in the report):

    synth -> prepare -> tokenizer_audio + tokenizer_visual -> tokenize -> pretrain -> finetune -> report

The stages are the CLI's commands (``vqmae.cli.COMMANDS`` gives their order and modules;
``train-tokenizer`` runs once per modality). Presets (``preset=quick|tiny``): vqmae/presets/demo.yaml.
A stage whose command (and every upstream stage) is unchanged and finished is skipped on a rerun;
``--fresh`` redoes all, ``--redo STAGE[,STAGE]`` redoes some (and everything after them).
Extra arguments per stage: ``args.pretrain='[train.epochs=50]'`` or in YAML
``args: {pretrain: ["train.epochs=50"]}``. The job itself is :mod:`vqmae.stage_runner`.
"""

from __future__ import annotations

import sys

from vqmae.pipelines.common import stage_main
from vqmae.stage_runner import STAGES, PipelineConfig, pipeline_stages, run, stage_commands

__all__ = ["STAGES", "PipelineConfig", "main", "pipeline_stages", "run", "stage_commands"]


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    argv = ["preset=quick" if a in ("--quick", "quick=true", "--quick=true") else a for a in argv]  # --quick
    return stage_main("demo", __doc__ or "", PipelineConfig, run, argv, presets="demo")


if __name__ == "__main__":
    raise SystemExit(main())

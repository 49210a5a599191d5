"""``vqmae prepare``: index a dataset folder (docs/PREPARE.md).

    vqmae prepare --dataset ravdess --root /data/RAVDESS --out data/ravdess [--protocol ravdess6] [--strict]

Writes manifest.jsonl, dataset.json, folds.json, errors.jsonl and face_cache/ into --out and
prints a summary. Bad files are listed in errors.jsonl and the job goes on; the exit status is
non-zero only with --strict (1 when any file failed) or for bad settings (2).
"""

from __future__ import annotations

from vqmae.data.folds import FoldsError
from vqmae.data.prepare import PrepareConfig, format_summary, prepare
from vqmae.pipelines.common import UserError, stage_main


def run(cfg: PrepareConfig) -> int:
    try:
        res = prepare(cfg)
    except (FoldsError, ValueError) as e:
        raise UserError(str(e)) from None
    print(format_summary(res))
    return res.exit_code_strict if cfg.strict else 0


def main(argv: list[str] | None = None) -> int:
    return stage_main("prepare", __doc__ or "", PrepareConfig, run, argv)


if __name__ == "__main__":
    raise SystemExit(main())

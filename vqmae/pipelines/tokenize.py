"""``vqmae tokenize``: pre-tokenize a dataset into a sharded token store (docs/TOKENIZE.md).

    vqmae tokenize --manifest data/manifest.jsonl --audio-tokenizer out/audio_tok \\
        --visual-tokenizer out/visual_tok --out out/tokens
    accelerate launch --num_processes 4 -m vqmae.pipelines.tokenize --manifest ... --out ...

Each clip is decoded and checked like every stage does (``vqmae.data.clips.load_clip``); a clip
that fails (``truncated``, ``too_short``, ``silent``, ``corrupt``, ...) is listed in the store's
errors.jsonl and the job goes on. A rerun skips finished parts, so a killed job is resumed by
running the same command again. Loader workers and torch threads are fixed by ``num_workers`` /
``threads`` (recorded in <out>/tokenize_config.json). The job: ``vqmae.data.tokenize_job``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vqmae.data.token_store import ERRORS_NAME, StoreError
from vqmae.data.tokenize_job import TokenizeConfig, tokenize_dataset
from vqmae.io import append_jsonl, read_jsonl
from vqmae.pipelines.common import UserError, stage_main

__all__ = ["TokenizeConfig", "main", "run", "tokenize_dataset"]


def run(cfg: TokenizeConfig) -> int:
    """The stage: exit code 0 (also with per-clip failures, listed in errors.jsonl), 1 if no clip
    could be tokenized."""
    try:
        stats = tokenize_dataset(cfg)
    except StoreError as e:
        raise UserError(str(e)) from None
    if cfg.stats_file:
        append_jsonl(cfg.stats_file, {k: v for k, v in stats.items() if k != "store"})
    meta = stats.get("store")
    if meta is None:
        return 0
    print_summary(Path(cfg.out), meta, stats["num_clips"])
    return 1 if meta["num_clips"] == 0 and stats["num_clips"] else 0


def print_summary(out: Path, meta: dict[str, Any], n_manifest: int) -> None:
    secs = meta["seconds"]
    print(f"token store {out}: {meta['num_clips']} of {n_manifest} clips stored, "
          f"{meta['num_errors']} failed, {meta['num_shards']} shards; "
          + ", ".join(f"{m}: {meta['frames'][m]} frames ({secs[m] / 3600:.3f} h)" for m in meta["modalities"]))
    if meta["num_errors"]:
        errs = read_jsonl(out / ERRORS_NAME)
        kinds: dict[str, int] = {}
        for e in errs:
            kinds[e.get("kind", "?")] = kinds.get(e.get("kind", "?"), 0) + 1
        print(f"  failures by kind: {kinds}; see {out / ERRORS_NAME}, e.g.")
        for e in errs[:3]:
            print(f"    {e['file']}: {e['reason']}")


def main(argv: list[str] | None = None) -> int:
    return stage_main("tokenize", __doc__ or "", TokenizeConfig, run, argv)


if __name__ == "__main__":
    raise SystemExit(main())

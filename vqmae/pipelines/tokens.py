"""``vqmae tokens info STORE`` and ``vqmae tokens verify STORE``: inspect and check a token store.

    vqmae tokens info out/tokens            # what is in it, which tokenizers made it
    vqmae tokens info out/tokens --json     # the same as one JSON object
    vqmae tokens verify out/tokens          # checksums, shapes, index <-> shards; exit 1 on problems
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from vqmae.data.token_store import ERRORS_NAME, StoreError, TokenStore, verify_store


def store_info(path: str | Path) -> dict[str, Any]:
    """A JSON-safe summary of a store (raises :class:`StoreError`)."""
    store = TokenStore.open(path)
    meta = store.meta
    root = Path(path)
    size = sum(p.stat().st_size for m in store.modalities for p in (root / m).glob("shard-*.npy"))
    labels = Counter(c.label_name if c.label_name is not None else c.label for c in store.clips)
    return {
        "store": str(root),
        "format": meta["format"],
        "format_version": meta["format_version"],
        "vqmae_version": meta.get("vqmae_version"),
        "dataset": meta.get("dataset", ""),
        "manifest": meta.get("manifest", ""),
        "clips": len(store),
        "errors": meta.get("num_errors", 0),
        "speakers": len({c.speaker for c in store.clips}),
        "classes": store.classes,
        "labels": {str(k): v for k, v in sorted(labels.items(), key=lambda kv: str(kv[0]))},
        "shards": meta["num_shards"],
        "clips_per_shard": meta["clips_per_shard"],
        "bytes": size,
        "modalities": {
            m: {
                "frames": meta["frames"][m],
                "hours": round(meta["seconds"][m] / 3600, 4),
                **{k: store.provenance[m].get(k) for k in
                   ("fingerprint", "architecture", "codebook_size", "token_shape", "frames_per_second",
                    "dtype", "tokenizer_dir")},
            }
            for m in store.modalities
        },
    }


def _print_info(info: dict[str, Any]) -> None:
    print(f"token store {info['store']} ({info['format']} v{info['format_version']}, "
          f"written by vqmae {info['vqmae_version']})")
    print(f"  dataset {info['dataset'] or '?'}: {info['clips']} clips, {info['speakers']} speakers, "
          f"{info['errors']} failed clips (see {ERRORS_NAME})")
    print(f"  {info['shards']} shards of up to {info['clips_per_shard']} clips, "
          f"{info['bytes'] / 2**20:.1f} MiB of tokens")
    if info["classes"]:
        print(f"  classes: {', '.join(info['classes'])}")
        print(f"  clips per label: {info['labels']}")
    for m, d in info["modalities"].items():
        shape = "×".join(map(str, d["token_shape"]))
        print(f"  {m}: {d['frames']} frames ({d['hours']:.3f} h) at {d['frames_per_second']:g} frames/s, "
              f"{shape} codes per frame from a codebook of {d['codebook_size']}")
        print(f"    tokenizer {d['architecture']} fingerprint {d['fingerprint']}"
              + (f" ({d['tokenizer_dir']})" if d.get("tokenizer_dir") else ""))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="vqmae tokens", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    pi = sub.add_parser("info", help="summary of a token store")
    pi.add_argument("store")
    pi.add_argument("--json", action="store_true", help="print one JSON object")
    pv = sub.add_parser("verify", help="check checksums, shapes and the index; exit 1 on problems")
    pv.add_argument("store")
    pv.add_argument("--no-checksums", action="store_true", help="skip hashing the shards (fast)")
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    if args.cmd == "info":
        try:
            info = store_info(args.store)
        except (StoreError, OSError) as e:
            print(f"vqmae tokens info: error: {e}", file=sys.stderr)
            return 2
        if args.json:
            print(json.dumps(info, indent=2))
        else:
            _print_info(info)
        return 0
    problems = verify_store(args.store, checksums=not args.no_checksums)
    if problems:
        print(f"vqmae tokens verify: {len(problems)} problem(s) in {args.store}:", file=sys.stderr)
        for line in problems:
            print(f"  {line}", file=sys.stderr)
        return 1
    meta = TokenStore.open(args.store).meta
    print(f"{args.store}: OK ({meta['num_clips']} clips, {meta['num_shards']} shards × "
          f"{len(meta['modalities'])} modalities{'' if args.no_checksums else ', checksums match'})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

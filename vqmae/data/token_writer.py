"""Writing a token store: plan, parts (one shard per modality each), and the final index.

The tokenize job (``vqmae.data.tokenize_job``) cuts the manifest into *parts* of
``clips_per_shard`` consecutive clips. A part is the unit of work, of resumption and of storage:

1. ``write_part`` writes ``{modality}/shard-{k}.npy`` for every modality, then
   ``parts/part-{k}.json`` (rows, errors, shard checksums) — each file to a temporary name,
   renamed when complete. A part counts as done once its json exists and its shards have the
   sizes it records, so a run killed at any moment loses at most the parts in flight.
2. ``finalize`` (once every part is done) streams the parts' rows into ``index.jsonl`` and
   ``errors.jsonl`` and writes ``store.json`` last: a store is readable only when complete.

Nothing written depends on the number of processes or on timing: which clips form a part and
how they are batched depend on the manifest only, so 1 process, N processes, or a killed and
resumed run give byte-identical stores.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from vqmae import __version__
from vqmae.data.token_store import (
    ERRORS_NAME,
    INDEX_NAME,
    PARTS_DIR,
    PLAN_NAME,
    STORE_FORMAT,
    STORE_FORMAT_VERSION,
    STORE_JSON,
    TOKEN_DTYPE,
    StoreError,
    part_path,
    sha256_file,
    shard_name,
    shard_path,
)
from vqmae.io import atomic_path, read_json, write_json

RUN_CONFIG_NAME = "tokenize_config.json"
"""The resolved settings of the tokenize run (threads and loader workers included)."""
PLAN_KEYS_THAT_MUST_MATCH = ("format_version", "manifest_sha256", "num_clips", "modalities",
                             "clips_per_shard", "fingerprints", "clip_config")


def auto_clips_per_shard(num_clips: int) -> int:
    """Part size from the clip count only (never from the process count): 8…256 clips, ~64 parts."""
    return int(min(256, max(8, -(-num_clips // 64))))


def manifest_digest(rows: list[dict[str, Any]]) -> str:
    """sha256 of the manifest rows that matter (order included)."""
    h = hashlib.sha256()
    for r in rows:
        h.update(json.dumps(r, sort_keys=True).encode())
        h.update(b"\n")
    return h.hexdigest()


def tokenizer_provenance(tok: Any, folder: str | Path | None = None) -> dict[str, Any]:
    """What the store records about the tokenizer of one modality."""
    from vqmae.config import config_to_dict

    K = int(tok.codebook_size)
    if K > np.iinfo(TOKEN_DTYPE).max + 1:
        raise StoreError(f"codebook of {K} codes does not fit uint16 tokens")
    prov = {
        "fingerprint": tok.fingerprint(),
        "architecture": getattr(tok, "architecture", type(tok).__name__),
        "codebook_size": K,
        "token_shape": [int(s) for s in tok.token_shape],
        "frames_per_second": float(tok.frames_per_second),
        "dtype": "uint16",
        "format_version": STORE_FORMAT_VERSION,
        "tokenizer_config": config_to_dict(tok.config) if hasattr(tok, "config") else {},
    }
    if hasattr(tok, "sample_rate"):
        prov["sample_rate"] = int(tok.sample_rate)
    if folder is not None:
        from vqmae.hub import is_hub_id, tokenizer_source

        prov["tokenizer_dir"] = str(folder)
        if is_hub_id(folder):  # from the hub: its id and commit, and the cache folder
            src = tokenizer_source(folder)
            prov.update(tokenizer_dir=src["dir"], tokenizer_hub_id=src["hub_id"], tokenizer_revision=src["revision"])
    return prov


# ------------------------------------------------------------------------------------ plan


def make_plan(*, manifest_path: str, manifest_rows: list[dict[str, Any]], dataset_name: str,
              classes: list[str], provenance: dict[str, dict[str, Any]], clips_per_shard: int,
              clip_config: dict[str, Any]) -> dict[str, Any]:
    if clips_per_shard < 1:  # a negative part size made an empty store that verify called OK
        raise StoreError(f"clips_per_shard must be >= 1, got {clips_per_shard}")
    n = len(manifest_rows)
    return {
        "format": STORE_FORMAT,
        "format_version": STORE_FORMAT_VERSION,
        "vqmae_version": __version__,
        "manifest": manifest_path,
        "manifest_sha256": manifest_digest(manifest_rows),
        "dataset": dataset_name,
        "classes": list(classes),
        "num_clips": n,
        "modalities": list(provenance),
        "clips_per_shard": clips_per_shard,
        "num_parts": -(-n // clips_per_shard) if n else 0,
        "fingerprints": {m: p["fingerprint"] for m, p in provenance.items()},
        "provenance": provenance,
        "clip_config": clip_config,
    }


def is_store_dir(root: Path) -> bool:
    return (root / PLAN_NAME).is_file() or (root / STORE_JSON).is_file()


def clear_store(root: Path, modalities: list[str] | None = None) -> None:
    """Delete the files of a token store (only files the store format names)."""
    import shutil

    # store.json first (the store stops opening), plan.json last (a killed clear can be redone)
    for name in (STORE_JSON, INDEX_NAME, ERRORS_NAME):
        with contextlib.suppress(FileNotFoundError):
            (root / name).unlink()
    for run_config in root.glob(RUN_CONFIG_NAME.replace(".json", "*.json")):
        run_config.unlink(missing_ok=True)
    dirs = [PARTS_DIR, *(modalities or [])]
    dirs += [d.name for d in root.iterdir() if d.is_dir() and any(d.glob("shard-*.npy"))]
    for d in sorted(set(dirs)):
        shutil.rmtree(root / d, ignore_errors=True)
    for stale in root.glob(".*.tmp"):
        stale.unlink(missing_ok=True)
    with contextlib.suppress(FileNotFoundError):
        (root / PLAN_NAME).unlink()


def open_plan(root: Path, plan: dict[str, Any], overwrite: bool) -> dict[str, Any]:
    """Start or resume a store at ``root`` for ``plan`` (call on one process, before any work).

    A folder holding another plan (other manifest, tokenizer or part size) is refused unless
    ``overwrite``; a non-empty folder that is not a store is always refused.
    """
    if root.is_file():
        raise StoreError(f"{root}: is a file; give a folder for the token store")
    root.mkdir(parents=True, exist_ok=True)
    plan_file = root / PLAN_NAME
    if plan_file.is_file():
        old = read_json(plan_file)
        diff = [k for k in PLAN_KEYS_THAT_MUST_MATCH if old.get(k) != plan.get(k)]
        if diff and not overwrite:
            details = "; ".join(f"{k}: store has {_short(old.get(k))}, this run {_short(plan.get(k))}"
                                for k in diff)
            raise StoreError(f"{root}: holds a token store of another job ({details}). "
                             "Use another --out, or --overwrite to replace it")
        if not diff:
            return old
        clear_store(root, old.get("modalities"))
    elif any(not p.name.startswith(".") for p in root.iterdir()):  # .lock, another job's .plan.json tmp
        if not is_store_dir(root):
            raise StoreError(f"{root}: folder is not empty and holds no token store; choose an empty --out")
        if not overwrite:
            raise StoreError(f"{root}: holds a token store without {PLAN_NAME} (its job is unknown); "
                             "use another --out, or --overwrite to replace it")
        clear_store(root)
    write_json(plan_file, plan)
    return plan


def _short(v: Any) -> str:
    s = json.dumps(v, sort_keys=True) if not isinstance(v, str) else v
    return s if len(s) <= 80 else s[:77] + "..."


def part_ranges(plan: dict[str, Any]) -> list[tuple[int, int]]:
    """[start, end) clip ranges of the parts, in manifest order."""
    n, s = plan["num_clips"], plan["clips_per_shard"]
    return [(k * s, min(n, (k + 1) * s)) for k in range(plan["num_parts"])]


# ----------------------------------------------------------------------------------- parts


def part_done(root: Path, part: int, modalities: list[str]) -> bool:
    """True when part ``part`` was completely written (json present, shard sizes as recorded)."""
    p = part_path(root, part)
    if not p.is_file():
        return False
    try:
        rec = read_json(p)
        for m in modalities:
            s = rec["shards"][m]
            if shard_path(root, m, part).stat().st_size != s["bytes"]:
                return False
    except (OSError, KeyError, ValueError):
        return False
    return True


def part_has_errors(root: Path, part: int) -> bool:
    try:
        return bool(read_json(part_path(root, part)).get("errors"))
    except (OSError, ValueError):
        return False


def write_part(root: Path, part: int, rows: list[dict[str, Any]], tokens: dict[str, list[np.ndarray]],
               errors: list[dict[str, Any]], token_shapes: dict[str, tuple[int, ...]]) -> dict[str, Any]:
    """Write one part: a shard per modality, then its json (the commit).

    Args:
        rows: index rows (manifest facts) of the clips that succeeded, in manifest order.
        tokens: per modality, one uint16-compatible array (T_i, *token_shape) per row.
        errors: {"id", "file", "reason"} of the clips that failed, in manifest order.
    """
    shards: dict[str, Any] = {}
    out_rows = [dict(r, frames={}, shard=part, offset={}) for r in rows]
    for m, arrays in tokens.items():
        if len(arrays) != len(rows):
            raise ValueError(f"part {part}: {len(arrays)} {m} arrays for {len(rows)} rows")
        off = 0
        for r, a in zip(out_rows, arrays):
            r["frames"][m] = int(a.shape[0])
            r["offset"][m] = off
            off += int(a.shape[0])
        shape = (off, *token_shapes[m])
        path = shard_path(root, m, part)
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                np.lib.format.write_array_header_1_0(
                    f, {"descr": TOKEN_DTYPE.str, "fortran_order": False, "shape": shape})
                for a in arrays:
                    if tuple(a.shape[1:]) != tuple(token_shapes[m]):
                        raise ValueError(f"part {part}: {m} tokens of shape {tuple(a.shape)}, "
                                         f"expected (T, {token_shapes[m]})")
                    f.write(np.ascontiguousarray(a, dtype=TOKEN_DTYPE).tobytes())
                f.flush()
                os.fsync(f.fileno())
        shards[m] = {"file": shard_name(part), "frames": off, "bytes": path.stat().st_size,
                     "sha256": sha256_file(path)}
    rec = {"part": part, "rows": out_rows, "errors": errors, "shards": shards}
    write_json(part_path(root, part), rec)
    return rec


# -------------------------------------------------------------------------------- finalize


@contextlib.contextmanager
def _lock(root: Path) -> Iterator[None]:
    """An exclusive lock on ``root/.lock`` (released by the OS if the process dies)."""
    try:
        import fcntl
    except ImportError:  # Windows: no lock; finalize is idempotent anyway
        yield
        return
    with open(root / ".lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def missing_parts(root: Path, plan: dict[str, Any]) -> list[int]:
    return [k for k in range(plan["num_parts"]) if not part_done(root, k, plan["modalities"])]


def finalize(root: Path) -> dict[str, Any]:
    """Write ``index.jsonl``, ``errors.jsonl``, ``summary.json`` and ``store.json`` (last).

    Call when every part is done. Idempotent and safe if several processes call it at once.
    Memory: one part at a time.
    """
    root = Path(root)
    plan = read_json(root / PLAN_NAME)
    mods = plan["modalities"]
    with _lock(root):
        missing = missing_parts(root, plan)
        if missing:
            raise StoreError(f"{root}: cannot finalize, parts {missing[:10]} are not done")
        for stale in root.rglob(".*.tmp"):  # from killed runs; no writer is active now
            with contextlib.suppress(FileNotFoundError):
                stale.unlink()
        shards: dict[str, list[dict[str, Any]]] = {m: [] for m in mods}
        frames = {m: 0 for m in mods}
        n_clips = n_err = 0
        with atomic_path(root / INDEX_NAME) as idx_tmp, atomic_path(root / ERRORS_NAME) as err_tmp:
            with open(idx_tmp, "w", encoding="utf-8") as fi, open(err_tmp, "w", encoding="utf-8") as fe:
                for k in range(plan["num_parts"]):
                    rec = read_json(part_path(root, k))
                    for r in rec["rows"]:
                        fi.write(json.dumps(r) + "\n")
                    for e in rec["errors"]:
                        fe.write(json.dumps(e) + "\n")
                    n_clips += len(rec["rows"])
                    n_err += len(rec["errors"])
                    for m in mods:
                        shards[m].append({"part": k, **rec["shards"][m]})
                        frames[m] += rec["shards"][m]["frames"]
        meta = {
            "format": STORE_FORMAT,
            "format_version": STORE_FORMAT_VERSION,
            "vqmae_version": plan["vqmae_version"],
            "modalities": mods,
            "classes": plan["classes"],
            "dataset": plan["dataset"],
            "manifest": plan["manifest"],
            "manifest_sha256": plan["manifest_sha256"],
            "num_clips": n_clips,
            "num_errors": n_err,
            "clips_per_shard": plan["clips_per_shard"],
            "num_shards": plan["num_parts"],
            "frames": frames,
            "seconds": {m: frames[m] / plan["provenance"][m]["frames_per_second"] for m in mods},
            "provenance": plan["provenance"],
            "clip_config": plan["clip_config"],
            "index_sha256": sha256_file(root / INDEX_NAME),
            "shards": shards,
        }
        write_json(root / STORE_JSON, meta)
    return meta


# ------------------------------------------------------------------------ in-memory writer


def write_token_store(root: str | Path, rows: list[dict[str, Any]], tokens: dict[str, list[np.ndarray]],
                      provenance: dict[str, dict[str, Any]], *, classes: list[str] | None = None,
                      clips_per_shard: int = 0, dataset: str = "", overwrite: bool = False) -> Path:
    """Write a complete store from tokens already in memory (tests, benchmarks, conversions).

    Args:
        rows: manifest-like rows ({"id", "speaker", "label", "label_name", "targets", "path", ...}).
        tokens: per modality, one array (T_i, *token_shape) per row (values < codebook_size).
        provenance: per modality, at least fingerprint, codebook_size, token_shape,
            frames_per_second (see :func:`tokenizer_provenance`, :func:`synthetic_provenance`).
    """
    root = Path(root)
    prov = {m: {"dtype": "uint16", "format_version": STORE_FORMAT_VERSION, **p} for m, p in provenance.items()}
    cps = clips_per_shard or auto_clips_per_shard(len(rows))
    keep = ("id", "speaker", "label", "label_name", "targets", "path", "dataset")
    rows = [{k: r.get(k, {} if k == "targets" else ("" if k in ("path", "dataset", "speaker") else None))
             for k in keep} for r in rows]
    plan = make_plan(manifest_path="", manifest_rows=rows, dataset_name=dataset, classes=classes or [],
                     provenance=prov, clips_per_shard=cps, clip_config={})
    plan = open_plan(root, plan, overwrite=overwrite)
    shapes = {m: tuple(p["token_shape"]) for m, p in prov.items()}
    for k, (a, b) in enumerate(part_ranges(plan)):
        if not part_done(root, k, plan["modalities"]):
            write_part(root, k, rows[a:b], {m: tokens[m][a:b] for m in prov}, [], shapes)
    finalize(root)
    return root


def synthetic_provenance(modality: str, *, codebook_size: int, token_shape: tuple[int, ...],
                         frames_per_second: float, fingerprint: str = "") -> dict[str, Any]:
    """Provenance of tokens that no tokenizer made (tests, benchmarks)."""
    fp = fingerprint or hashlib.sha256(
        f"synthetic:{modality}:{codebook_size}:{token_shape}:{frames_per_second}".encode()).hexdigest()
    return {"fingerprint": fp, "architecture": "synthetic", "codebook_size": codebook_size,
            "token_shape": list(token_shape), "frames_per_second": float(frames_per_second),
            "dtype": "uint16", "format_version": STORE_FORMAT_VERSION, "tokenizer_config": {}}

"""The tokenize job: a manifest -> a sharded token store (docs/TOKENIZE.md).

The manifest is cut into parts of ``clips_per_shard`` consecutive clips (a function of the clip
count only). Process ``r`` of ``W`` takes parts ``r, r+W, r+2W, …`` not yet done; DataLoader
workers decode, check and crop (:func:`vqmae.data.clips.load_clip`, the clip path of every stage)
and ``prepare`` (spectrogram, face scaling); the main process encodes clip by clip (GPU when
present, eval mode, fp32; a clip is never concatenated with another, as tokenizers may look at
neighbouring frames); each part is written atomically (:mod:`vqmae.data.token_writer`). When
every part is done the index is written and the store opens. A rerun skips finished parts.

Threads: ``num_workers`` loader workers and ``threads`` torch threads are fixed by the settings
(their ``-1`` / ``0`` defaults by the CPU count, never by the machine's load), so the tokens do
not depend on what else runs; the resolved values are saved in ``tokenize_config.json``.
"""

from __future__ import annotations

import copy
import logging
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from vqmae.config import ConfigError, setting
from vqmae.data.clips import clip_config_dict, resolve_clip_config
from vqmae.data.encoding import (
    ClipSource,
    check_device,
    encode_clip,
    error_reason,
    import_function,
    load_tokenizer_folders,
)
from vqmae.data.token_store import PLAN_NAME, StoreError
from vqmae.data.token_writer import (
    RUN_CONFIG_NAME,
    auto_clips_per_shard,
    finalize,
    make_plan,
    missing_parts,
    open_plan,
    part_done,
    part_has_errors,
    part_ranges,
    tokenizer_provenance,
    write_part,
)
from vqmae.io import read_json, write_json

log = logging.getLogger("vqmae")

INDEX_FIELDS = ("id", "speaker", "label", "label_name", "targets", "path", "dataset")


@dataclass
class TokenizeConfig:
    """Settings of ``vqmae tokenize``."""

    manifest: str = ""
    """manifest.jsonl (or its folder) written by `vqmae prepare` / `vqmae synth`."""
    audio_tokenizer: str = ""
    """Audio tokenizer folder (config.json + model.safetensors); '' = no audio tokens."""
    visual_tokenizer: str = ""
    """Visual tokenizer folder; '' = no visual tokens."""
    out: str = ""
    """Store folder (created; a rerun resumes it)."""
    clips_per_shard: int = setting(0, ge=0, help="Clips per part/shard; 0 = from the clip count (8..256). "
                                   "Never depends on the process count.")
    num_workers: int = setting(-1, ge=-1, help="DataLoader workers per process that decode, crop and "
                               "prepare; -1 = CPUs per process - 1 (1..8). Recorded in tokenize_config.json.")
    device: str = "auto"
    """auto (this process's GPU if any, else CPU) | cpu | cuda | cuda:N."""
    threads: int = setting(0, ge=0, help="torch threads of the main process (CPU encoding); 0 = CPUs per "
                           "process, minus the loader workers when they detect faces (>= 1). Fixed for the "
                           "whole run, recorded in tokenize_config.json.")
    overwrite: bool = False
    """Replace a store of another job (other manifest / tokenizer / part size) in --out."""
    retry_errors: bool = False
    """Redo parts that had failed clips (after fixing the media)."""
    limit: int = setting(0, ge=0, help="Tokenize only the first N manifest clips (0 = all).")
    parts: str = ""
    """'i/n': this job takes every n-th part starting at i (independent jobs, e.g. a SLURM array)."""
    progress: bool = True
    detect_faces: bool | None = None
    """Override the dataset's choice (dataset.json "media", set by `vqmae prepare`); None = keep it."""
    face_size: int | None = setting(None, ge=1, help="Face crop side before the visual tokenizer's "
                                    "prepare(); None = the dataset's (96).")
    backend: str = ""
    """Media backend auto | decord | pyav; '' = the dataset's."""
    stats_file: str = ""
    """Append each process's timing stats (clips/s, load / prepare / encode / write seconds) as a
    JSON line to this file."""
    loader: str = ""
    """'module:function' used instead of load_clip: f(path, clip_config: dict) -> object with
    .audio float32 (S,) and .faces uint8 (T, H, W, 3) (then checked like load_clip's clips).
    Imported before the tokenizers load."""


def _dist_state(device: str) -> tuple[int, int, torch.device, Callable[[], None]]:
    """(rank, world, device, barrier). Uses accelerate when launched with several processes."""
    from vqmae.training import init_distributed_if_launched

    cuda = torch.cuda.is_available() and device != "cpu"
    state = init_distributed_if_launched(cpu=not cuda, timeout=timedelta(hours=48))
    if state is not None:
        dev = state.device if device in ("auto", "cuda") else torch.device(device)
        return state.process_index, state.num_processes, dev, state.wait_for_everyone
    if device == "auto":
        dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        dev = torch.device(device)
    return 0, 1, dev, lambda: None


def parse_parts(spec: str) -> tuple[int, int]:
    if not spec:
        return 0, 1
    try:
        i, n = (int(x) for x in spec.split("/"))
    except ValueError:
        raise ConfigError(f"parts='{spec}': expected 'i/n', e.g. 0/8") from None
    if not 0 <= i < n:
        raise ConfigError(f"parts='{spec}': need 0 <= i < n")
    return i, n


def check_settings(cfg: TokenizeConfig) -> None:
    """Settings problems that the types and ranges cannot show (ConfigError naming the setting)."""
    if not cfg.manifest or not cfg.out:
        raise ConfigError("manifest, out: --manifest and --out are required")
    if not cfg.audio_tokenizer and not cfg.visual_tokenizer:
        raise ConfigError("audio_tokenizer, visual_tokenizer: give --audio-tokenizer and/or --visual-tokenizer")
    if Path(cfg.out).is_file():
        raise ConfigError(f"out: '{cfg.out}' is a file; give a folder for the token store")
    parse_parts(cfg.parts)
    check_device(cfg.device)


def resolve_threads(cfg: TokenizeConfig, world: int, detect_faces: bool) -> tuple[int, int]:
    """(loader workers, torch threads) from the settings and the CPUs given to this process —
    never from the machine's load, so the result does not depend on what else runs."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    per_proc = max(1, cpus // world)
    workers = cfg.num_workers if cfg.num_workers >= 0 else max(1, min(8, per_proc - 1))
    threads = cfg.threads or max(1, per_proc - (workers if detect_faces else 0))
    return workers, threads


def tokenize_dataset(cfg: TokenizeConfig) -> dict[str, Any]:
    """Tokenize this process's parts; the main process finalizes when all parts are done.

    Returns this process's stats: clips, errors, clips_per_s and the time split (``t_load``
    decode + crop and ``t_prepare`` summed over workers; ``t_wait`` for data, ``t_encode``,
    ``t_write`` here), plus ``store`` (store.json) on the process that finalized.
    """
    check_settings(cfg)
    from vqmae.data.manifest import read_manifest

    t_start = time.perf_counter()
    rank, world, device, barrier = _dist_state(cfg.device)
    job_i, job_n = parse_parts(cfg.parts)
    is_main = rank == 0
    if cfg.loader:
        import_function(cfg.loader)  # may register custom tokenizer architectures
    manifest = read_manifest(cfg.manifest)
    records = manifest.records[: cfg.limit] if cfg.limit else manifest.records
    dirs = {m: d for m, d in (("audio", cfg.audio_tokenizer), ("visual", cfg.visual_tokenizer)) if d}
    toks = load_tokenizer_folders(dirs)
    prov = {m: tokenizer_provenance(t, folder=dirs[m]) for m, t in toks.items()}
    clip_cfg = clip_config_dict(resolve_clip_config(manifest.path, toks, detect_faces=cfg.detect_faces,
                                                    face_size=cfg.face_size, backend=cfg.backend))
    clip_cfg["modalities"] = list(toks)
    rows = [{k: getattr(r, k) for k in INDEX_FIELDS} for r in records]
    cps = cfg.clips_per_shard or auto_clips_per_shard(len(rows))
    plan = make_plan(manifest_path=str(manifest.path), manifest_rows=rows, dataset_name=manifest.name,
                     classes=manifest.classes, provenance=prov, clips_per_shard=cps,
                     clip_config={k: v for k, v in clip_cfg.items() if k != "face_cache_dir"})
    out = Path(cfg.out)
    workers, threads = resolve_threads(cfg, world, bool(clip_cfg.get("detect_faces")))
    if is_main:
        open_plan(out, plan, overwrite=cfg.overwrite)
        run_name = RUN_CONFIG_NAME if job_n == 1 else RUN_CONFIG_NAME.replace(".json", f".part{job_i}of{job_n}.json")
        write_json(out / run_name, {**asdict(replace(cfg, num_workers=workers, threads=threads)),
                                    "processes": world, "clip_config": clip_cfg})
    barrier()
    plan = read_json(out / PLAN_NAME)
    if plan["fingerprints"] != {m: p["fingerprint"] for m, p in prov.items()}:
        raise StoreError(f"{out}: {PLAN_NAME} names other tokenizers than this process loaded")

    # job i of n, process r of W: parts k with k % (n*W) == i*W + r
    slot, slots = job_i * world + rank, job_n * world
    ranges = part_ranges(plan)
    mine = [k for k in range(len(ranges)) if k % slots == slot]
    todo = [k for k in mine if not part_done(out, k, plan["modalities"])
            or (cfg.retry_errors and part_has_errors(out, k))]
    items = [(i, str(manifest.media_path(records[i]))) for k in todo for i in range(*ranges[k])]
    torch.set_num_threads(threads)
    if is_main:
        log.info("tokenize: %d clips in %d parts of %d; %d process(es) x %d job(s); process 1 has %d of "
                 "its %d parts to do; device %s, %d loader workers and %d threads per process", len(rows),
                 len(ranges), cps, world, job_n, len(todo), len(mine), device, workers, threads)
    # workers prepare on CPU copies; the main process encodes on ``device``
    preparers = {m: copy.deepcopy(t).cpu() for m, t in toks.items()}
    for t in toks.values():
        t.to(device)
    source = ClipSource(items, clip_cfg, preparers, cfg.loader)
    stats = tokenize_parts(out, todo, ranges, source, rows, toks, plan["fingerprints"], device,
                           workers, show=cfg.progress and is_main)
    stats.update(rank=rank, world=world, job=job_i, jobs=job_n, device=str(device), workers=workers,
                 threads=threads, seconds=time.perf_counter() - t_start, num_clips=len(rows), **peak_rss_mb())
    log.info("tokenize[%d/%d]: %d clips (%d failed) at %.2f clips/s; in workers: load %.1f s, "
             "prepare %.1f s; here: waiting %.1f s, encode %.1f s, write %.1f s", rank + 1, world,
             stats["clips"], stats["errors"], stats["clips_per_s"], stats["t_load"],
             stats["t_prepare"], stats["t_wait"], stats["t_encode"], stats["t_write"])
    barrier()
    if not is_main:
        return stats
    left = missing_parts(out, plan)
    if left:
        log.info("tokenize: %d of %d parts still to do (other jobs); the job that finishes last "
                 "writes the index", len(left), len(ranges))
        return stats
    stats["store"] = finalize(out)
    return stats


def tokenize_parts(out: Path, todo: list[int], ranges: list[tuple[int, int]], source: ClipSource,
                   rows: list[dict[str, Any]], toks: dict[str, Any], fingerprints: dict[str, str],
                   device: torch.device, workers: int, show: bool) -> dict[str, Any]:
    """Tokenize the parts ``todo`` (``source`` yields their clips, in order) and write each one.

    Memory: the tokens of one part (``clips_per_shard`` clips) plus the loader's prefetch.
    """
    stats: dict[str, Any] = {"clips": 0, "errors": 0, "parts": len(todo), "clips_per_s": 0.0,
                             "t_load": 0.0, "t_prepare": 0.0, "t_wait": 0.0, "t_encode": 0.0, "t_write": 0.0}
    if not todo:
        return stats
    loader = DataLoader(source, batch_size=None, shuffle=False, num_workers=workers,
                        prefetch_factor=4 if workers else None, collate_fn=_identity,
                        pin_memory=device.type == "cuda")
    shapes = {m: tuple(int(s) for s in t.token_shape) for m, t in toks.items()}
    bar = None
    if show:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(source), unit="clip", desc="tokenize", smoothing=0.05, dynamic_ncols=True)
    part_iter = iter(todo)
    part = next(part_iter)
    ok: list[tuple[int, dict[str, np.ndarray]]] = []   # (manifest index, tokens) of the part so far
    failed: list[dict[str, Any]] = []
    t_first = t_wait = time.perf_counter()
    for item in loader:
        stats["t_wait"] += time.perf_counter() - t_wait
        stats["t_load"] += item["t_load"]
        stats["t_prepare"] += item["t_prepare"]
        i = item["idx"]
        if "error" not in item:
            t0 = time.perf_counter()
            try:
                ok.append((i, encode_clip(toks, item["x"], device)))
            except Exception as e:  # noqa: BLE001
                item.update(error=error_reason(e), kind="encode")
            stats["t_encode"] += time.perf_counter() - t0
        if "error" in item:
            failed.append({"id": rows[i]["id"], "file": item["path"], "reason": item["error"],
                           "kind": item["kind"]})
        if i == ranges[part][1] - 1:  # the part's last clip: write the part
            t0 = time.perf_counter()
            check_unchanged(toks, fingerprints)
            write_part(out, part, [rows[j] for j, _ in ok], {m: [t[m] for _, t in ok] for m in shapes},
                       failed, shapes)
            stats["t_write"] += time.perf_counter() - t0
            stats["clips"] += len(ok)
            stats["errors"] += len(failed)
            ok, failed = [], []
            part = next(part_iter, -1)
        if bar is not None:
            bar.update(1)
            if failed or stats["errors"]:
                bar.set_postfix(failed=stats["errors"] + len(failed), refresh=False)
        t_wait = time.perf_counter()
    if bar is not None:
        bar.close()
    del loader  # joins the workers
    stats["clips_per_s"] = (stats["clips"] + stats["errors"]) / max(time.perf_counter() - t_first, 1e-9)
    return stats


def _identity(x: Any) -> Any:
    return x


def peak_rss_mb() -> dict[str, float]:
    """Peak resident memory of this process (Linux VmHWM: not inherited from a parent process,
    unlike ``ru_maxrss``, which on Linux carries over the launcher's peak across fork + exec)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return {"peak_rss_mb": int(line.split()[1]) / 1024}
    except OSError:
        pass
    try:
        import resource
    except ImportError:  # Windows
        return {}
    scale = 1 / 1024 if sys.platform != "darwin" else 1 / 2**20  # Linux: KiB, macOS: bytes
    return {"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale}


def check_unchanged(toks: dict[str, Any], fingerprints: dict[str, str]) -> None:
    """Refuse to write tokens from a tokenizer whose weights changed while encoding."""
    for m, tok in toks.items():
        if tok.fingerprint() != fingerprints[m]:
            raise StoreError(
                f"the {m} tokenizer changed its weights while encoding (fingerprint {fingerprints[m][:16]}… "
                f"became {tok.fingerprint()[:16]}…): an untrained tokenizer whose quantizer initialises "
                "itself on first use? Tokenize with a trained tokenizer (vqmae train-tokenizer)")

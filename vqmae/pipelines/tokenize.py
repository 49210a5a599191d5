"""``vqmae tokenize``: pre-tokenize a dataset into a sharded token store (docs/TOKENIZE.md).

    vqmae tokenize --manifest data/manifest.jsonl --audio-tokenizer out/audio_tok \\
        --visual-tokenizer out/visual_tok --out out/tokens
    accelerate launch --num_processes 4 -m vqmae.pipelines.tokenize --manifest ... --out ...

The manifest is cut into parts of ``clips_per_shard`` consecutive clips (a function of the clip
count only). Process ``r`` of ``W`` takes parts ``r, r+W, r+2W, …`` not yet done; DataLoader workers
decode, crop (``vqmae.data.clips.load_aligned_clip``) and ``prepare`` (spectrogram, face
scaling); the main process encodes clip by clip (GPU when present, eval mode, fp32; a clip is
never concatenated with another, as tokenizers may look at neighbouring frames); each part is
written atomically (``vqmae.data.token_writer``). When every part is done the index is written
and the store opens.
A rerun skips finished parts, so a killed job is resumed by running the same command again.
"""

from __future__ import annotations

import copy
import importlib
import logging
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from vqmae.data.token_store import ERRORS_NAME, PLAN_NAME, StoreError
from vqmae.data.token_writer import (
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
from vqmae.io import append_jsonl, read_json, read_jsonl
from vqmae.pipelines.common import UserError, stage_main

log = logging.getLogger("vqmae")

MODALITIES = ("audio", "visual")
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
    clips_per_shard: int = 0
    """Clips per part/shard; 0 = from the clip count (8..256). Never depends on the process count."""
    num_workers: int = -1
    """DataLoader workers per process that decode, crop and prepare; -1 = CPUs per process - 1 (>= 1)."""
    device: str = "auto"
    """auto (this process's GPU if any, else CPU) | cpu | cuda | cuda:N."""
    threads: int = 0
    """torch threads of the main process (CPU encoding); 0 = CPUs per process, minus the loader
    workers when they detect faces or turn out busy after 16 clips (>= 1)."""
    overwrite: bool = False
    """Replace a store of another job (other manifest / tokenizer / part size) in --out."""
    retry_errors: bool = False
    """Redo parts that had failed clips (after fixing the media)."""
    limit: int = 0
    """Tokenize only the first N manifest clips (0 = all)."""
    parts: str = ""
    """'i/n': this job takes every n-th part starting at i (independent jobs, e.g. a SLURM array)."""
    progress: bool = True
    detect_faces: bool | None = None
    """Override the dataset's choice (dataset.json "media", set by `vqmae prepare`); None = keep it."""
    face_size: int | None = None
    """Face crop side before the visual tokenizer's prepare(); None = the dataset's (96)."""
    backend: str = ""
    """Media backend auto | decord | pyav; '' = the dataset's."""
    stats_file: str = ""
    """Append each process's timing stats (clips/s, load / prepare / encode / write seconds) as a
    JSON line to this file."""
    loader: str = ""
    """'module:function' used instead of load_aligned_clip: f(path, clip_config: dict) -> object
    with .audio float32 (S,) and .faces uint8 (T, H, W, 3). Imported before the tokenizers load."""


# --------------------------------------------------------------------------- clip loading


def _import(spec: str) -> Callable[..., Any]:
    mod, _, fn = spec.partition(":")
    if not fn:
        raise UserError(f"loader '{spec}': expected 'module:function'")
    try:
        return getattr(importlib.import_module(mod), fn)
    except (ImportError, AttributeError) as e:
        raise UserError(f"loader '{spec}': {e}") from None


def clip_config(manifest: str, toks: dict[str, Any], cfg: TokenizeConfig) -> dict[str, Any]:
    """The dataset's ClipConfig (dataset.json "media") with the tokenizers' rates and overrides."""
    from vqmae.data.clips import clip_config_dict, clip_config_for_dataset

    over: dict[str, Any] = {}
    if "audio" in toks:
        over["sample_rate"] = int(toks["audio"].sample_rate)
    if "visual" in toks:
        over["fps"] = float(toks["visual"].frames_per_second)
    if cfg.detect_faces is not None:
        over["detect_faces"] = cfg.detect_faces
    if cfg.face_size is not None:
        over["face_size"] = cfg.face_size
    if cfg.backend:
        over["backend"] = cfg.backend
    d = clip_config_dict(clip_config_for_dataset(manifest, **over))
    d["modalities"] = list(toks)
    return d


def _default_loader(path: str, clip_config: dict[str, Any]) -> Any:
    """Contract 1: ``load_aligned_clip(path, ClipConfig(...))``; audio-only stores read audio alone."""
    from vqmae.data.clips import SILENCE_PEAK, ClipConfig, load_aligned_clip

    if clip_config.get("modalities") == ["audio"]:
        from vqmae.data.media import load_audio

        wave = load_audio(path, sample_rate=clip_config["sample_rate"], backend=clip_config["backend"])
        peak = float(np.abs(wave).max()) if wave.size else 0.0
        if clip_config.get("peak_normalize", True) and peak > SILENCE_PEAK:
            wave = wave / peak
        return SimpleNamespace(audio=wave.astype(np.float32), faces=None)
    fields = ClipConfig.__dataclass_fields__
    return load_aligned_clip(path, ClipConfig(**{k: v for k, v in clip_config.items() if k in fields}))


class ClipSource(Dataset):
    """Decodes, crops and prepares clips in DataLoader workers; a failure becomes an error item.

    Item: {"idx", "path", "t_load", "t_prepare", "x": {modality: prepared input (T, ...)}}
    or {"idx", "path", "t_load", "t_prepare", "error": str, "kind": str}.
    """

    def __init__(self, items: list[tuple[int, str]], clip_config: dict[str, Any],
                 preparers: dict[str, Any], loader: str = ""):
        self.items, self.clip_config, self.preparers, self.loader = items, clip_config, preparers, loader
        self._fn: Callable[..., Any] | None = None

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, j: int) -> dict[str, Any]:
        if self._fn is None:
            self._fn = _import(self.loader) if self.loader else _default_loader
        idx, path = self.items[j]
        out: dict[str, Any] = {"idx": idx, "path": path, "t_prepare": 0.0}
        t0 = time.perf_counter()
        try:
            clip = self._fn(path, self.clip_config)
            out["t_load"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            x = {}
            with torch.inference_mode():
                for m, tok in self.preparers.items():
                    media = clip.audio if m == "audio" else clip.faces
                    if media is None or len(media) == 0:
                        raise ValueError(f"no {m} in the clip")
                    x[m] = tok.prepare(torch.from_numpy(np.ascontiguousarray(media)))
                    if x[m].shape[0] == 0:
                        raise ValueError(f"too short: 0 {m} token frames")
            out["x"] = x
        except Exception as e:  # noqa: BLE001 - any per-clip failure goes to errors.jsonl
            out.update(error=_reason(e), kind=getattr(e, "kind", type(e).__name__))
            out.setdefault("t_load", time.perf_counter() - t0)
            return out
        out["t_prepare"] = time.perf_counter() - t0
        return out


def _reason(e: BaseException) -> str:
    msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"{type(e).__name__}: {msg}" if msg else type(e).__name__


# ------------------------------------------------------------------------------- encoding


def load_tokenizer(folder: str) -> Any:
    """A tokenizer from its folder (contract 3), in eval mode."""
    from vqmae.tokenizers import load_tokenizer as _load

    if not Path(folder).exists():
        raise UserError(f"tokenizer folder not found: {folder}")
    try:
        tok = _load(folder)
    except ValueError as e:  # ModelFolderError: not a tokenizer, unknown version, pickles
        raise UserError(str(e)) from None
    return tok.eval()


def encode_clip(toks: dict[str, Any], x: dict[str, torch.Tensor], device: torch.device) -> dict[str, np.ndarray]:
    """Prepared inputs of one clip -> uint16 tokens per modality (T, *token_shape).

    One clip per call: a tokenizer may look at neighbouring frames (the audio ``base`` preset
    does), so clips are never concatenated.
    """
    out = {}
    with torch.inference_mode():
        for m, tok in toks.items():
            codes = tok.encode(x[m].to(device, non_blocking=True)).to(torch.int32).cpu().numpy()
            K = tok.codebook_size
            if codes.size and (codes.min() < 0 or codes.max() >= K):
                raise ValueError(f"{m} tokenizer returned codes outside [0, {K})")
            out[m] = codes.astype(np.uint16)
    return out


# ------------------------------------------------------------------------------------ job


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


def _parse_parts(spec: str) -> tuple[int, int]:
    if not spec:
        return 0, 1
    try:
        i, n = (int(x) for x in spec.split("/"))
    except ValueError:
        raise UserError(f"parts='{spec}': expected 'i/n', e.g. 0/8") from None
    if not 0 <= i < n:
        raise UserError(f"parts='{spec}': need 0 <= i < n")
    return i, n


def run(cfg: TokenizeConfig) -> int:
    """The stage: exit code 0 (also with per-clip failures, listed in errors.jsonl), 1 if no clip
    could be tokenized."""
    stats = tokenize_dataset(cfg)
    meta = stats.get("store")
    return 1 if meta is not None and meta["num_clips"] == 0 and stats["num_clips"] else 0


def tokenize_dataset(cfg: TokenizeConfig) -> dict[str, Any]:
    """Tokenize this process's parts; the main process finalizes when all parts are done.

    Returns this process's stats: clips, errors, clips_per_s and the time split (``t_load``
    decode + crop and ``t_prepare`` summed over workers; ``t_wait`` for data, ``t_encode``,
    ``t_write`` here), plus ``store`` (store.json) on the process that finalized.
    """
    if not cfg.manifest or not cfg.out:
        raise UserError("--manifest and --out are required")
    if not cfg.audio_tokenizer and not cfg.visual_tokenizer:
        raise UserError("give --audio-tokenizer and/or --visual-tokenizer")
    from vqmae.data.manifest import read_manifest

    t_start = time.perf_counter()
    rank, world, device, barrier = _dist_state(cfg.device)
    job_i, job_n = _parse_parts(cfg.parts)
    is_main = rank == 0
    if cfg.loader:
        _import(cfg.loader)  # may register custom tokenizer architectures
    manifest = read_manifest(cfg.manifest)
    records = manifest.records[: cfg.limit] if cfg.limit else manifest.records
    dirs = {m: d for m, d in (("audio", cfg.audio_tokenizer), ("visual", cfg.visual_tokenizer)) if d}
    toks = {m: load_tokenizer(d) for m, d in dirs.items()}
    prov = {m: tokenizer_provenance(t, folder=dirs[m]) for m, t in toks.items()}
    clip_cfg = clip_config(str(manifest.path), toks, cfg)
    rows = [{k: getattr(r, k) for k in INDEX_FIELDS} for r in records]
    cps = cfg.clips_per_shard or auto_clips_per_shard(len(rows))
    plan = make_plan(manifest_path=str(manifest.path), manifest_rows=rows, dataset_name=manifest.name,
                     classes=manifest.classes, provenance=prov, clips_per_shard=cps,
                     clip_config={k: v for k, v in clip_cfg.items() if k != "face_cache_dir"})
    out = Path(cfg.out)
    if is_main:
        open_plan(out, plan, overwrite=cfg.overwrite)
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
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    per_proc = max(1, cpus // world)
    workers = cfg.num_workers if cfg.num_workers >= 0 else max(1, min(8, per_proc - 1))
    # Decoding alone keeps a loader worker mostly idle (~0.05 s of a 2-s clip vs ~0.3 s of
    # paper-preset encoding), so the encoder takes every core of the process: 1 process on 2 idle
    # cores, 2 threads: 3.0-3.3 clips/s, 1 thread: 2.1 (2026-11-30). Face detection keeps the
    # workers busy: then the encoder gets the cores the workers leave. Otherwise it shares them,
    # and `_tokenize_parts` hands them back if the workers turn out to be busy anyway.
    faces = bool(clip_cfg.get("detect_faces"))
    share_cores_with = workers if (cfg.threads <= 0 and device.type == "cpu" and not faces) else 0
    if cfg.threads > 0 or device.type == "cpu":
        torch.set_num_threads(cfg.threads or max(1, per_proc - (workers if faces else 0)))
    if is_main:
        log.info("tokenize: %d clips in %d parts of %d; %d process(es) x %d job(s); process 1 has %d of "
                 "its %d parts to do; device %s, %d loader workers per process", len(rows), len(ranges),
                 cps, world, job_n, len(todo), len(mine), device, workers)
    # workers prepare on CPU copies; the main process encodes on ``device``
    preparers = {m: copy.deepcopy(t).cpu() for m, t in toks.items()}
    for t in toks.values():
        t.to(device)
    source = ClipSource(items, clip_cfg, preparers, cfg.loader)
    stats = _tokenize_parts(out, todo, ranges, source, rows, toks, plan["fingerprints"], device,
                            workers, show=cfg.progress and is_main, share_cores_with=share_cores_with)
    stats.update(rank=rank, world=world, job=job_i, jobs=job_n, device=str(device), workers=workers,
                 seconds=time.perf_counter() - t_start, num_clips=len(rows), **_peak_rss_mb())
    log.info("tokenize[%d/%d]: %d clips (%d failed) at %.2f clips/s; in workers: load %.1f s, "
             "prepare %.1f s; here: waiting %.1f s, encode %.1f s, write %.1f s", rank + 1, world,
             stats["clips"], stats["errors"], stats["clips_per_s"], stats["t_load"],
             stats["t_prepare"], stats["t_wait"], stats["t_encode"], stats["t_write"])
    if cfg.stats_file:
        append_jsonl(cfg.stats_file, stats)
    barrier()
    if not is_main:
        return stats
    left = missing_parts(out, plan)
    if left:
        log.info("tokenize: %d of %d parts still to do (other jobs); the job that finishes last "
                 "writes the index", len(left), len(ranges))
        return stats
    stats["store"] = finalize(out)
    _print_summary(out, stats["store"], len(rows))
    return stats


def _give_cores_back_if_workers_busy(stats: dict[str, Any], workers: int) -> None:
    """Encode with ``workers`` fewer threads when the loader workers were busy for more than half
    of the encoding time so far (see :func:`_tokenize_parts`)."""
    busy = stats["t_load"] + stats["t_prepare"]
    threads = max(1, torch.get_num_threads() - workers)
    if busy > 0.5 * stats["t_encode"] and threads < torch.get_num_threads():
        log.info("tokenize: the loader workers are busy (%.1f s for %.1f s of encoding): encoding "
                 "with %d thread(s) from now on", busy, stats["t_encode"], threads)
        torch.set_num_threads(threads)


def _tokenize_parts(out: Path, todo: list[int], ranges: list[tuple[int, int]], source: ClipSource,
                    rows: list[dict[str, Any]], toks: dict[str, Any], fingerprints: dict[str, str],
                    device: torch.device, workers: int, show: bool,
                    share_cores_with: int = 0) -> dict[str, Any]:
    """Tokenize the parts ``todo`` (``source`` yields their clips, in order) and write each one.

    ``share_cores_with`` > 0: the encoder runs on every core although that many loader workers
    share them; after 16 clips, if the workers were busy for more than half of the encoding time
    (small tokenizers: decoding costs as much as encoding), the encoder gives them their cores
    back (``torch.set_num_threads(threads - workers)``): threads spinning against busy workers
    slow both down.

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
    seen = 0
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
                item.update(error=_reason(e), kind="encode")
            stats["t_encode"] += time.perf_counter() - t0
        if "error" in item:
            failed.append({"id": rows[i]["id"], "file": item["path"], "reason": item["error"],
                           "kind": item["kind"]})
        if i == ranges[part][1] - 1:  # the part's last clip: write the part
            t0 = time.perf_counter()
            _check_unchanged(toks, fingerprints)
            write_part(out, part, [rows[j] for j, _ in ok], {m: [t[m] for _, t in ok] for m in shapes},
                       failed, shapes)
            stats["t_write"] += time.perf_counter() - t0
            stats["clips"] += len(ok)
            stats["errors"] += len(failed)
            ok, failed = [], []
            part = next(part_iter, -1)
        seen += 1
        if share_cores_with and seen == 16:
            _give_cores_back_if_workers_busy(stats, share_cores_with)
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


def _peak_rss_mb() -> dict[str, float]:
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


def _check_unchanged(toks: dict[str, Any], fingerprints: dict[str, str]) -> None:
    """Refuse to write tokens from a tokenizer whose weights changed while encoding."""
    for m, tok in toks.items():
        if tok.fingerprint() != fingerprints[m]:
            raise StoreError(
                f"the {m} tokenizer changed its weights while encoding (fingerprint {fingerprints[m][:16]}… "
                f"became {tok.fingerprint()[:16]}…): an untrained tokenizer whose quantizer initialises "
                "itself on first use? Tokenize with a trained tokenizer (vqmae train-tokenizer)")


def _print_summary(out: Path, meta: dict[str, Any], n_manifest: int) -> None:
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
    def _run(cfg: TokenizeConfig) -> int:
        try:
            return run(cfg)
        except StoreError as e:
            raise UserError(str(e)) from None

    return stage_main("tokenize", __doc__ or "", TokenizeConfig, _run, argv)


if __name__ == "__main__":
    raise SystemExit(main())

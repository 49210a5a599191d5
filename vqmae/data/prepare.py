"""The prepare job: dataset folder -> ``manifest.jsonl`` + ``dataset.json`` + ``folds.json`` +
``errors.jsonl`` + ``face_cache/`` (docs/PREPARE.md).

Each file is checked in a worker process (so a decoder crash or hang costs one file, not the
job): the header is probed, then (``check="decode"``) the clip is decoded exactly as the
tokenizers will read it (:func:`vqmae.data.clips.load_aligned_clip`), which also fills the face
cache. A file that fails becomes one ``errors.jsonl`` row ``{file, id, kind, reason}`` and the job
goes on; a worker that dies (e.g. a segfault in a native decoder) or exceeds ``timeout`` seconds
is replaced and its file recorded as ``crash`` / ``timeout``.
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from vqmae.config import setting
from vqmae.data.adapters import AdapterResult, get_adapter
from vqmae.data.clips import MIN_CLIP_SECONDS, ClipConfig, clip_config_dict, load_clip
from vqmae.data.faces import DetectorConfig
from vqmae.data.folds import FOLDS_NAME, FoldsError, folds_meta, load_or_make_folds, read_folds_meta
from vqmae.data.manifest import ClipRecord, write_manifest
from vqmae.data.media import MediaError, probe
from vqmae.io import write_jsonl

log = logging.getLogger("vqmae.prepare")

ERRORS_NAME = "errors.jsonl"
FACE_CACHE_NAME = "face_cache"
WORKER_START_TIMEOUT = 300  # seconds for a worker process to import its libraries


@dataclass
class PrepareConfig:
    """Settings of ``vqmae prepare`` (docs/PREPARE.md)."""

    dataset: str = ""
    """Adapter: ravdess | crema-d | enterface | voxceleb2 | lrw | csv | synthetic."""
    root: str = ""
    """Dataset folder (for synthetic: the folder holding its manifest.jsonl)."""
    out: str = ""
    """Output folder: manifest.jsonl, dataset.json, folds.json, errors.jsonl, face_cache/."""
    protocol: str = ""
    """Fold protocol: kfold | loso | ravdess6 | cremad5 | split | none ('' = the dataset's default)."""
    k: int = setting(5, ge=2)
    seed: int = 0
    val_speakers: int | float | None = None
    """Validation speakers per fold: null = next group (loso: 10 %), int = count, float = fraction."""
    refold: bool = False
    """Recompute folds.json even if it exists with other settings."""
    strict: bool = False
    """Exit with status 1 when any file failed."""
    check: Literal["decode", "probe"] = "decode"
    """decode = decode every clip as the tokenizers will (finds truncation, silence, no face; fills
    the face cache); probe = read headers only (fast, for very large corpora)."""
    detect_faces: bool | None = None
    """null = the dataset's default; true = Haar face detection; false = face-centred source (centre crop)."""
    face_size: int = 96
    face_margin: float = 0.25
    face_detect_every: int = setting(5, ge=1, le=50, help="Face detection on every k-th frame, the track "
                                     "interpolated between agreeing detections and re-detected on every frame "
                                     "where a detection fails or jumps (1 = every frame, the slow reference).")
    face_detect_max_side: int = setting(320, ge=64, le=4096, help="Frames are downscaled to at most this "
                                        "longer side (pixels) before face detection.")
    backend: Literal["auto", "decord", "pyav"] = "auto"
    """Media backend."""
    min_duration: float = setting(MIN_CLIP_SECONDS, ge=0)
    """Clips shorter than this (seconds of aligned audio + video) are rejected as too_short."""
    workers: int = setting(0, ge=0)
    """Worker processes (0 = min(4, CPUs))."""
    timeout: float = setting(120.0, gt=0)
    """Seconds one file may take before its worker is killed (error kind 'timeout')."""
    csv_file: str = ""
    """csv adapter: the CSV (default <root>/labels.csv)."""
    include_song: bool = False
    """ravdess adapter: keep sung clips (VV 02) too."""
    classes: list[str] = field(default_factory=list)
    """csv adapter: class names in label order (default: sorted label names)."""


# --------------------------------------------------------------------------- one file


def check_file(path: str, opts: dict[str, Any]) -> dict[str, Any]:
    """Check one media file. Returns ``{"ok": True, duration, fps, sample_rate, ...}`` or
    ``{"ok": False, "kind": ..., "reason": ...}``. Runs inside a worker process."""
    try:
        name = Path(path).name
        if opts.get("crash_on") and opts["crash_on"] in name:  # test hook: a decoder that segfaults
            import signal

            os.kill(os.getpid(), signal.SIGSEGV)
        if opts.get("hang_on") and opts["hang_on"] in name:  # test hook: a decoder that hangs
            time.sleep(3600)
        info = probe(path)
        if not info.has_video:
            raise MediaError(path, "no video track", kind="no_video")
        if not info.has_audio:
            raise MediaError(path, "no audio track", kind="no_audio")
        header = min(info.video_duration or info.duration, info.audio_duration or info.duration)
        if header < opts["min_duration"]:
            raise MediaError(path, f"too short: {header:.2f} s < min_duration {opts['min_duration']} s", kind="too_short")
        out = {"ok": True, "duration": round(header, 4), "fps": round(info.fps, 4),
               "sample_rate": info.sample_rate}
        if opts["check"] == "probe":
            return out
        clip = load_clip(path, ClipConfig(**opts["clip"]), min_seconds=opts["min_duration"])
        dur = clip.duration
        out["duration"] = round(dur, 4)
        if clip.face_detected is not None:
            out["face_rate"] = round(float(clip.face_detected.mean()), 4)
        return out
    except MediaError as e:
        return {"ok": False, "kind": e.kind, "reason": e.problem}
    except Exception as e:  # noqa: BLE001 - one file must never stop the job
        return {"ok": False, "kind": "corrupt", "reason": f"{type(e).__name__}: {e}"}


def _worker_loop() -> None:  # pragma: no cover - runs in a worker process
    """``python -m vqmae.data.prepare``: read ``{"i", "path", "opts"}`` JSON lines on stdin, answer
    ``{"i", "result"}`` JSON lines. Native libraries' output is sent to stderr."""
    import json
    import signal
    import sys

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C
    out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # anything printed by decoders goes to stderr, never into the answers
    try:  # one thread per worker; torch is imported lazily (resampling) and reads OMP_NUM_THREADS
        import av
        import cv2

        av.logging.set_level(av.logging.ERROR)
        cv2.setNumThreads(1)
    except Exception:  # noqa: BLE001
        pass
    out.write(json.dumps({"ready": True}) + "\n")  # the parent starts the per-file clock from here
    out.flush()
    for line in sys.stdin:
        if not line.strip():
            continue
        msg = json.loads(line)
        out.write(json.dumps({"i": msg["i"], "result": check_file(msg["path"], msg["opts"])}) + "\n")
        out.flush()


class _Worker:
    """One isolated worker process (a fresh interpreter: no fork, no shared native state)."""

    def __init__(self, log_file: Any):
        import subprocess
        import sys

        env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
        self.proc = subprocess.Popen([sys.executable, "-m", "vqmae.data.prepare"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=log_file, env=env, text=True, bufsize=1)
        self.task: int | None = None
        self.ready = False
        self.started = 0.0
        self.spawned = time.monotonic()

    def submit(self, i: int, path: str, opts: dict[str, Any]) -> None:
        import json

        self.task, self.started = i, time.monotonic()
        self.proc.stdin.write(json.dumps({"i": i, "path": path, "opts": opts}) + "\n")
        self.proc.stdin.flush()

    def read(self) -> dict[str, Any] | None | bool:
        """The task's result; ``False`` for the start-up line; ``None`` at EOF (the worker died)."""
        import json

        line = self.proc.stdout.readline()
        if not line:
            return None
        msg = json.loads(line)
        if msg.get("ready"):
            self.ready, self.started = True, time.monotonic()
            return False
        return msg["result"] if msg.get("i") == self.task else False

    def stop(self, kill: bool = False) -> None:
        """End the worker: it holds no state, so after a short grace period it is killed."""
        if not kill:
            try:
                self.proc.stdin.close()
                self.proc.wait(timeout=1)
            except Exception:  # noqa: BLE001 - slow interpreter teardown (e.g. torch loaded)
                pass
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout):
            try:
                f.close()
            except Exception:  # noqa: BLE001
                pass


def check_files(paths: list[str], opts: dict[str, Any], workers: int = 2, timeout: float = 120.0,
                log_path: str | Path | None = None, progress: bool = True) -> list[dict[str, Any]]:
    """Run :func:`check_file` on every path in isolated worker processes (order kept).

    A worker that dies gives ``{"ok": False, "kind": "crash"}``; one over ``timeout`` seconds is
    killed and gives ``kind "timeout"``; either is replaced by a fresh worker. Workers' stderr
    (decoder warnings) goes to ``log_path`` (default: discarded).
    """
    import selectors
    import subprocess

    if not paths:
        return []
    results: list[dict[str, Any] | None] = [None] * len(paths)
    log_file = open(log_path, "a") if log_path else subprocess.DEVNULL  # noqa: SIM115
    pool = [_Worker(log_file) for _ in range(max(1, min(workers, len(paths))))]
    todo = list(range(len(paths)))[::-1]
    done, t0, last_log = 0, time.monotonic(), time.monotonic()
    sel = selectors.DefaultSelector()

    def start(k: int) -> None:
        if todo:
            i = todo.pop()
            pool[k].submit(i, paths[i], opts)
            sel.register(pool[k].proc.stdout, selectors.EVENT_READ, k)

    def finish(k: int, res: dict[str, Any], replace: bool) -> None:
        nonlocal done
        w = pool[k]
        sel.unregister(w.proc.stdout)
        results[w.task] = res
        done += 1
        w.task = None
        if replace:
            w.stop(kill=True)
            pool[k] = _Worker(log_file)
        start(k)

    try:
        for k in range(len(pool)):
            start(k)
        while done < len(paths):
            for key, _ in sel.select(timeout=0.5):
                k = key.data
                w = pool[k]
                res = w.read()
                if res is False:
                    continue
                if res is not None:
                    finish(k, res, replace=False)
                else:  # EOF: the worker died on this file
                    code = w.proc.wait()
                    why = f"killed by signal {-code}" if code < 0 else f"exit code {code}"
                    finish(k, {"ok": False, "kind": "crash",
                               "reason": f"the decoder crashed the worker process ({why})"}, replace=True)
            now = time.monotonic()
            for k, w in enumerate(pool):
                if w.task is not None and w.ready and now - w.started > timeout:
                    finish(k, {"ok": False, "kind": "timeout",
                               "reason": f"took longer than {timeout:g} s (worker killed)"}, replace=True)
                elif not w.ready and now - w.spawned > WORKER_START_TIMEOUT:
                    raise RuntimeError(f"a prepare worker did not start within {WORKER_START_TIMEOUT} s "
                                       f"(python -m vqmae.data.prepare); see {log_path or 'its stderr'}")
            if progress and now - last_log > 10:
                last_log = now
                log.info("checked %d / %d files (%.1f files/s)", done, len(paths), done / (now - t0))
    finally:
        sel.close()
        for w in pool:  # let idle workers exit together, then make sure every one is gone
            if w.task is None:
                try:
                    w.proc.stdin.close()
                except Exception:  # noqa: BLE001
                    pass
        for w in pool:
            w.stop(kill=w.task is not None)
        if log_path:
            log_file.close()
    return [r for r in results if r is not None]


# --------------------------------------------------------------------------------- job


@dataclass
class PrepareResult:
    out: Path
    records: list[ClipRecord]
    errors: list[dict[str, Any]]
    skipped: list[dict[str, str]]
    folds_created: bool | None
    summary: dict[str, Any]

    @property
    def exit_code_strict(self) -> int:
        return 1 if self.errors else 0


def _detect(cfg: PrepareConfig, face_centred: bool) -> bool:
    return (not face_centred) if cfg.detect_faces is None else bool(cfg.detect_faces)


def _scan(cfg: PrepareConfig) -> tuple[AdapterResult, bool, str]:
    adapter = get_adapter(cfg.dataset)
    options: dict[str, Any] = {}
    if adapter.name == "csv":
        options = {"csv_file": cfg.csv_file, "classes": list(cfg.classes) or None}
    elif adapter.name == "ravdess":
        options = {"include_song": cfg.include_song}
    return adapter.fn(cfg.root, **options), adapter.face_centred, adapter.protocol


def prepare(cfg: PrepareConfig) -> PrepareResult:
    """Run the whole job (see module doc). Raises ``FoldsError`` when folds.json exists with
    other settings (and not ``cfg.refold``), ``ValueError`` / ``FileNotFoundError`` for bad settings."""
    if not cfg.dataset or not cfg.root or not cfg.out:
        raise ValueError("dataset, root and out are required (e.g. --dataset ravdess --root DIR --out DIR)")
    if cfg.check not in ("decode", "probe"):
        raise ValueError(f"check must be decode or probe (got {cfg.check!r})")
    if Path(cfg.out).expanduser().is_file():
        raise ValueError(f"out: '{cfg.out}' is a file; give a folder (created if missing)")
    t0 = time.monotonic()
    scan, face_centred, default_protocol = _scan(cfg)
    protocol = cfg.protocol or default_protocol
    out = Path(cfg.out).expanduser().resolve()
    if protocol != "none" and not cfg.refold and (out / FOLDS_NAME).is_file():
        # fail before the long checks when the folds on disk were made with other settings
        asked = folds_meta([], protocol, cfg.k, cfg.seed, cfg.val_speakers)
        old = read_folds_meta(out / FOLDS_NAME)
        diffs = [f"{key}: on disk {old.get(key)!r}, asked {asked[key]!r}" for key in asked
                 if key != "speakers" and old.get(key) != asked[key]]
        if diffs:
            raise FoldsError(f"{out / FOLDS_NAME} was made with other settings ({'; '.join(diffs)}). Use the "
                             "same settings, or pass --refold to recompute the folds (results made with the "
                             "old folds are then not comparable).")
    out.mkdir(parents=True, exist_ok=True)
    detect = _detect(cfg, face_centred)
    detector = DetectorConfig(detect_every=cfg.face_detect_every, detect_max_side=cfg.face_detect_max_side)
    clip_cfg = ClipConfig(detect_faces=detect, face_size=cfg.face_size, face_margin=cfg.face_margin,
                          backend=cfg.backend, face_cache_dir=str(out / FACE_CACHE_NAME) if detect else "",
                          detector=detector)
    opts = {"check": cfg.check, "min_duration": cfg.min_duration, "clip": clip_config_dict(clip_cfg)}
    workers = cfg.workers or min(4, os.cpu_count() or 1)
    log.info("%s: %d clips found under %s (%d skipped, %d unusable names); checking with %d workers",
             scan.name, len(scan.records), scan.root, len(scan.skipped), len(scan.errors), workers)
    paths = [str(scan.root / r.path) for r in scan.records]
    results = check_files(paths, opts, workers=workers, timeout=cfg.timeout, log_path=out / "prepare_workers.log")

    errors: list[dict[str, Any]] = [dict(e, id=None) for e in scan.errors]
    records: list[ClipRecord] = []
    face_rates = []
    for rec, res in zip(scan.records, results):
        if not res["ok"]:
            errors.append({"file": rec.path, "id": rec.id, "kind": res["kind"], "reason": res["reason"]})
            continue
        rec.duration, rec.fps, rec.sample_rate = res["duration"], res["fps"], res["sample_rate"]
        if "face_rate" in res:
            face_rates.append(res["face_rate"])
        records.append(rec)
    write_jsonl(out / ERRORS_NAME, errors)

    speakers = sorted({r.speaker for r in records})
    summary: dict[str, Any] = {
        "dataset": scan.name, "root": str(scan.root), "out": str(out), "found": len(scan.records),
        "ok": len(records), "errors": len(errors), "error_kinds": dict(Counter(e["kind"] for e in errors)),
        "skipped": len(scan.skipped), "speakers": len(speakers),
        "per_class": {scan.classes[i]: n for i, n in sorted(Counter(r.label for r in records if r.label is not None).items())},
        "hours": round(sum(r.duration for r in records) / 3600, 3), "check": cfg.check, "detect_faces": detect,
        "protocol": protocol,
    }
    if face_rates:
        summary["face_frames_detected_mean"] = round(sum(face_rates) / len(face_rates), 4)
        summary["clips_face_rate_below_half"] = sum(r < 0.5 for r in face_rates)
    media = clip_config_dict(clip_cfg)
    media["face_cache_dir"] = FACE_CACHE_NAME if detect else ""
    write_manifest(out, records, root=scan.root, name=scan.name, classes=scan.classes,
                   extra={"media": media, "prepare": summary})

    folds_created = None
    if protocol != "none" and records:
        folds, folds_created = load_or_make_folds(out / FOLDS_NAME, speakers, protocol=protocol, k=cfg.k,
                                                  seed=cfg.seed, val_speakers=cfg.val_speakers, refold=cfg.refold)
        summary["folds"] = len(folds)
        summary["folds_file"] = "created" if folds_created else "reused"
    summary["seconds"] = round(time.monotonic() - t0, 2)
    return PrepareResult(out, records, errors, scan.skipped, folds_created, summary)


def format_summary(res: PrepareResult) -> str:
    s = res.summary
    lines = [f"prepare {s['dataset']}: {s['ok']} / {s['found']} clips usable, {s['errors']} errors, "
             f"{s['skipped']} skipped, {s['speakers']} speakers, {s['hours']} h ({s['seconds']} s)"]
    if s["error_kinds"]:
        lines.append("  errors by kind: " + ", ".join(f"{k} {n}" for k, n in sorted(s["error_kinds"].items()))
                     + f"  (see {res.out / ERRORS_NAME})")
        for e in res.errors[:5]:
            lines.append(f"    {e['file']}: {e['kind']}: {e['reason']}")
        if len(res.errors) > 5:
            lines.append(f"    ... {len(res.errors) - 5} more")
    if s["per_class"]:
        lines.append("  clips per class: " + ", ".join(f"{k} {n}" for k, n in s["per_class"].items()))
    if "face_frames_detected_mean" in s:
        lines.append(f"  faces: {100 * s['face_frames_detected_mean']:.1f} % of frames detected on average; "
                     f"{s['clips_face_rate_below_half']} clips under 50 % (gaps filled by interpolation)")
    if "folds" in s:
        lines.append(f"  folds: {s['folds']} ({s['protocol']}), {s['folds_file']}: {res.out / FOLDS_NAME}")
    lines.append(f"  manifest: {res.out / 'manifest.jsonl'}")
    return "\n".join(lines)


if __name__ == "__main__":
    _worker_loop()

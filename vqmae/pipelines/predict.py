"""``vqmae predict``: class probabilities (and arousal/valence) for media files, as JSON.

    vqmae predict --model OUT/finetune-av/fold_0/model clip1.mp4 clip2.mp4 [--out preds.json]
    vqmae predict --model OUT/finetune-av video.mp4      # an experiment folder: fold models averaged

Straight from media: each file is decoded like ``vqmae tokenize`` did for the training store
(``load_aligned_clip`` with the clip settings recorded in the model), tokenized by the tokenizers
recorded with the model (fingerprints checked), cut into the same deterministic windows as the
test protocol, and the window outputs averaged. Output (stdout, or ``--out``)::

    {"model": ..., "classes": [...], "predictions": [
        {"file": "clip1.mp4", "label": "angry", "probabilities": {"angry": 0.71, ...},
         "arousal": 0.62, "valence": -0.4, "windows": 2, "seconds": 2.5}, ...],
     "errors": [{"file": ..., "error": ...}]}

Probabilities sum to 1; ``arousal``/``valence`` are present when the model predicts them.
A file that cannot be read is reported under ``errors``; the others are still predicted.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vqmae.evaluation.protocol import model_window_seconds, predict_clips
from vqmae.pipelines.common import UserError, stage_main
from vqmae.runs import log


@dataclass
class PredictConfig:
    """Settings of ``vqmae predict`` (media files are given as plain arguments)."""

    model: str = ""
    """A fine-tuned model folder, or a finetune experiment folder (its fold models are averaged)."""
    files: list[str] = field(default_factory=list)
    """Media files (also accepted as plain arguments)."""
    out: str = ""
    """JSON file to write; '' = print to stdout."""
    audio_tokenizer: str = ""
    """Override the audio tokenizer folder recorded in the model (must have the same fingerprint)."""
    visual_tokenizer: str = ""
    face_cache_dir: str = ""
    batch_size: int = 32
    device: str = "auto"
    """auto | cpu | cuda."""
    stride_seconds: float = 0.0
    """Step between windows; 0 = the window length (as in the test protocol)."""


def _load_models(path: str) -> list[tuple[Any, dict[str, Any]]]:
    from vqmae.checkpoint import ModelFolderError
    from vqmae.mae.classifier import load_classifier
    from vqmae.pipelines.evaluate import model_folders

    try:
        return [load_classifier(f) for f in model_folders(path)]
    except ModelFolderError as e:
        raise UserError(str(e)) from None


def load_tokenizers(info: dict[str, Any], modalities: list[str], overrides: dict[str, str]) -> dict[str, Any]:
    """The tokenizers the model was trained with (folders from ``info``, fingerprints checked)."""
    from vqmae.checkpoint import ModelFolderError
    from vqmae.tokenizers import load_tokenizer

    toks = {}
    for m in modalities:
        rec = (info.get("tokenizers") or {}).get(m) or {}
        folder = overrides.get(m) or rec.get("dir", "")
        if not folder or not Path(folder).is_dir():
            raise UserError(f"the {m} tokenizer folder '{folder}' recorded with the model is not found; "
                            f"give --{m}-tokenizer DIR")
        try:
            tok = load_tokenizer(folder).eval()
        except ModelFolderError as e:
            raise UserError(str(e)) from None
        want = rec.get("fingerprint")
        if want and tok.fingerprint() != want:
            raise UserError(f"{folder}: tokenizer {tok.fingerprint()[:12]}… is not the one the model was "
                            f"trained with ({want[:12]}…)")
        toks[m] = tok
    return toks


def _clip_loader(clip_config: dict[str, Any], modalities: list[str], face_cache_dir: str):
    from vqmae.data.clips import ClipConfig, load_aligned_clip
    from vqmae.data.media import load_audio

    names = {f.name for f in dataclasses.fields(ClipConfig)}
    cc = ClipConfig(**{k: v for k, v in clip_config.items() if k in names and k != "detector"})
    if face_cache_dir:
        cc.face_cache_dir = face_cache_dir
    if modalities == ["audio"] and clip_config.get("modalities") == ["audio"]:
        def load_audio_only(path: str) -> tuple[np.ndarray, None]:
            wave = load_audio(path, sample_rate=cc.sample_rate, backend=cc.backend)
            if cc.peak_normalize and wave.size and np.abs(wave).max() > 0:
                wave = wave / np.abs(wave).max()
            return wave.astype(np.float32), None
        return load_audio_only

    def load(path: str) -> tuple[np.ndarray, np.ndarray]:
        clip = load_aligned_clip(path, cc)
        return clip.audio, clip.faces

    return load


@torch.no_grad()
def predict_files(models: list[tuple[Any, dict[str, Any]]], files: list[str], cfg: PredictConfig) -> dict[str, Any]:
    """Per-file predictions of the (averaged) ``models`` (see the module doc)."""
    from vqmae.evaluation.memory import MemoryTokenStore
    from vqmae.evaluation.protocol import Task

    info0 = models[0][1]
    t = info0.get("task") or {}
    if not t:
        raise UserError("the model records no task (was it saved by vqmae finetune?)")
    task = Task(t["kind"], list(t.get("classes", [])), list(t.get("target_names", [])))
    fps0 = {m: (r or {}).get("fingerprint") for m, r in (info0.get("tokenizers") or {}).items()}
    for _, info in models[1:]:
        fps = {m: (r or {}).get("fingerprint") for m, r in (info.get("tokenizers") or {}).items()}
        if fps != fps0 or (info.get("task") or {}) != t:
            raise UserError("the fold models do not share tokenizers and task; give one model folder")
    modalities = sorted({m for model, _ in models for m in model.modalities}, key=["audio", "visual"].index)
    toks = load_tokenizers(info0, modalities, {"audio": cfg.audio_tokenizer, "visual": cfg.visual_tokenizer})
    device = torch.device("cuda" if cfg.device == "auto" and torch.cuda.is_available()
                          else ("cpu" if cfg.device == "auto" else cfg.device))
    for model, _ in models:
        model.to(device).eval()
    for tok in toks.values():
        tok.to(device)
    load = _clip_loader(info0.get("clip_config") or {}, modalities, cfg.face_cache_dir)
    rows, tokens, errors = [], [], []
    for f in files:
        try:
            audio, faces = load(f)
            media = {"audio": torch.from_numpy(np.ascontiguousarray(audio)),
                     "visual": None if faces is None else torch.from_numpy(np.ascontiguousarray(faces))}
            codes = {}
            for m, tok in toks.items():
                x = tok.prepare(media[m].to(device))
                codes[m] = tok.encode(x).cpu().numpy().astype(np.int64)
            if "audio" in codes and "visual" in codes:  # aligned: 2 audio frames per video frame
                k = int(round(toks["audio"].frames_per_second / toks["visual"].frames_per_second))
                n = min(codes["visual"].shape[0], codes["audio"].shape[0] // k)
                codes = {"audio": codes["audio"][: n * k], "visual": codes["visual"][:n]}
            if min(c.shape[0] for c in codes.values()) < 1:
                raise ValueError("too short: no complete token frame")
            seconds = float(audio.shape[0]) / float(getattr(toks.get("audio"), "sample_rate", 16000)) \
                if audio is not None else 0.0
            rows.append({"id": str(len(rows)), "speaker": "", "path": f, "seconds": seconds})
            tokens.append(codes)
        except Exception as e:  # noqa: BLE001 - one bad file must not stop the others
            errors.append({"file": f, "error": f"{type(e).__name__}: {e}"})
            log.warning("predict: %s: %s", f, e)
    out: dict[str, Any] = {"model": cfg.model, "num_models": len(models), "task": task.kind,
                           "classes": task.classes, "predictions": [], "errors": errors}
    if not rows:
        return out
    prov = {m: {"token_shape": list(tok.token_shape), "codebook_size": int(tok.codebook_size),
                "frames_per_second": float(tok.frames_per_second), "fingerprint": tok.fingerprint()}
            for m, tok in toks.items()}
    store = MemoryTokenStore.from_arrays(rows, tokens, prov, task.classes, name="<predict>")
    probs = values = None
    windows = None
    from vqmae.data.token_dataset import TokenDataset

    for model, _ in models:
        ds = TokenDataset(store, None, model_window_seconds(model), "all", tuple(model.modalities),
                          stride_seconds=cfg.stride_seconds or None)
        pred = predict_clips(model, ds, task, cfg.batch_size)
        order = np.argsort(pred.clips)
        p = pred.probs[order] if pred.probs is not None else None
        v = pred.values[order] if pred.values is not None else None
        probs = p if probs is None else probs + p
        values = v if values is None else values + v
        windows = pred.windows[order]
    n = len(models)
    for i, r in enumerate(rows):
        item: dict[str, Any] = {"file": r["path"], "seconds": round(r["seconds"], 3), "windows": int(windows[i])}
        if probs is not None:
            p = probs[i] / n
            p = p / p.sum()
            item["label"] = task.classes[int(p.argmax())]
            item["probabilities"] = {c: float(x) for c, x in zip(task.classes, p)}
        if values is not None:
            for name, x in zip(task.target_names, values[i] / n):
                item[name] = float(x)
        out["predictions"].append(item)
    return out


def run(cfg: PredictConfig) -> int:
    if not cfg.model:
        raise UserError("--model is required")
    if not cfg.files:
        raise UserError("give one or more media files")
    missing = [f for f in cfg.files if not Path(f).exists()]
    models = _load_models(cfg.model)
    result = predict_files(models, [f for f in cfg.files if f not in missing], cfg)
    result["errors"] = [{"file": f, "error": "file not found"} for f in missing] + result["errors"]
    text = json.dumps(result, indent=2)
    if cfg.out:
        from vqmae.io import atomic_write_text

        atomic_write_text(cfg.out, text + "\n")
        log.info("predict: %d file(s) → %s", len(result["predictions"]), cfg.out)
    else:
        print(text)
    return 0 if result["predictions"] else 1


def split_files(argv: list[str]) -> tuple[list[str], list[str]]:
    """Separate plain media-file arguments from settings (``key=value``, ``--key value``)."""
    fields = {f.name: f for f in dataclasses.fields(PredictConfig)}
    settings, files = [], []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a.startswith("-"):
            settings.append(a)
            key = a.lstrip("-").split("=", 1)[0].replace("-", "_")
            if "=" not in a and (key in fields or key in ("config", "c")) and i + 1 < len(argv):
                settings.append(argv[i + 1])
                i += 1
        elif "=" in a and a.split("=", 1)[0].replace("-", "_") in fields and not Path(a).exists():
            settings.append(a)
        else:
            files.append(a)
        i += 1
    return settings, files


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    settings, files = split_files(argv)
    base = {"files": files} if files else None
    return stage_main("predict", __doc__ or "", PredictConfig, run, settings, base=base)


if __name__ == "__main__":
    raise SystemExit(main())

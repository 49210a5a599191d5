"""Predictions straight from media files: the job of ``vqmae predict``.

    models = load_models("OUT/finetune-av")                     # one model or every fold model
    result = predict_files(models, ["clip1.mp4"], PredictConfig())
    # {"model", "num_models", "task", "classes", "predictions": [...], "errors": [...]}

Each file goes through the clip path of every stage (:func:`vqmae.data.clips.load_clip` with the
clip settings recorded in the model, :func:`vqmae.data.clips.resolve_clip_config`) and its checks:
a ``truncated``, ``too_short`` or ``silent`` file is reported under ``errors`` with that ``kind``,
as ``prepare`` and ``tokenize`` report it. The clip is tokenized by the tokenizers recorded with
the model (fingerprints checked), cut into the test protocol's deterministic windows, and the
window outputs of every model averaged. Waveform fold models (the VSSL audio encoder fine-tuned by
``vqmae finetune --init <VSSL folder>``) read the file's audio instead of tokens, cut into windows of
their recorded length (:mod:`vqmae.vssl.predict`); the rest is the same.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from vqmae.config import ConfigError, setting
from vqmae.data.clips import MODALITIES, ClipConfig, load_clip, resolve_clip_config
from vqmae.data.encoding import (
    check_device,
    encode_clip,
    error_reason,
    load_tokenizer_folders,
    prepare_clip,
)
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
    batch_size: int = setting(32, ge=1, help="Windows per forward pass.")
    device: str = "auto"
    """auto | cpu | cuda."""
    stride_seconds: float = setting(0.0, ge=0, help="Step between windows; 0 = the window length "
                                    "(as in the test protocol).")


def load_models(path: str) -> list[tuple[Any, dict[str, Any]]]:
    """The classifier(s) of a model folder or experiment folder, with their info."""
    from vqmae.checkpoint import ModelFolderError
    from vqmae.evaluation.evaluate_job import model_folders
    from vqmae.vssl.harness import load_fold_model

    try:
        models = [load_fold_model(f) for f in model_folders(path)]
    except ModelFolderError as e:
        raise ConfigError(f"model: {e}") from None
    return models


def model_tokenizers(info: dict[str, Any], modalities: list[str], overrides: dict[str, str],
                     model_folder: str | None = None) -> dict[str, Any]:
    """The tokenizers the model was trained with (unless overridden: found from any directory by
    ``vqmae.hub.resolve_tokenizer_folder`` — inside ``model_folder``, the recorded hub id, the old
    paths —, fingerprints checked, folders swapped between modalities refused)."""
    from vqmae.checkpoint import ModelFolderError
    from vqmae.hub import resolve_tokenizer_folder

    recorded = info.get("tokenizers") or {}
    dirs = {}
    for m in modalities:
        if overrides.get(m):
            dirs[m] = overrides[m]
            continue
        if not recorded.get(m):
            raise ConfigError(f"{m}_tokenizer: the model records no {m} tokenizer folder; give --{m}-tokenizer DIR")
        try:
            dirs[m] = str(resolve_tokenizer_folder(model_folder, m, recorded[m]))
        except ModelFolderError as e:
            raise ConfigError(f"{m}_tokenizer: {e}") from None
    fps = {m: (recorded.get(m) or {}).get("fingerprint") for m in modalities}
    return load_tokenizer_folders(dirs, fps, what="the model was trained with")


def model_clip_config(info: dict[str, Any], tokenizers: dict[str, Any], face_cache_dir: str = "") -> ClipConfig:
    """How predict decodes a file: the clip settings recorded with the model (the token store's)."""
    return resolve_clip_config(info.get("clip_config") or {}, tokenizers, face_cache_dir=face_cache_dir)


def file_inputs(path: str, clip_cfg: ClipConfig, tokenizers: dict[str, Any],
                device: torch.device | None = None) -> tuple[dict[str, torch.Tensor], float]:
    """One media file -> ``({modality: tokenizer input}, seconds)``; raises a MediaError of the
    check's kind (``truncated``, ``too_short``, ``silent``, ...) for a file that fails."""
    modalities = ("audio",) if list(tokenizers) == ["audio"] else MODALITIES
    clip = load_clip(path, clip_cfg, modalities)
    return prepare_clip(clip, tokenizers, device), clip.duration


def file_tokens(path: str, clip_cfg: ClipConfig, tokenizers: dict[str, Any],
                device: torch.device) -> tuple[dict[str, np.ndarray], float]:
    """One media file -> (codes per modality, int64 ``(T_m, *S_m)``, trimmed to a common length
    for audio + video; seconds)."""
    x, seconds = file_inputs(path, clip_cfg, tokenizers, device)
    codes = {m: c.astype(np.int64) for m, c in encode_clip(tokenizers, x, device).items()}
    if "audio" in codes and "visual" in codes:  # aligned: 2 audio frames per video frame
        k = int(round(tokenizers["audio"].frames_per_second / tokenizers["visual"].frames_per_second))
        n = min(codes["visual"].shape[0], codes["audio"].shape[0] // k)
        codes = {"audio": codes["audio"][: n * k], "visual": codes["visual"][:n]}
    if min(c.shape[0] for c in codes.values()) < 1:
        raise ValueError("too short: no complete token frame")
    return codes, seconds


def _task(models: list[tuple[Any, dict[str, Any]]]):
    from vqmae.evaluation.task import Task

    t = models[0][1].get("task") or {}
    if not t:
        raise ConfigError("model: the model records no task (was it saved by vqmae finetune?)")
    fps0 = {m: (r or {}).get("fingerprint") for m, r in (models[0][1].get("tokenizers") or {}).items()}
    for _, info in models[1:]:
        fps = {m: (r or {}).get("fingerprint") for m, r in (info.get("tokenizers") or {}).items()}
        if fps != fps0 or (info.get("task") or {}) != t:
            raise ConfigError("model: the fold models do not share tokenizers and task; give one model folder")
    return Task(t["kind"], list(t.get("classes", [])), list(t.get("target_names", [])))


class TokenFiles:
    """The token side of ``vqmae predict`` (the waveform side, for VSSL fold models:
    :class:`vqmae.vssl.predict.WaveFiles`): ``read(path) -> (codes, seconds)``, then ``store(rows,
    codes)`` the files as a memory token store; ``loader`` None (the windows are tokens)."""

    loader = None

    def __init__(self, models: list[tuple[Any, dict[str, Any]]], cfg: PredictConfig, device: torch.device):
        modalities = sorted({m for model, _ in models for m in model.modalities}, key=list(MODALITIES).index)
        self.toks = model_tokenizers(models[0][1], modalities, {"audio": cfg.audio_tokenizer,
                                                                "visual": cfg.visual_tokenizer},
                                     getattr(models[0][0], "pretrained_path", None))
        for tok in self.toks.values():
            tok.to(device)
        self.clip_cfg = model_clip_config(models[0][1], self.toks, cfg.face_cache_dir)
        self.device = device

    def read(self, path: str) -> tuple[dict[str, np.ndarray], float]:
        return file_tokens(path, self.clip_cfg, self.toks, self.device)

    def store(self, rows: list[dict[str, Any]], tokens: list[dict[str, np.ndarray]], classes: list[str]):
        from vqmae.data.memory_store import MemoryTokenStore

        prov = {m: {"token_shape": list(tok.token_shape), "codebook_size": int(tok.codebook_size),
                    "frames_per_second": float(tok.frames_per_second), "fingerprint": tok.fingerprint()}
                for m, tok in self.toks.items()}
        return MemoryTokenStore.from_arrays(rows, tokens, prov, classes, name="<predict>")


@torch.no_grad()
def predict_files(models: list[tuple[Any, dict[str, Any]]], files: list[str], cfg: PredictConfig) -> dict[str, Any]:
    """Per-file predictions of the (averaged) ``models`` (see the module doc); a file that fails
    is listed under ``errors`` as ``{file, kind, error}``. Token models read the files through
    :class:`TokenFiles`, waveform (VSSL) fold models through :class:`vqmae.vssl.predict.WaveFiles`;
    the windows are the harness's (:func:`vqmae.evaluation.scoring.window_dataset`, mode ``all``)."""
    from vqmae.evaluation.scoring import model_window_seconds, predict_clips, window_dataset
    from vqmae.vssl.harness import reads_waves

    check_device(cfg.device)
    task = _task(models)
    device = torch.device("cuda" if cfg.device == "auto" and torch.cuda.is_available()
                          else ("cpu" if cfg.device == "auto" else cfg.device))
    for model, _ in models:
        model.to(device).eval()
    if any(reads_waves(m) for m, _ in models):
        from vqmae.vssl.predict import WaveFiles

        source: Any = WaveFiles(models)
    else:
        source = TokenFiles(models, cfg, device)
    rows, inputs, errors = [], [], []
    for f in files:
        try:
            x, seconds = source.read(f)
        except Exception as e:  # noqa: BLE001 - one bad file must not stop the others
            errors.append({"file": f, "kind": getattr(e, "kind", type(e).__name__), "error": error_reason(e)})
            log.warning("predict: %s: %s", f, e)
            continue
        rows.append({"id": str(len(rows)), "speaker": "", "path": f, "seconds": seconds})
        inputs.append(x)
    out: dict[str, Any] = {"model": cfg.model, "num_models": len(models), "task": task.kind,
                           "classes": task.classes, "predictions": [], "errors": errors}
    if not rows:
        return out
    store = source.store(rows, inputs, task.classes)
    probs = values = windows = None
    if any(getattr(m, "needs_speaker_reference", False) for m, _ in models):
        log.info("predict: speaker-normalised model: the %d file(s) of this call are taken as one "
                 "speaker's clips (their codes are the speaker's reference)%s", len(rows),
                 "; with fewer than 6 the reference is mostly the clips themselves" if len(rows) < 6 else "")
    for model, _ in models:
        ds = window_dataset(store, list(range(len(rows))), model_window_seconds(model), "all",
                            tuple(model.modalities), stride_seconds=cfg.stride_seconds or None, model=model,
                            audio_loader=source.loader)
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

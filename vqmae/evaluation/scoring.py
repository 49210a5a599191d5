"""Scoring a model the way the protocol does: every window of a clip (deterministic, ``"all"``
mode of :class:`TokenDataset`), outputs averaged per clip, then WAR/UAR/macro-F1 and/or CCC."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from vqmae.data.speaker_reference import (
    SpeakerReferenceDataset,
    needs_reference,
    reference_inputs,
    with_speaker_reference,
)
from vqmae.data.token_dataset import TokenDataset
from vqmae.data.token_store import TARGET_NAMES, TokenStore
from vqmae.evaluation.metrics import classification_metrics, confusion_matrix, regression_metrics
from vqmae.evaluation.task import Task


@dataclass
class ClipPredictions:
    """Per-clip predictions (window outputs averaged per clip).

    ``clips (N,)`` store clip indices; ``probs (N, C)`` class probabilities (None without classes);
    ``values (N, T)`` continuous outputs (None without targets); ``labels (N,)`` (-1 = none);
    ``targets (N, 2)`` (NaN = none); ``windows (N,)`` windows averaged per clip."""

    clips: np.ndarray
    probs: np.ndarray | None
    values: np.ndarray | None
    labels: np.ndarray
    targets: np.ndarray
    windows: np.ndarray

    @property
    def preds(self) -> np.ndarray:
        return self.probs.argmax(1) if self.probs is not None else np.full(len(self.clips), -1)


def model_device(model: nn.Module) -> torch.device:
    p = next(iter(model.parameters()), None)
    return p.device if p is not None else torch.device("cpu")


@torch.no_grad()
def predict_clips(model: nn.Module, dataset: TokenDataset, task: Task, batch_size: int = 64,
                  modalities: Sequence[str] | None = None, num_workers: int = 0) -> ClipPredictions:
    """Run ``model`` on every window of ``dataset`` and average per clip (``dataset.item_clip``).

    ``modalities``: inputs given to the model (default: the dataset's); fewer than the model's
    evaluates it with a modality missing."""
    was_training = model.training
    model.eval()
    device = model_device(model)
    mods = tuple(modalities or dataset.modalities)
    if needs_reference(model) and not isinstance(dataset, SpeakerReferenceDataset):
        dataset = with_speaker_reference(dataset, model)
    C, T = task.num_classes, task.num_targets
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    order: dict[int, int] = {}
    rows_clip, rows_prob, rows_val, rows_label, rows_target = [], [], [], [], []
    for batch in loader:
        out = model(**{m: batch[m].to(device, non_blocking=True) for m in mods},
                    **reference_inputs(batch, mods, device)).float().cpu()
        if out.shape[1] != C + T:
            raise ValueError(f"the model gives {out.shape[1]} outputs; the task needs {C} classes + {T} targets")
        rows_clip.append(batch["clip"].numpy())
        rows_label.append(batch["label"].numpy())
        rows_target.append(batch["targets"].numpy())
        if C:
            rows_prob.append(F.softmax(out[:, :C], dim=1).numpy())
        if T:
            rows_val.append(out[:, C:].numpy())
    model.train(was_training)
    if not rows_clip:
        empty = np.zeros(0, dtype=np.int64)
        return ClipPredictions(empty, np.zeros((0, C)) if C else None, np.zeros((0, T)) if T else None,
                               empty, np.zeros((0, len(TARGET_NAMES)), np.float32), empty)
    clip = np.concatenate(rows_clip)
    for c in clip.tolist():
        order.setdefault(c, len(order))
    pos = np.array([order[c] for c in clip.tolist()])
    n = len(order)
    counts = np.bincount(pos, minlength=n).astype(np.float64)

    def mean(rows: list[np.ndarray]) -> np.ndarray:
        x = np.concatenate(rows).astype(np.float64)
        acc = np.zeros((n, x.shape[1]))
        np.add.at(acc, pos, x)
        return acc / counts[:, None]

    first = np.zeros(n, dtype=np.int64)
    first[pos[::-1]] = np.arange(len(pos))[::-1]
    labels = np.concatenate(rows_label)[first]
    targets = np.concatenate(rows_target)[first]
    return ClipPredictions(np.array(list(order), dtype=np.int64), mean(rows_prob) if C else None,
                           mean(rows_val) if T else None, labels.astype(np.int64), targets, counts.astype(np.int64))


def score(pred: ClipPredictions, task: Task) -> tuple[dict[str, float], np.ndarray | None]:
    """Metrics of per-clip predictions: WAR/UAR/macro-F1 (+ ``nll``, ``selection``) and/or CCC.
    Returns ``(metrics, confusion (C, C) or None)``."""
    metrics: dict[str, float] = {"clips": float(len(pred.clips))}
    cm = None
    if task.num_classes and pred.probs is not None:
        keep = pred.labels >= 0
        y, p = pred.labels[keep], pred.preds[keep]
        metrics.update(classification_metrics(y, p, task.num_classes))
        probs = np.clip(pred.probs[keep], 1e-12, 1.0)
        nll = float(-np.log(probs[np.arange(len(y)), y]).mean()) if len(y) else float("nan")
        metrics["nll"] = nll
        # UAR; among equal UARs the lower cross-entropy wins (1e-6 · nll never outweighs one clip)
        metrics["selection"] = metrics["uar"] - 1e-6 * min(nll, 100.0)
        cm = confusion_matrix(y, p, task.num_classes)
    if task.num_targets and pred.values is not None:
        metrics.update(regression_metrics(pred.targets[:, :task.num_targets], pred.values, task.target_names))
    return metrics, cm


def window_dataset(store: TokenStore, clips: Sequence[int], window_seconds: float, mode: str,
                   modalities: Sequence[str], *, seed: int = 0, stride_seconds: float | None = None,
                   model: nn.Module | None = None, audio_loader: Callable[[int], np.ndarray] | None = None
                   ) -> Dataset:
    """The harness's windows of ``clips`` for a model's inputs: token windows
    (:class:`TokenDataset`), or for a model that reads ``wave`` (the VSSL audio encoder) waveform
    windows (:class:`vqmae.vssl.wave_dataset.WaveDataset`, at the model's sample rate; its audio
    from ``audio_loader`` when given)."""
    if tuple(modalities) == ("wave",):
        from vqmae.vssl.wave_dataset import WaveDataset

        enc = getattr(getattr(model, "config", None), "encoder", None)
        return WaveDataset(store, clips, window_seconds, mode, seed,  # type: ignore[arg-type]
                           stride_seconds=stride_seconds, sample_rate=getattr(enc, "sample_rate", 16000),
                           loader=audio_loader)
    return TokenDataset(store, clips, window_seconds, mode, tuple(modalities), seed=seed,  # type: ignore[arg-type]
                        stride_seconds=stride_seconds)


def model_window_seconds(model: nn.Module, requested: float = 0.0) -> float:
    """The window the model expects (its config's or its encoder config's), or ``requested``."""
    if requested > 0:
        return requested
    own = getattr(getattr(model, "config", None), "window_seconds", None)
    if own:
        return float(own)
    cfg = getattr(getattr(model, "config", None), "encoder", None)
    if cfg is not None and hasattr(cfg, "window_seconds"):
        return float(cfg.window_seconds)
    return 2.0


def prediction_rows(store: TokenStore, pred: ClipPredictions, task: Task) -> list[dict[str, Any]]:
    rows = []
    for k, i in enumerate(pred.clips.tolist()):
        c = store.clips[i]
        row: dict[str, Any] = {"id": c.id, "speaker": c.speaker, "windows": int(pred.windows[k])}
        if pred.probs is not None:
            row.update(label=int(pred.labels[k]), pred=int(pred.preds[k]),
                       probs=[round(float(x), 6) for x in pred.probs[k]])
        if pred.values is not None:
            row.update(targets=[None if not np.isfinite(x) else float(x) for x in pred.targets[k]],
                       values=[float(x) for x in pred.values[k]])
        rows.append(row)
    return rows


def evaluate_model(model: nn.Module, store: TokenStore, clips: Sequence[int], task: Task,
                   window_seconds: float = 0.0, stride_seconds: float = 0.0, batch_size: int = 64,
                   modalities: Sequence[str] | None = None, audio_loader: Callable[[int], np.ndarray] | None = None
                   ) -> tuple[dict[str, float], np.ndarray | None, ClipPredictions]:
    """Score ``model`` on ``clips`` of ``store`` with deterministic windows (all windows of each clip,
    averaged). ``modalities`` below the model's evaluates it with a modality missing;
    ``audio_loader`` (clip index -> waveform) replaces the clean audio of a waveform model."""
    mods = tuple(modalities or model.modalities)
    ds = window_dataset(store, list(clips), model_window_seconds(model, window_seconds), "all", mods,
                        stride_seconds=stride_seconds or None, model=model, audio_loader=audio_loader)
    pred = predict_clips(model, ds, task, batch_size, modalities=mods)
    metrics, cm = score(pred, task)
    return metrics, cm, pred


def format_metrics(metrics: dict[str, float]) -> str:
    """``"war 0.5, uar 0.4, ..."`` for logs; the ``selection`` score (UAR minus a tie-break of
    1e-6 · cross-entropy) is left out, since it only orders epochs."""
    return ", ".join(f"{k} {v:.4g}" for k, v in metrics.items() if k != "selection")


def printable(name: str, value: float) -> float:
    """A metric as logs show it: the ``selection`` score (UAR minus a 1e-6 · cross-entropy
    tie-break) reads 0 for a zero UAR, not -1.6e-06 (as ``vqmae.training`` shows it)."""
    from vqmae.training import shown_metric

    return shown_metric(name, value)

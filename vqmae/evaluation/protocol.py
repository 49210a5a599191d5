"""The speaker-independent evaluation protocol: per fold, train on the training speakers, select
the epoch on the validation speakers only, test once on the test speakers.

What makes it trustworthy (REFERENCE.md "Fine-tuning" lists the published protocol's flaws):

* folds come from ``vqmae.data.folds`` (seeded; every speaker tested exactly once) and
  :func:`fold_clips` refuses a fold whose splits share a speaker;
* the epoch is chosen by ``vqmae.training.fit`` from the *validation* metric (``eval_fn`` +
  ``select_metric``); the test split is never looked at before the best epoch is restored;
* test windows are deterministic (``TokenDataset`` mode ``"all"``) and a clip's prediction is the
  average over all of its windows (class probabilities, or continuous outputs);
* results are per fold plus mean ± std over folds.

The harness is model-agnostic. A model is any ``nn.Module`` with

* ``modalities``: the inputs it takes (``("audio",)``, ``("visual",)`` or both);
* ``forward(**{modality: tokens (B, T_m, *token_shape)}) -> (B, num_classes + num_targets)``
  (class logits first, then continuous targets), working with any subset of its modalities;
* for the feature baseline: ``forward_features(**inputs)`` and ``forward_head(f, pre_logits=True)``;
* optionally ``freeze_encoder()`` (linear probe) and ``save_pretrained(folder)``.

:class:`vqmae.mae.classifier.EmotionClassifier` is one; another self-supervised encoder only
needs a wrapper with this interface.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from vqmae.data.token_dataset import TokenDataset
from vqmae.data.token_store import TARGET_NAMES, TokenStore
from vqmae.evaluation.losses import CCCLoss, make_class_loss
from vqmae.evaluation.metrics import (
    ccc,
    classification_metrics,
    confusion_matrix,
    regression_metrics,
)
from vqmae.evaluation.results import summarize
from vqmae.io import read_json, write_json, write_jsonl
from vqmae.runs import Run, log
from vqmae.training import StepInfo, TrainConfig, barrier, fit, is_main_process, seed_everything


def finetune_train_config(**overrides: Any) -> TrainConfig:
    """Paper fine-tuning settings: AdamW lr 1e-4, batch 8, weight decay 0.05; plus a short
    warm-up and cosine decay; no TensorBoard / progress bar (many small runs)."""
    base = dict(epochs=20, batch_size=8, lr=1e-4, weight_decay=0.05, betas=(0.9, 0.999),
                warmup_epochs=1.0, schedule="cosine", grad_clip=1.0, log_every=50,
                keep_checkpoints=1, tensorboard=False, progress=False)
    base.update(overrides)
    return TrainConfig(**base)


@dataclass
class ProtocolConfig:
    """How each fold is trained and scored (shared by finetune, evaluate and the baselines)."""

    task: Literal["auto", "classify", "regress", "both"] = "auto"
    """classify: class labels (emotion, word); regress: arousal/valence (CCC); both: one model
    with both outputs; auto: what the store's labels allow (labels and targets -> both)."""
    head: Literal["attention", "mean", "query2emo"] = "attention"
    loss: Literal["asl", "ce"] = "asl"
    """asl: single-label asymmetric loss (paper; γ−, γ+ below); ce: cross-entropy."""
    label_smoothing: float = 0.1
    gamma_neg: float = 4.0
    gamma_pos: float = 0.0
    affect_weight: float = 1.0
    """Weight of the CCC loss next to the class loss (task both)."""
    modality_dropout: float = 0.0
    """Probability that a training batch of a two-modality model sees only one modality
    (teaches the head's stand-in for a missing modality)."""
    window_seconds: float = 0.0
    """Window length; 0 = the model's (2 s for the paper presets)."""
    eval_stride_seconds: float = 0.0
    """Step between evaluation windows; 0 = the window length (non-overlapping)."""
    eval_batch_size: int = 64
    select_metric: str = "auto"
    """Validation metric that picks the epoch; auto = UAR with ties broken by the lower
    validation cross-entropy (classify/both), mean CCC (regress)."""
    min_train_batches: int = 4
    """Repeat a small training set (label-efficiency runs) to at least this many batches per epoch."""
    eval_missing_modality: bool = True
    """Also test two-modality models with only audio and only visual given."""
    keep_checkpoints: bool = False
    """Keep the resumable training state of each fold (the fine-tuned model is always saved)."""
    train: TrainConfig = field(default_factory=finetune_train_config)


# ------------------------------------------------------------------------------- task


@dataclass
class Task:
    """What the model predicts: ``num_classes`` class logits, then ``num_targets`` continuous values."""

    kind: str
    classes: list[str]
    target_names: list[str]

    @property
    def num_classes(self) -> int:
        return len(self.classes) if self.kind in ("classify", "both") else 0

    @property
    def num_targets(self) -> int:
        return len(self.target_names) if self.kind in ("regress", "both") else 0

    @property
    def headline(self) -> str:
        """The metric the results lead with."""
        return "ccc" if self.kind == "regress" else "uar"

    def selection_key(self, requested: str = "auto") -> str:
        if requested != "auto":
            return requested
        return "ccc" if self.kind == "regress" else "selection"

    def uses(self, clip: Any) -> bool:
        """Whether a clip (``StoredClip``) has what this task trains on."""
        has_label = clip.label is not None and clip.label >= 0
        has_target = any(_finite(clip.targets.get(t)) for t in self.target_names)
        return self._usable(has_label, has_target)

    def usable(self, store: TokenStore) -> np.ndarray:
        """bool ``(num_clips,)``: the store's clips that have what this task trains on."""
        has_label = store.labels >= 0
        has_target = np.isfinite(store.targets[:, :len(self.target_names)]).any(axis=1) \
            if self.target_names else np.zeros(len(store), dtype=bool)
        return self._usable(has_label, has_target)

    def _usable(self, has_label: Any, has_target: Any) -> Any:
        if self.kind == "classify":
            return has_label
        if self.kind == "regress":
            return has_target
        return has_label | has_target


def _finite(v: Any) -> bool:
    try:
        return v is not None and math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


def infer_task(store: TokenStore, requested: str = "auto") -> Task:
    """The task a store supports (``requested`` checked against its labels)."""
    classes = list(store.classes)
    labelled = bool((store.labels >= 0).any())
    targets = [t for k, t in enumerate(TARGET_NAMES) if np.isfinite(store.targets[:, k]).any()]
    if labelled and not classes:
        classes = [str(i) for i in range(int(store.labels.max()) + 1)]
    if requested == "auto":
        kind = "both" if labelled and targets else "classify" if labelled else "regress" if targets else ""
        if not kind:
            raise ValueError(f"{store.root}: no clip has a class label or arousal/valence targets; "
                             "nothing to fine-tune on")
    else:
        kind = requested
        if kind in ("classify", "both") and not labelled:
            raise ValueError(f"{store.root}: task '{kind}' needs class labels, and no clip has one")
        if kind in ("regress", "both") and not targets:
            raise ValueError(f"{store.root}: task '{kind}' needs arousal/valence targets, and no clip has them")
    return Task(kind, classes if kind != "regress" else [], list(TARGET_NAMES) if kind != "classify" else [])


# ---------------------------------------------------------------------------- splits


def fold_clips(store: TokenStore, fold: Any, task: Task) -> dict[str, list[int]]:
    """Store clip indices of each split of ``fold`` (``.train``, ``.val``, ``.test`` speaker lists)
    that have what ``task`` needs. Raises ``ValueError`` if a speaker is in two splits."""
    splits = {s: set(map(str, getattr(fold, s))) for s in ("train", "val", "test")}
    for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
        shared = splits[a] & splits[b]
        if shared:
            raise ValueError(f"fold {fold.index}: speakers {sorted(shared)[:5]} are in both {a} and {b}")
    usable = task.usable(store)
    out = {s: [i for i in store.clip_indices(spk).tolist() if usable[i]] for s, spk in splits.items()}
    if not out["train"]:
        raise ValueError(f"fold {fold.index}: no usable training clip in {store.root} for the "
                         f"training speakers {sorted(splits['train'])[:5]}")
    if not out["test"]:
        raise ValueError(f"fold {fold.index}: no usable test clip for the test speakers "
                         f"{sorted(splits['test'])[:5]}")
    return out


def subsample(store: TokenStore, clips: Sequence[int], fraction: float, seed: int, task: Task) -> list[int]:
    """A seeded, class-stratified ``fraction`` of ``clips`` (at least one clip per class present).
    Regression-only tasks draw uniformly. ``fraction >= 1`` returns ``clips``."""
    clips = list(clips)
    if fraction >= 1.0:
        return clips
    if fraction <= 0:
        raise ValueError(f"label fraction must be in (0, 1], got {fraction}")
    rng = np.random.default_rng([seed, int(round(fraction * 1e6))])
    if task.num_classes:
        by: dict[int, list[int]] = {}
        for i in clips:
            by.setdefault(int(store.labels[i]), []).append(i)
        chosen = []
        for _, members in sorted(by.items()):
            k = max(1, int(round(fraction * len(members))))
            chosen += rng.choice(members, size=min(k, len(members)), replace=False).tolist()
        return sorted(chosen)
    k = max(2, int(round(fraction * len(clips))))
    return sorted(rng.choice(clips, size=min(k, len(clips)), replace=False).tolist())


class RepeatDataset(Dataset):
    """``dataset`` repeated ``times`` (item ``j`` = ``dataset[j % n]``); passes ``set_epoch`` on."""

    def __init__(self, dataset: Dataset, times: int):
        self.dataset, self.times = dataset, max(1, int(times))
        self.n = len(dataset)  # type: ignore[arg-type]

    def __len__(self) -> int:
        return self.n * self.times

    def __getitem__(self, j: int) -> Any:
        return self.dataset[j % self.n]

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)


# -------------------------------------------------------------------------- prediction


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
    C, T = task.num_classes, task.num_targets
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    order: dict[int, int] = {}
    rows_clip, rows_prob, rows_val, rows_label, rows_target = [], [], [], [], []
    for batch in loader:
        out = model(**{m: batch[m].to(device, non_blocking=True) for m in mods}).float().cpu()
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


# ----------------------------------------------------------------------------- training


def make_loss_fn(task: Task, cfg: ProtocolConfig, modalities: Sequence[str]):
    """``loss_fn(model, batch, info) -> (loss, metrics)`` for ``vqmae.training.fit``."""
    class_loss = make_class_loss(cfg.loss, cfg.label_smoothing, cfg.gamma_neg, cfg.gamma_pos) \
        if task.num_classes else None
    ccc_loss = CCCLoss() if task.num_targets else None
    C = task.num_classes
    mods = list(modalities)

    def loss_fn(model: nn.Module, batch: dict[str, torch.Tensor], info: StepInfo):
        given = mods
        if len(mods) > 1 and cfg.modality_dropout > 0:
            r = torch.rand(2, generator=info.generator)
            if float(r[0]) < cfg.modality_dropout:
                given = [mods[int(float(r[1]) * len(mods)) % len(mods)]]
        out = model(**{m: batch[m] for m in given}).float()
        parts: dict[str, float] = {}
        loss = out.new_zeros(())
        if class_loss is not None:
            lc = class_loss(out[:, :C], batch["label"])
            loss = loss + lc
            parts["class_loss"] = float(lc.detach())
        if ccc_loss is not None:
            lr = ccc_loss(out[:, C:], batch["targets"][:, :task.num_targets].float())
            loss = loss + (cfg.affect_weight if class_loss is not None else 1.0) * lr
            parts["ccc_loss"] = float(lr.detach())
        return loss, parts

    return loss_fn


def model_window_seconds(model: nn.Module, requested: float = 0.0) -> float:
    """The window the model expects (its encoder config), or ``requested``."""
    if requested > 0:
        return requested
    cfg = getattr(getattr(model, "config", None), "encoder", None)
    if cfg is not None and hasattr(cfg, "window_seconds"):
        return float(cfg.window_seconds)
    return 2.0


def _datasets(store: TokenStore, ids: dict[str, list[int]], modalities: Sequence[str], window: float,
              cfg: ProtocolConfig) -> dict[str, TokenDataset]:
    stride = cfg.eval_stride_seconds or None
    mods = tuple(modalities)
    return {
        "train": TokenDataset(store, ids["train"], window, "random", mods, seed=cfg.train.seed),
        "val": TokenDataset(store, ids["val"], window, "all", mods, stride_seconds=stride),
        "test": TokenDataset(store, ids["test"], window, "all", mods, stride_seconds=stride),
    }


def _speakers(store: TokenStore, idx: Sequence[int]) -> list[str]:
    return sorted({str(store.speakers[i]) for i in idx})


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


def train_fold(model: nn.Module, store: TokenStore, fold: Any, task: Task, cfg: ProtocolConfig,
               out_dir: str | Path, fraction: float = 1.0, freeze_encoder: bool = False
               ) -> tuple[nn.Module, dict[str, Any]]:
    """Fine-tune ``model`` on one fold and test it once. Writes ``out_dir``: ``train.log``,
    ``metrics.jsonl``, ``predictions.jsonl``. Returns ``(model with the best epoch, fold result)``."""
    t0 = time.perf_counter()
    out_dir = Path(out_dir)
    ids = fold_clips(store, fold, task)
    ids["train"] = subsample(store, ids["train"], fraction, cfg.train.seed + fold.index, task)
    mods = tuple(model.modalities)
    window = model_window_seconds(model, cfg.window_seconds)
    ds = _datasets(store, ids, mods, window, cfg)
    train_ds: Dataset = ds["train"]
    min_items = cfg.min_train_batches * cfg.train.batch_size * cfg.train.grad_accum
    if len(train_ds) < min_items:  # type: ignore[arg-type]
        train_ds = RepeatDataset(train_ds, -(-min_items // len(train_ds)))  # type: ignore[arg-type]
    if freeze_encoder:
        model.freeze_encoder()  # type: ignore[operator]
    select = task.selection_key(cfg.select_metric)
    has_val = bool(ids["val"])

    def eval_fn(m: nn.Module, epoch: int) -> dict[str, float]:
        metrics, _ = score(predict_clips(m, ds["val"], task, cfg.eval_batch_size, num_workers=0), task)
        return metrics

    # data parallel: a batch without one modality (modality dropout) leaves its encoder parts, and
    # a complete one the head's stand-ins for absent modalities, without gradients
    tcfg = dataclasses.replace(cfg.train, select_metric=select if has_val else "", select_mode="max",
                               restore_best=True, find_unused_parameters=True)
    run = Run(out_dir, config=None, is_main=is_main_process(), tensorboard=tcfg.tensorboard)
    try:
        if not has_val:
            run.info("fold %d has no validation speakers: the last epoch is kept (no model selection)",
                     fold.index)
        res = fit(model, train_ds, make_loss_fn(task, cfg, mods), tcfg, run,
                  eval_fn=eval_fn if has_val else None)
        model = res.model
        t_train = time.perf_counter() - t0
        # ---- the test split, scored once with the selected model
        pred = predict_clips(model, ds["test"], task, cfg.eval_batch_size)
        test, cm = score(pred, task)
        if is_main_process():
            write_jsonl(out_dir / "predictions.jsonl", prediction_rows(store, pred, task))
        missing = {}
        if cfg.eval_missing_modality and len(mods) > 1:
            for m in mods:
                missing[m] = score(predict_clips(model, ds["test"], task, cfg.eval_batch_size,
                                                 modalities=(m,)), task)[0]
        run.info("fold %d: best epoch %s (val %s = %.4g), test %s", fold.index, res.best_epoch, select,
                 res.best_metrics.get(select, float("nan")),
                 ", ".join(f"{k} {v:.4g}" for k, v in test.items() if k != "selection"))
    finally:
        run.close()
        if not cfg.keep_checkpoints:
            shutil.rmtree(out_dir / "checkpoints", ignore_errors=True)
            shutil.rmtree(out_dir / "best", ignore_errors=True)
    history = [{k: v for k, v in h.items() if k not in ("split", "step")} for h in res.history]
    result = {
        "fold": fold.index,
        "train_speakers": _speakers(store, ids["train"]), "val_speakers": _speakers(store, ids["val"]),
        "test_speakers": _speakers(store, ids["test"]),
        "n_train": len(ids["train"]), "n_val": len(ids["val"]), "n_test": len(ids["test"]),
        "label_fraction": fraction,
        "selected_by": f"val {select}" if has_val else "last epoch (no validation speakers)",
        "best_epoch": res.best_epoch if has_val else res.epochs_done - 1,
        "epochs": res.epochs_done, "steps": res.steps,
        "val": {k: v for k, v in res.best_metrics.items() if k not in ("step", "epoch", "split")},
        "test": test,
        "confusion": cm.tolist() if cm is not None else None,
        "test_missing_modality": missing,
        "history": history,
        "seconds": time.perf_counter() - t0, "train_seconds": t_train,
    }
    return model, result


# -------------------------------------------------------------------------- feature probe


@torch.no_grad()
def clip_features(model: nn.Module, dataset: TokenDataset, batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Frozen features per clip: ``forward_head(forward_features(x), pre_logits=True)`` of every
    window, averaged per clip. Returns ``(clip indices (N,), features (N, F))``."""
    model.eval()
    device = model_device(model)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False)
    feats, clips = [], []
    for batch in loader:
        f = model.forward_head(model.forward_features(**{m: batch[m].to(device) for m in dataset.modalities}),
                               pre_logits=True)
        feats.append(f.float().cpu().numpy())
        clips.append(batch["clip"].numpy())
    x, c = np.concatenate(feats), np.concatenate(clips)
    uniq, inv = np.unique(c, return_inverse=True)
    acc = np.zeros((len(uniq), x.shape[1]))
    np.add.at(acc, inv, x)
    return uniq, acc / np.bincount(inv)[:, None]


LOGREG_C = (0.001, 0.01, 0.1, 1.0)
RIDGE_ALPHA = (0.1, 1.0, 10.0, 100.0, 1000.0)


def logreg_fold(model: nn.Module, store: TokenStore, fold: Any, task: Task, cfg: ProtocolConfig,
                out_dir: str | Path, fraction: float = 1.0) -> dict[str, Any]:
    """Linear-probe baseline: scikit-learn logistic regression (ridge for continuous targets) on
    frozen clip features (windows pooled by ``model``'s head, averaged per clip). The
    regularisation strength is chosen on the validation speakers; the test split is scored once."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.preprocessing import StandardScaler

    t0 = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ids = fold_clips(store, fold, task)
    ids["train"] = subsample(store, ids["train"], fraction, cfg.train.seed + fold.index, task)
    mods = tuple(model.modalities)
    window = model_window_seconds(model, cfg.window_seconds)
    stride = cfg.eval_stride_seconds or None
    X, order = {}, {}
    for s in ("train", "val", "test"):
        if ids[s]:
            c, x = clip_features(model, TokenDataset(store, ids[s], window, "all", mods, stride_seconds=stride),
                                 cfg.eval_batch_size)
            order[s], X[s] = c, x
    scaler = StandardScaler().fit(X["train"])
    Z = {s: scaler.transform(x) for s, x in X.items()}
    labels = np.array([-1 if c.label is None else c.label for c in store.clips])
    targets = np.array([[float(c.targets.get(t, np.nan)) if _finite(c.targets.get(t)) else np.nan
                         for t in TARGET_NAMES] for c in store.clips])
    C, T = task.num_classes, task.num_targets
    select = task.selection_key(cfg.select_metric)
    splits = [s for s in ("val", "test") if s in Z]
    out: dict[str, dict[str, np.ndarray]] = {s: {} for s in splits}
    chosen: dict[str, Any] = {}
    val_metrics: dict[str, float] = {}
    if C:  # logistic regression: C picked by the validation UAR (ties: lower cross-entropy)
        y = labels[order["train"]]
        keep = y >= 0
        best = None
        for c in LOGREG_C:
            with warnings.catch_warnings():  # weakly regularised fits of separable data stop early
                warnings.simplefilter("ignore", ConvergenceWarning)
                clf = LogisticRegression(C=c, max_iter=300).fit(Z["train"][keep], y[keep])
            probs = {}
            for s in splits:
                probs[s] = np.zeros((len(order[s]), C))
                probs[s][:, clf.classes_] = clf.predict_proba(Z[s])
            if "val" in Z:
                m, _ = score(ClipPredictions(order["val"], probs["val"], None, labels[order["val"]],
                                             targets[order["val"]], np.ones(len(order["val"]), np.int64)),
                             Task("classify", task.classes, []))
                value = m["selection" if select in ("selection", "ccc") else select]
            else:
                value = -abs(c - 1.0)  # no validation speakers: C = 1
            if best is None or value > best[0]:
                best = (value, c, probs)
        chosen["C"] = best[1]
        for s in splits:
            out[s]["probs"] = best[2][s]
    if T:  # ridge per target: alpha picked by the validation CCC of that target
        for s in splits:
            out[s]["values"] = np.zeros((len(order[s]), T))
        for d in range(T):
            t = targets[order["train"], d]
            keep = np.isfinite(t)
            best = None
            for a in RIDGE_ALPHA:
                reg = Ridge(alpha=a).fit(Z["train"][keep], t[keep]) if keep.sum() > 1 else None
                vals = {s: reg.predict(Z[s]) if reg is not None else np.zeros(len(order[s])) for s in splits}
                value = ccc(targets[order["val"], d], vals["val"]) if "val" in Z else -abs(np.log10(a))
                value = value if np.isfinite(value) else -np.inf
                if best is None or value > best[0]:
                    best = (value, a, vals)
            chosen[f"alpha_{task.target_names[d]}"] = best[1]
            for s in splits:
                out[s]["values"][:, d] = best[2][s]

    def predictions(split: str) -> ClipPredictions:
        idx = order[split]
        return ClipPredictions(idx, out[split].get("probs"), out[split].get("values"), labels[idx],
                               targets[idx], np.ones(len(idx), dtype=np.int64))

    grid = {"C": list(LOGREG_C) if C else [], "alpha": list(RIDGE_ALPHA) if T else []}
    if "val" in Z:
        val_metrics = score(predictions("val"), task)[0]
    pred = predictions("test")
    test, cm = score(pred, task)
    if is_main_process():
        write_jsonl(out_dir / "predictions.jsonl", prediction_rows(store, pred, task))
    log.info("fold %d (logistic regression, %s): test %s", fold.index, chosen,
             ", ".join(f"{k} {v:.4g}" for k, v in test.items() if k != "selection"))
    return {
        "fold": fold.index,
        "train_speakers": _speakers(store, ids["train"]), "val_speakers": _speakers(store, ids["val"]),
        "test_speakers": _speakers(store, ids["test"]),
        "n_train": len(ids["train"]), "n_val": len(ids["val"]), "n_test": len(ids["test"]),
        "label_fraction": fraction, "selected_by": f"validation speakers, over {grid}",
        "best_epoch": None, "chosen": chosen, "val": val_metrics, "test": test,
        "confusion": cm.tolist() if cm is not None else None, "seconds": time.perf_counter() - t0,
    }


# ---------------------------------------------------------------------------- experiments


@dataclass
class Experiment:
    """One row of the results table: how to build a fresh model per fold, and how to train it.

    ``kind``: ``"train"`` (fine-tune all weights), ``"probe"`` (frozen encoder, trained head) or
    ``"logreg"`` (scikit-learn on frozen pooled features)."""

    name: str
    build: Callable[[], nn.Module]
    kind: Literal["train", "probe", "logreg"] = "train"
    description: str = ""
    modalities: tuple[str, ...] = ()
    fraction: float = 1.0
    info: dict[str, Any] = field(default_factory=dict)
    """Written into each saved fold model's config.json (tokenizers, classes, init, ...)."""
    key: dict[str, Any] = field(default_factory=dict)
    """Settings that identify the experiment: a finished fold is reused only if they match."""


def run_experiment(exp: Experiment, store: TokenStore, folds: Sequence[Any], task: Task,
                   cfg: ProtocolConfig, out_dir: str | Path, save_models: bool = True,
                   resume: bool = True, on_fold: Callable[[Experiment, Any, nn.Module | None], None] | None = None
                   ) -> dict[str, Any]:
    """Every fold of one experiment → ``{"folds": [...], "summary": {metric: {mean, std}}, ...}``.

    A fold whose ``fold_result.json`` exists with the same ``exp.key`` is not recomputed (resume).
    ``on_fold(exp, fold, model)`` is called after each fold with the trained model (None if reused
    or logreg) — e.g. to run extra evaluations while the model is in memory."""
    out_dir = Path(out_dir)
    results = []
    for fold in folds:
        fold_dir = out_dir / f"fold_{fold.index}"
        done = fold_dir / "fold_result.json"
        barrier()  # data parallel: every rank sees the same finished folds
        key = {**exp.key, "fold": {"train": list(fold.train), "val": list(fold.val), "test": list(fold.test)}}
        if resume and done.is_file():
            prev = read_json(done)
            if prev.get("key") == json.loads(json.dumps(key)):
                log.info("%s fold %d: done before, reusing %s", exp.name, fold.index, done)
                results.append(prev["result"])
                if on_fold is not None:
                    on_fold(exp, fold, None)
                continue
        log.info("%s: fold %d/%d (%d train / %d val / %d test speakers)", exp.name, fold.index + 1,
                 len(folds), len(fold.train), len(fold.val), len(fold.test))
        seed_everything(cfg.train.seed * 1000 + fold.index)  # the same initial head for every run of a fold
        model = exp.build()
        if exp.kind == "logreg":
            result = logreg_fold(model, store, fold, task, cfg, fold_dir, exp.fraction)
            model = None
        else:
            model, result = train_fold(model, store, fold, task, cfg, fold_dir, exp.fraction,
                                       freeze_encoder=exp.kind == "probe")
            if save_models and hasattr(model, "save_pretrained") and is_main_process():
                if hasattr(model, "info"):
                    model.info = {**exp.info, "experiment": exp.name, "fold": {
                        "index": fold.index, "train": list(fold.train), "val": list(fold.val),
                        "test": list(fold.test)}, "best_epoch": result["best_epoch"],
                        "label_fraction": exp.fraction}
                model.save_pretrained(fold_dir / "model")
        if is_main_process():  # every rank computed the same result; one writes it
            write_json(done, {"key": key, "result": result})
        results.append(result)
        if on_fold is not None:
            on_fold(exp, fold, model)
    cm = None
    for r in results:
        if r.get("confusion") is not None:
            cm = np.asarray(r["confusion"]) if cm is None else cm + np.asarray(r["confusion"])
    return {
        "name": exp.name, "kind": exp.kind, "description": exp.description,
        "modalities": list(exp.modalities), "label_fraction": exp.fraction,
        "folds": results, "summary": summarize(r["test"] for r in results),
        "confusion": cm.tolist() if cm is not None else None,
    }


def evaluate_model(model: nn.Module, store: TokenStore, clips: Sequence[int], task: Task,
                   window_seconds: float = 0.0, stride_seconds: float = 0.0, batch_size: int = 64,
                   modalities: Sequence[str] | None = None
                   ) -> tuple[dict[str, float], np.ndarray | None, ClipPredictions]:
    """Score ``model`` on ``clips`` of ``store`` with deterministic windows (all windows of each clip,
    averaged). ``modalities`` below the model's evaluates it with a modality missing."""
    mods = tuple(modalities or model.modalities)
    ds = TokenDataset(store, list(clips), model_window_seconds(model, window_seconds), "all", mods,
                      stride_seconds=stride_seconds or None)
    pred = predict_clips(model, ds, task, batch_size, modalities=mods)
    metrics, cm = score(pred, task)
    return metrics, cm, pred

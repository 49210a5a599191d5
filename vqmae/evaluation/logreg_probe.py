"""The linear-probe baseline: scikit-learn logistic regression (ridge for arousal/valence) on
frozen clip features, its regularisation strength chosen on the validation speakers."""

from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from vqmae.data.token_dataset import TokenDataset
from vqmae.data.token_store import TARGET_NAMES, TokenStore
from vqmae.evaluation.metrics import ccc
from vqmae.evaluation.protocol import ProtocolConfig
from vqmae.evaluation.scoring import (
    ClipPredictions,
    format_metrics,
    model_device,
    model_window_seconds,
    prediction_rows,
    score,
)
from vqmae.evaluation.splits import fold_clips, fold_title, fold_warnings, speakers_of, subsample
from vqmae.evaluation.task import Task, finite
from vqmae.io import write_jsonl
from vqmae.runs import log
from vqmae.training import is_main_process


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
                out_dir: str | Path, fraction: float = 1.0, num_folds: int | None = None) -> dict[str, Any]:
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
    notes = fold_warnings(store, fold, ids)
    for w in notes:
        log.warning("%s", w)
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
    targets = np.array([[float(c.targets.get(t, np.nan)) if finite(c.targets.get(t)) else np.nan
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
    log.info("%s (logistic regression, %s): test %s", fold_title(fold, num_folds), chosen, format_metrics(test))
    return {
        "fold": fold.index,
        "train_speakers": speakers_of(store, ids["train"]), "val_speakers": speakers_of(store, ids["val"]),
        "test_speakers": speakers_of(store, ids["test"]),
        "n_train": len(ids["train"]), "n_val": len(ids["val"]), "n_test": len(ids["test"]),
        "label_fraction": fraction, "selected_by": f"validation speakers, over {grid}",
        "best_epoch": None, "chosen": chosen, "val": val_metrics, "test": test,
        "confusion": cm.tolist() if cm is not None else None, "seconds": time.perf_counter() - t0,
        "warnings": notes,
    }


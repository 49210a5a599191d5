"""The linear-probe baseline: scikit-learn logistic regression (ridge for arousal/valence) on
frozen clip features, its regularisation strength chosen on the validation speakers."""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from vqmae.data.speaker_reference import reference_inputs, with_speaker_reference
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
    window_dataset,
)
from vqmae.evaluation.splits import fold_clips, fold_title, fold_warnings, speakers_of, subsample
from vqmae.evaluation.task import Task, finite
from vqmae.io import write_jsonl
from vqmae.runs import log
from vqmae.training import is_main_process


@torch.no_grad()
def clip_features(model: nn.Module, dataset: TokenDataset, batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Frozen features per clip: ``position_statistics(forward_features(x))`` of every window
    (per patch position, mean and std of the encoder outputs over the window's time steps;
    models without that method: ``forward_head(forward_features(x), pre_logits=True)``),
    averaged per clip. Returns ``(clip indices (N,), features (N, F))``."""
    model.eval()
    device = model_device(model)
    mods = dataset.modalities
    dataset = with_speaker_reference(dataset, model)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False)
    summarise = getattr(model, "position_statistics", None)
    feats, clips = [], []
    for batch in loader:
        f = model.forward_features(**{m: batch[m].to(device) for m in mods}, **reference_inputs(batch, mods, device))
        f = summarise(f) if summarise is not None else model.forward_head(f, pre_logits=True)
        feats.append(f.float().cpu().numpy())
        clips.append(batch["clip"].numpy())
    x, c = np.concatenate(feats), np.concatenate(clips)
    uniq, inv = np.unique(c, return_inverse=True)
    acc = np.zeros((len(uniq), x.shape[1]))
    np.add.at(acc, inv, x)
    return uniq, acc / np.bincount(inv)[:, None]


LOGREG_C = (0.001, 0.01, 0.1, 1.0)
RIDGE_ALPHA = (0.1, 1.0, 10.0, 100.0, 1000.0)


def speaker_standardize(x: np.ndarray, speakers: Sequence[str]) -> np.ndarray:
    """Z-score the rows of ``x (N, F)`` per speaker with that speaker's own rows (mean and std
    over all of its clips in the split; no labels used) → ``(N, F)`` float64. A common SER
    practice: it removes per-speaker offsets (base pitch, resting expression) that a model would
    otherwise have to learn around; at test time it uses the test speaker's unlabelled clips."""
    x = np.asarray(x, dtype=np.float64)
    out = np.empty_like(x)
    spk = np.asarray([str(s) for s in speakers])
    for s in np.unique(spk):
        m = spk == s
        out[m] = (x[m] - x[m].mean(0)) / (x[m].std(0) + 1e-6)
    return out


def standardize_splits(X: dict[str, np.ndarray], order: dict[str, np.ndarray], store: TokenStore,
                       speaker_norm: bool) -> dict[str, np.ndarray]:
    """Features per split → standardised features: per speaker (:func:`speaker_standardize`) and
    then one scaler fitted on the training split (always; speaker z-scores are already near it)."""
    from sklearn.preprocessing import StandardScaler

    if speaker_norm:
        X = {s: speaker_standardize(x, [store.clips[int(i)].speaker for i in order[s]]) for s, x in X.items()}
    scaler = StandardScaler().fit(X["train"])
    return {s: scaler.transform(x) for s, x in X.items()}


def training_span(Z: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Features ``Z[split] (N_split, F)`` → their coordinates ``(N_split, r)`` in an orthonormal
    basis of the span of the training rows (``r ≤ N_train``), when there are more features than
    training rows. Changes no prediction of an L2-regularised linear model (logistic regression,
    ridge: the weights lie in that span, and inner products and norms inside it are kept) and
    makes each fit work on ``r`` columns instead of ``F`` (frozen encoder features have thousands)."""
    x = Z["train"]
    if x.shape[1] <= x.shape[0]:
        return Z
    w, u = np.linalg.eigh(x @ x.T)  # the Gram matrix: matrix products and an N × N eigenproblem
    keep = w > w[-1] * 1e-10  # (an SVD of x gives the same basis, ~10x slower on 2 busy cores)
    basis = x.T @ (u[:, keep] / np.sqrt(w[keep]))  # (F, r), orthonormal columns: x's right singular vectors
    return {k: v @ basis for k, v in Z.items()}


def clip_arrays(store: TokenStore) -> tuple[np.ndarray, np.ndarray]:
    """``(labels (N,) with -1 = none, targets (N, 2) with NaN = none)`` of every store clip."""
    labels = np.array([-1 if c.label is None else c.label for c in store.clips])
    targets = np.array([[float(c.targets.get(t, np.nan)) if finite(c.targets.get(t)) else np.nan
                         for t in TARGET_NAMES] for c in store.clips])
    return labels, targets


def fit_linear(Z: dict[str, np.ndarray], order: dict[str, np.ndarray], store: TokenStore, task: Task,
               cfg: ProtocolConfig, c_grid: Sequence[float] = LOGREG_C, pca: int = 0
               ) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, Any]]:
    """Logistic regression (classes) and ridge per target on standardised features ``Z[split]
    (N_split, F)`` of the clips ``order[split]``; the strengths are chosen on the ``val`` split
    (validation speakers) only. ``pca`` > 0: principal components (fitted on train) first.
    Returns ``({split: {"probs": (N, C), "values": (N, T)}} for train/val/test, chosen)``."""
    from sklearn.decomposition import PCA
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression, Ridge

    if pca and min(Z["train"].shape) > pca:
        proj = PCA(n_components=min(pca, len(Z["train"]) // 2), svd_solver="full").fit(Z["train"])
        Z = {s: proj.transform(z) for s, z in Z.items()}
    Z = training_span(Z)
    labels, targets = clip_arrays(store)
    C, T = task.num_classes, task.num_targets
    select = task.selection_key(cfg.select_metric)
    splits = [s for s in ("train", "val", "test") if s in Z]
    out: dict[str, dict[str, np.ndarray]] = {s: {} for s in splits}
    chosen: dict[str, Any] = {}
    if C:  # logistic regression: C picked by the validation UAR (ties: lower cross-entropy)
        y = labels[order["train"]]
        keep = y >= 0
        best = None
        for c in c_grid:
            with warnings.catch_warnings():  # weakly regularised fits of separable data stop early
                warnings.simplefilter("ignore", ConvergenceWarning)
                clf = LogisticRegression(C=c, max_iter=500).fit(Z["train"][keep], y[keep])
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
                value = -abs(np.log10(c))  # no validation speakers: C = 1
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
    return out, chosen


def linear_fold_result(store: TokenStore, fold: Any, task: Task, ids: dict[str, list[int]],
                       order: dict[str, np.ndarray], out: dict[str, dict[str, np.ndarray]],
                       chosen: dict[str, Any], grid: dict[str, Any], out_dir: Path, fraction: float,
                       notes: list[str], t0: float, what: str, num_folds: int | None) -> dict[str, Any]:
    """The fold result of a scikit-learn probe (the same keys as a trained fold's), with train,
    validation and test metrics; writes ``out_dir/predictions.jsonl`` (test clips)."""
    labels, targets = clip_arrays(store)

    def predictions(split: str) -> ClipPredictions:
        idx = order[split]
        return ClipPredictions(idx, out[split].get("probs"), out[split].get("values"), labels[idx],
                               targets[idx], np.ones(len(idx), dtype=np.int64))

    val_metrics = score(predictions("val"), task)[0] if "val" in out else {}
    train_metrics = score(predictions("train"), task)[0]
    pred = predictions("test")
    test, cm = score(pred, task)
    if is_main_process():
        write_jsonl(out_dir / "predictions.jsonl", prediction_rows(store, pred, task))
    log.info("%s (%s, %s): train %s; test %s", fold_title(fold, num_folds), what, chosen,
             format_metrics(train_metrics), format_metrics(test))
    return {
        "fold": fold.index,
        "train_speakers": speakers_of(store, ids["train"]), "val_speakers": speakers_of(store, ids["val"]),
        "test_speakers": speakers_of(store, ids["test"]),
        "n_train": len(ids["train"]), "n_val": len(ids["val"]), "n_test": len(ids["test"]),
        "label_fraction": fraction, "selected_by": f"validation speakers, over {grid}",
        "best_epoch": None, "chosen": chosen, "train": train_metrics, "val": val_metrics, "test": test,
        "confusion": cm.tolist() if cm is not None else None, "seconds": time.perf_counter() - t0,
        "warnings": notes,
    }


def fold_ids(store: TokenStore, fold: Any, task: Task, cfg: ProtocolConfig, fraction: float
             ) -> tuple[dict[str, list[int]], list[str]]:
    """Clip ids per split (training labels subsampled to ``fraction``) and the fold's warnings."""
    ids = fold_clips(store, fold, task)
    ids["train"] = subsample(store, ids["train"], fraction, cfg.train.seed + fold.index, task)
    notes = fold_warnings(store, fold, ids)
    for w in notes:
        log.warning("%s", w)
    return ids, notes


def logreg_fold(model: nn.Module, store: TokenStore, fold: Any, task: Task, cfg: ProtocolConfig,
                out_dir: str | Path, fraction: float = 1.0, num_folds: int | None = None) -> dict[str, Any]:
    """Linear-probe baseline: scikit-learn logistic regression (ridge for continuous targets) on
    frozen clip features (windows pooled by ``model``'s head, averaged per clip), standardised per
    speaker if ``cfg.speaker_norm``. The regularisation strength is chosen on the validation
    speakers; the test split is scored once."""
    t0 = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ids, notes = fold_ids(store, fold, task, cfg, fraction)
    mods = tuple(model.modalities)
    window = model_window_seconds(model, cfg.window_seconds)
    stride = cfg.eval_stride_seconds or None
    X, order = {}, {}
    for s in ("train", "val", "test"):
        if ids[s]:
            ds = window_dataset(store, ids[s], window, "all", mods, stride_seconds=stride, model=model)
            c, x = clip_features(model, ds, cfg.eval_batch_size)  # type: ignore[arg-type]
            order[s], X[s] = c, x
    Z = standardize_splits(X, order, store, cfg.speaker_norm)
    out, chosen = fit_linear(Z, order, store, task, cfg)
    grid = {"C": list(LOGREG_C) if task.num_classes else [], "alpha": list(RIDGE_ALPHA) if task.num_targets else []}
    return linear_fold_result(store, fold, task, ids, order, out, chosen, grid, out_dir, fraction, notes, t0,
                              "logistic regression", num_folds)

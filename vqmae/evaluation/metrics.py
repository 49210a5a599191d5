"""Evaluation metrics: WAR, UAR, macro-F1, confusion matrix (classification) and CCC (regression).

Pure numpy, on integer labels / predictions ``(N,)``. They agree with scikit-learn
(``accuracy_score``, ``balanced_accuracy_score``, ``f1_score(average="macro")``,
``confusion_matrix``; tested in tests/test_metrics.py):

* **WAR** (weighted average recall) = accuracy: every clip counts once.
* **UAR** (unweighted average recall) = the mean of per-class recalls over the classes present
  in ``y_true`` (scikit-learn's ``balanced_accuracy_score``): every class counts once.
* **macro-F1** = the mean F1 over the classes present in ``y_true`` or ``y_pred`` (scikit-learn's
  default label set, ``zero_division=0``).
* **CCC** (Lin's concordance correlation coefficient) =
  ``2 cov(x, y) / (var x + var y + (mean x - mean y)^2)`` with population (biased) moments.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _labels(y: Sequence[int] | np.ndarray) -> np.ndarray:
    arr = np.asarray(y)
    if arr.ndim != 1:
        raise ValueError(f"expected a 1-D array of class indices, got shape {arr.shape}")
    return arr.astype(np.int64, copy=False)


def confusion_matrix(y_true, y_pred, num_classes: int | None = None) -> np.ndarray:
    """``(C, C)`` int64 counts: row = true class, column = predicted class."""
    t, p = _labels(y_true), _labels(y_pred)
    if t.shape != p.shape:
        raise ValueError(f"y_true {t.shape} and y_pred {p.shape} differ in length")
    if num_classes is None:
        num_classes = int(max(t.max(initial=-1), p.max(initial=-1)) + 1)
    if t.size and (min(t.min(), p.min()) < 0 or max(t.max(), p.max()) >= num_classes):
        raise ValueError(f"class indices outside [0, {num_classes})")
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cm, (t, p), 1)
    return cm


def accuracy(y_true, y_pred) -> float:
    """WAR: the fraction of correct predictions."""
    t, p = _labels(y_true), _labels(y_pred)
    if t.size == 0:
        return float("nan")
    return float(np.mean(t == p))


def per_class_recall(y_true, y_pred, num_classes: int | None = None) -> np.ndarray:
    """``(C,)`` recall of each class; NaN for classes absent from ``y_true``."""
    cm = confusion_matrix(y_true, y_pred, num_classes).astype(np.float64)
    support = cm.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(support > 0, np.diag(cm) / support, np.nan)


def unweighted_average_recall(y_true, y_pred, num_classes: int | None = None) -> float:
    """UAR: mean recall over the classes present in ``y_true`` (= balanced accuracy)."""
    rec = per_class_recall(y_true, y_pred, num_classes)
    rec = rec[~np.isnan(rec)]
    return float(rec.mean()) if rec.size else float("nan")


def macro_f1(y_true, y_pred, num_classes: int | None = None) -> float:
    """Mean F1 over the classes that occur in ``y_true`` or ``y_pred`` (0 where undefined)."""
    t, p = _labels(y_true), _labels(y_pred)
    if t.size == 0:
        return float("nan")
    cm = confusion_matrix(t, p, num_classes).astype(np.float64)
    tp = np.diag(cm)
    support, predicted = cm.sum(axis=1), cm.sum(axis=0)
    present = (support + predicted) > 0
    denom = support + predicted
    f1 = np.where(denom > 0, 2 * tp / np.maximum(denom, 1e-300), 0.0)
    return float(f1[present].mean())


def classification_metrics(y_true, y_pred, num_classes: int | None = None) -> dict[str, float]:
    """``{"war", "uar", "macro_f1"}`` as fractions in [0, 1]."""
    return {
        "war": accuracy(y_true, y_pred),
        "uar": unweighted_average_recall(y_true, y_pred, num_classes),
        "macro_f1": macro_f1(y_true, y_pred, num_classes),
    }


def ccc(x, y) -> float:
    """Lin's concordance correlation coefficient of two 1-D arrays (pairs with a NaN dropped).

    1 = perfect agreement, 0 = none, -1 = perfect disagreement. A constant pair of equal values
    gives NaN (undefined)."""
    a, b = np.asarray(x, dtype=np.float64).ravel(), np.asarray(y, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"ccc: shapes {a.shape} and {b.shape} differ")
    keep = np.isfinite(a) & np.isfinite(b)
    a, b = a[keep], b[keep]
    if a.size < 2:
        return float("nan")
    ma, mb = a.mean(), b.mean()
    va, vb = a.var(), b.var()
    cov = np.mean((a - ma) * (b - mb))
    denom = va + vb + (ma - mb) ** 2
    return float(2 * cov / denom) if denom > 0 else float("nan")


def regression_metrics(targets, preds, names: Sequence[str] = ("arousal", "valence")) -> dict[str, float]:
    """CCC per target dimension (``ccc_<name>``) and their mean (``ccc``).

    ``targets``/``preds``: ``(N, D)``; rows with a NaN target are dropped per dimension."""
    t = np.asarray(targets, dtype=np.float64).reshape(len(targets), -1)
    p = np.asarray(preds, dtype=np.float64).reshape(len(preds), -1)
    if t.shape != p.shape:
        raise ValueError(f"targets {t.shape} and predictions {p.shape} differ")
    out: dict[str, float] = {}
    values = []
    for d in range(t.shape[1]):
        name = names[d] if d < len(names) else str(d)
        v = ccc(t[:, d], p[:, d])
        out[f"ccc_{name}"] = v
        values.append(v)
    finite = [v for v in values if np.isfinite(v)]
    out["ccc"] = float(np.mean(finite)) if finite else float("nan")
    return out

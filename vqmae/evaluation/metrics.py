"""Evaluation metrics: WAR, UAR, macro-F1, confusion matrix (classification) and CCC (regression).

The classification metrics are scikit-learn's, on integer labels / predictions ``(N,)``, with the
class set made explicit (``num_classes``) and the edge cases of the protocol fixed (an empty split
gives NaN, class indices outside ``[0, num_classes)`` are an error, not silently dropped):

* **WAR** (weighted average recall) = ``accuracy_score``: every clip counts once.
* **UAR** (unweighted average recall) = ``balanced_accuracy_score``: the mean of per-class recalls
  over the classes present in ``y_true``; every class counts once.
* **macro-F1** = ``f1_score(average="macro", zero_division=0)``: the mean F1 over the classes
  present in ``y_true`` or ``y_pred``.
* **CCC** (Lin's concordance correlation coefficient) =
  ``2 cov(x, y) / (var x + var y + (mean x - mean y)^2)`` with population (biased) moments
  (scikit-learn has none).

tests/evaluation/test_metrics.py checks them against an independent numpy formulation on random
labels, including classes absent from the predictions or from the truth.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
from sklearn import metrics as skm


def _labels(y: Sequence[int] | np.ndarray) -> np.ndarray:
    arr = np.asarray(y)
    if arr.ndim != 1:
        raise ValueError(f"expected a 1-D array of class indices, got shape {arr.shape}")
    return arr.astype(np.int64, copy=False)


def _pair(y_true, y_pred, num_classes: int | None = None) -> tuple[np.ndarray, np.ndarray, int]:
    t, p = _labels(y_true), _labels(y_pred)
    if t.shape != p.shape:
        raise ValueError(f"y_true {t.shape} and y_pred {p.shape} differ in length")
    if num_classes is None:
        num_classes = int(max(t.max(initial=-1), p.max(initial=-1)) + 1)
    if t.size and (min(t.min(), p.min()) < 0 or max(t.max(), p.max()) >= num_classes):
        raise ValueError(f"class indices outside [0, {num_classes})")
    return t, p, num_classes


def confusion_matrix(y_true, y_pred, num_classes: int | None = None) -> np.ndarray:
    """``(C, C)`` int64 counts: row = true class, column = predicted class."""
    t, p, C = _pair(y_true, y_pred, num_classes)
    if t.size == 0:
        return np.zeros((C, C), dtype=np.int64)
    return skm.confusion_matrix(t, p, labels=np.arange(C)).astype(np.int64)


def accuracy(y_true, y_pred) -> float:
    """WAR: the fraction of correct predictions."""
    t, p, _ = _pair(y_true, y_pred, None)
    return float(skm.accuracy_score(t, p)) if t.size else float("nan")


def per_class_recall(y_true, y_pred, num_classes: int | None = None) -> np.ndarray:
    """``(C,)`` recall of each class; NaN for classes absent from ``y_true``."""
    cm = confusion_matrix(y_true, y_pred, num_classes).astype(np.float64)
    support = cm.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(support > 0, np.diag(cm) / support, np.nan)


def unweighted_average_recall(y_true, y_pred, num_classes: int | None = None) -> float:
    """UAR: mean recall over the classes present in ``y_true`` (= balanced accuracy)."""
    t, p, _ = _pair(y_true, y_pred, num_classes)
    if t.size == 0:
        return float("nan")
    with warnings.catch_warnings():  # "y_pred contains classes not in y_true": left out, as meant
        warnings.simplefilter("ignore", UserWarning)
        return float(skm.balanced_accuracy_score(t, p))


def macro_f1(y_true, y_pred, num_classes: int | None = None) -> float:
    """Mean F1 over the classes that occur in ``y_true`` or ``y_pred`` (0 where undefined)."""
    t, p, _ = _pair(y_true, y_pred, num_classes)
    if t.size == 0:
        return float("nan")
    return float(skm.f1_score(t, p, average="macro", zero_division=0))


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

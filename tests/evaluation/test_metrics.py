"""Metrics agree with scikit-learn; losses, result aggregation, writers and plots behave."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn import metrics as skm

from vqmae.evaluation import losses as L
from vqmae.evaluation import metrics as M
from vqmae.evaluation.plots import plot_confusion, plot_label_efficiency, plot_noise
from vqmae.evaluation.results import fmt_metric, results_markdown, summarize, write_results


def _reference(y, p, C):
    """An independent numpy formulation (the re-implementation vqmae used before scikit-learn)."""
    cm = np.zeros((C, C), dtype=np.int64)
    np.add.at(cm, (y, p), 1)
    support, predicted, tp = cm.sum(1), cm.sum(0), np.diag(cm).astype(float)
    recall = tp[support > 0] / support[support > 0]
    present = (support + predicted) > 0
    f1 = np.where(support + predicted > 0, 2 * tp / np.maximum(support + predicted, 1), 0.0)
    return {"cm": cm, "war": float(np.mean(y == p)), "uar": float(recall.mean()), "macro_f1": float(f1[present].mean())}


@pytest.mark.parametrize("seed", range(8))
def test_classification_metrics_agree_with_sklearn_and_a_reference(seed):
    rng = np.random.default_rng(seed)
    C = 6
    n = int(rng.integers(5, 60))
    y = rng.integers(0, C, n)
    # mostly right, with some classes missing from y_true or y_pred on some seeds
    p = np.where(rng.random(n) < 0.6, y, rng.integers(0, C, n))
    if seed % 2:
        y = np.where(y == 5, 4, y)  # class 5 absent from y_true but maybe predicted
    if seed % 4 == 2:
        p = np.where(p == 3, 0, p)  # class 3 present in y_true, never predicted
        assert 3 not in p
    assert M.accuracy(y, p) == pytest.approx(skm.accuracy_score(y, p))
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bal = skm.balanced_accuracy_score(y, p)
    assert M.unweighted_average_recall(y, p, C) == pytest.approx(bal)
    assert M.macro_f1(y, p, C) == pytest.approx(skm.f1_score(y, p, average="macro", zero_division=0))
    np.testing.assert_array_equal(M.confusion_matrix(y, p, C), skm.confusion_matrix(y, p, labels=range(C)))
    ref = _reference(y, p, C)
    allm = M.classification_metrics(y, p, C)
    assert set(allm) == {"war", "uar", "macro_f1"}
    for k in allm:
        assert allm[k] == pytest.approx(ref[k])
    np.testing.assert_array_equal(M.confusion_matrix(y, p, C), ref["cm"])


def test_classification_metric_edge_cases():
    assert math.isnan(M.accuracy([], [])) and math.isnan(M.unweighted_average_recall([], [], 3))
    assert M.confusion_matrix([], [], 3).shape == (3, 3)
    with pytest.raises(ValueError, match="outside"):
        M.confusion_matrix([0, 3], [0, 1], 3)  # scikit-learn would drop the clip silently
    with pytest.raises(ValueError, match="differ"):
        M.macro_f1([0, 1], [0], 2)


def test_uar_weights_classes_equally():
    y = np.array([0] * 90 + [1] * 10)
    p = np.zeros(100, dtype=int)  # always the majority class
    assert M.accuracy(y, p) == pytest.approx(0.9)
    assert M.unweighted_average_recall(y, p) == pytest.approx(0.5)


def _ccc_reference(x, y):
    # an independent formulation: Pearson r scaled by the location/scale agreement
    r = np.corrcoef(x, y)[0, 1]
    sx, sy = np.std(x), np.std(y)
    return 2 * r * sx * sy / (sx ** 2 + sy ** 2 + (np.mean(x) - np.mean(y)) ** 2)


def test_ccc():
    rng = np.random.default_rng(0)
    x = rng.normal(size=200)
    y = 0.7 * x + rng.normal(scale=0.5, size=200) + 0.3
    assert M.ccc(x, y) == pytest.approx(_ccc_reference(x, y))
    assert M.ccc(x, x) == pytest.approx(1.0)
    xc = x - x.mean()
    assert M.ccc(xc, -xc) == pytest.approx(-1.0)
    # CCC <= |Pearson r|, equal when means and variances agree
    assert M.ccc(x, 2 * x + 1) < np.corrcoef(x, 2 * x + 1)[0, 1]
    # NaN pairs are dropped
    y2 = y.copy()
    y2[:10] = np.nan
    assert M.ccc(x, y2) == pytest.approx(_ccc_reference(x[10:], y[10:]))
    reg = M.regression_metrics(np.stack([x, y], 1), np.stack([x, y], 1))
    assert reg["ccc_arousal"] == pytest.approx(1) and reg["ccc"] == pytest.approx(1)
    # torch version agrees
    assert float(L.ccc_torch(torch.tensor(x), torch.tensor(y))) == pytest.approx(M.ccc(x, y), abs=1e-5)


def test_asl_reduces_to_smoothed_cross_entropy():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(16, 6, generator=g)
    target = torch.randint(0, 6, (16,), generator=g)
    asl0 = L.AsymmetricLossSingleLabel(gamma_neg=0, gamma_pos=0, eps=0.1)
    ce = F.cross_entropy(logits, target, label_smoothing=0.1)
    assert float(asl0(logits, target)) == pytest.approx(float(ce), rel=1e-5)
    assert float(L.SmoothedCrossEntropy(0.1)(logits, target)) == pytest.approx(float(ce), rel=1e-5)


def test_asl_paper_values_match_reference_formula():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(8, 5, generator=g, requires_grad=True)
    target = torch.randint(0, 5, (8,), generator=g)
    loss = L.AsymmetricLossSingleLabel()(logits, target)  # γ−=4, γ+=0, ε=0.1
    # reference (ASLSingleLabel of Ridnik et al.), written out directly
    logp = torch.log_softmax(logits, -1)
    p = logp.exp()
    onehot = F.one_hot(target, 5).float()
    w = torch.where(onehot > 0, torch.ones_like(p), p ** 4)
    ref = -((onehot * 0.9 + 0.1 / 5) * w * logp).sum(-1).mean()
    assert loss.item() == pytest.approx(ref.item(), rel=1e-6)
    loss.backward()
    assert torch.isfinite(logits.grad).all()
    # easy negatives are down-weighted: ASL < CE on the same logits
    assert loss.item() < F.cross_entropy(logits, target, label_smoothing=0.1).item()


def test_losses_ignore_unlabelled_rows():
    logits = torch.randn(4, 3)
    target = torch.tensor([0, -1, 2, -1])
    for loss in (L.AsymmetricLossSingleLabel(), L.SmoothedCrossEntropy()):
        assert float(loss(logits, target)) == pytest.approx(float(loss(logits[[0, 2]], target[[0, 2]])))
        assert float(loss(logits, torch.full((4,), -1))) == 0.0


def test_ccc_loss():
    g = torch.Generator().manual_seed(0)
    t = torch.randn(32, 2, generator=g)
    assert float(L.CCCLoss()(t.clone(), t)) == pytest.approx(0.0, abs=1e-5)
    pred = torch.randn(32, 2, generator=g, requires_grad=True)
    loss = L.CCCLoss()(pred, t)
    loss.backward()
    assert 0 < loss.item() < 2 and torch.isfinite(pred.grad).all()
    t2 = t.clone()
    t2[:, 1] = float("nan")  # valence missing: only arousal counts
    assert L.CCCLoss()(pred, t2).item() == pytest.approx(1 - L.ccc_torch(pred[:, 0], t[:, 0]).item(), rel=1e-5)


def test_summarize_and_format():
    s = summarize([{"war": 0.5, "uar": 0.4}, {"war": 0.7, "uar": float("nan")}, {"war": 0.6, "uar": 0.6}])
    assert s["war"]["mean"] == pytest.approx(0.6)
    assert s["war"]["std"] == pytest.approx(np.std([0.5, 0.7, 0.6], ddof=1))
    assert s["uar"]["n"] == 2 and s["uar"]["mean"] == pytest.approx(0.5)
    assert fmt_metric("war", 0.8512, 0.0234) == "85.1 ± 2.3"
    assert fmt_metric("ccc", 0.7123) == "0.712"
    assert summarize([{"war": 0.5}])["war"]["std"] == 0.0


def test_results_writers_and_plots(tmp_path):
    folds = [{"fold": k, "test_speakers": [f"s{k}"], "n_test": 10, "best_epoch": k,
              "val": {"war": 0.5}, "test": {"war": 0.5 + 0.1 * k, "uar": 0.4, "macro_f1": float("nan")}}
             for k in range(3)]
    results = {
        "task": "classify", "classes": ["a", "b"],
        "experiments": {"finetune-av": {"modalities": ["audio", "visual"], "folds": folds,
                                        "summary": summarize(f["test"] for f in folds)}},
        "label_efficiency": {"metric": "war", "rows": [
            {"experiment": e, "fraction": f, "n_train_mean": 100 * f,
             "summary": {"war": {"mean": 0.3 + f / 2, "std": 0.05}}}
            for e in ("finetune", "scratch") for f in (0.01, 0.1, 1.0)]},
        "noise": {"metric": "war", "rows": [
            {"experiment": "finetune-av", "noise": n, "snr_db": s, "summary": {"war": {"mean": 0.5, "std": 0.1}}}
            for n, s in [("clean", math.inf), ("white", 20), ("white", 0), ("babble", 20), ("babble", 0)]]},
    }
    j, m = write_results(tmp_path, results)
    data = json.loads(j.read_text())  # strict JSON: NaN written as null
    assert data["experiments"]["finetune-av"]["folds"][0]["test"]["macro_f1"] is None
    md = m.read_text()
    assert "finetune-av" in md and "60.0 ± 10.0" in md and "Label efficiency" in md and "babble 0 dB" in md
    assert results_markdown(data)  # renders from the JSON round trip too
    for path in (plot_confusion([[3, 1], [0, 4]], ["a", "b"], tmp_path / "cm.png", "t"),
                 plot_label_efficiency(results["label_efficiency"]["rows"], tmp_path / "le.png", "war", 0.5),
                 plot_noise(results["noise"]["rows"], tmp_path / "noise.png", "war")):
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_chance_levels_from_the_summed_confusion_matrix():
    from vqmae.evaluation.results import chance_levels

    exps = {"logreg-av": {"confusion": None},
            "finetune-av": {"confusion": [[5, 1, 0], [2, 2, 0], [0, 0, 10]],  # rows: true classes 6 / 4 / 10
                            "summary": {"war": {"mean": 0.6, "std": 0.1}}, "folds": []}}
    c = chance_levels(exps)
    assert c == {"classes": 3, "uar": pytest.approx(1 / 3), "war": pytest.approx(10 / 20)}
    md = results_markdown({"task": "classify", "experiments": exps})
    assert "Chance: UAR 33.3 % (1 / 3 classes); WAR 50.0 %" in md
    assert chance_levels({"x": {"confusion": None}}) is None

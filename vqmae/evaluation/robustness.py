"""What the fine-tuned fold models do with degraded input: a modality missing (from the test
runs) and noisy audio (saved fold models re-scored on re-tokenized noisy audio); plus the
confusion-matrix plot of an experiment."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from vqmae.data.token_store import StoreError, TokenStore
from vqmae.errors import UserError
from vqmae.evaluation.results import summarize
from vqmae.evaluation.scoring import evaluate_model
from vqmae.evaluation.splits import fold_clips
from vqmae.evaluation.task import Task
from vqmae.runs import log


def confusion_png(r: dict[str, Any], task: Task, path: Path, out: Path) -> None:
    """Plot an experiment's summed confusion matrix; records the file in ``r["confusion_png"]``."""
    if r.get("confusion") is None:
        return
    from vqmae.evaluation.plots import plot_confusion

    plot_confusion(r["confusion"], task.classes, path, f"{r['name']} (all test folds)")
    r["confusion_png"] = str(path.relative_to(out))


def missing_modality_rows(experiments: dict[str, Any]) -> list[dict[str, Any]]:
    """Two-modality experiments tested with one modality only: one row per (experiment, modality)."""
    rows = []
    for name, r in experiments.items():
        if len(r.get("modalities", [])) < 2:
            continue
        per = [f.get("test_missing_modality") or {} for f in r["folds"]]
        for m in r["modalities"]:
            vals = [p[m] for p in per if m in p]
            if vals:
                rows.append({"experiment": name, "modalities": [m], "summary": summarize(vals)})
    return rows


def noise_robustness(cfg: Any, store: TokenStore, task: Task, folds: list[Any], out: Path,
                     results: dict[str, Any]) -> dict[str, Any]:
    """Evaluate the saved fold models of the trained experiments with noisy audio → table + plot.
    ``cfg``: a :class:`~vqmae.evaluation.finetune_job.FinetuneConfig`."""
    from vqmae.evaluation.noise import NoisyAudioTokens
    from vqmae.evaluation.plots import plot_noise
    from vqmae.mae.classifier import load_classifier

    names = cfg.noise_experiments or [n for n, r in results["experiments"].items()
                                      if r["kind"] != "logreg" and "audio" in r["modalities"]]
    names = [n for n in names if n in results["experiments"]]
    if not names:
        log.warning("noise robustness: no trained experiment with audio input to evaluate")
        return {}
    try:
        noisy = NoisyAudioTokens(store, seed=cfg.train.seed, talkers=cfg.babble_talkers)
    except (StoreError, FileNotFoundError) as e:
        raise UserError(f"noise robustness: {e}") from None
    split = {f.index: fold_clips(store, f, task) for f in folds}
    tested = sorted({i for s in split.values() for i in s["test"]})
    agreement = noisy.check_clean(tested)
    log.info("noise: clean re-tokenization reproduces %.1f %% of the stored audio tokens", 100 * agreement)
    rows = []
    for name in names:
        r = results["experiments"][name]
        per_cond: dict[tuple[str, float], list[dict[str, float]]] = {}
        for f in folds:
            folder = out / name / f"fold_{f.index}" / "model"
            if not folder.is_dir():
                log.warning("noise: %s has no saved model (save_models=false?); skipped", folder)
                continue
            model, _ = load_classifier(folder)
            test = split[f.index]["test"]
            for kind in cfg.noise:
                for snr in cfg.snr_db:
                    noisy_store = noisy.store_for(kind, snr, test, pool=tested)
                    m, _, _ = evaluate_model(model, noisy_store, range(len(test)), task, cfg.window_seconds,
                                             cfg.eval_stride_seconds, cfg.eval_batch_size)
                    per_cond.setdefault((kind, float(snr)), []).append(m)
        rows.append({"experiment": name, "noise": "clean", "snr_db": math.inf, "summary": r["summary"]})
        for (kind, snr), ms in per_cond.items():
            rows.append({"experiment": name, "noise": kind, "snr_db": snr, "summary": summarize(ms)})
        log.info("noise: %s done", name)
    metric = task.headline
    plot = plot_noise(rows, out / "noise.png", metric,
                      chance=1.0 / task.num_classes if task.num_classes else None)
    return {"metric": metric, "rows": rows, "plot": plot.name, "clean_retokenized_agreement": agreement,
            "recipe": f"white / babble ({cfg.babble_talkers} talkers of other speakers) noise added to the "
                      "test audio at each SNR, peak-normalised, re-tokenized with the store's audio tokenizer"}

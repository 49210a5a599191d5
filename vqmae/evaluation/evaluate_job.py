"""The job of ``vqmae evaluate``: score saved fine-tuned fold models on a token store (each on
its own fold's speakers, or every clip), optionally with a modality missing or noisy audio; the
store must hold tokens of the models' tokenizers (fingerprints checked) and the same classes."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from vqmae.config import setting
from vqmae.errors import UserError
from vqmae.evaluation.results import summarize, write_results
from vqmae.evaluation.scoring import evaluate_model, prediction_rows
from vqmae.evaluation.task import Task
from vqmae.io import write_jsonl
from vqmae.runs import log


@dataclass
class EvaluateConfig:
    """Settings of ``vqmae evaluate``."""

    model: str = ""
    """A fine-tuned model folder, or a finetune experiment folder (fold_*/model)."""
    tokens: str = ""
    """Token store; '' = the store the model was fine-tuned on (recorded in the model)."""
    out: str = ""
    """Output folder; '' = <model>/evaluation."""
    split: Literal["test", "val", "train", "all"] = "test"
    """Speakers of each model's fold to score; all = every clip of the store."""
    modalities: list[str] = field(default_factory=list)
    """Inputs given to the model ([] = all of its own); fewer evaluates with a modality missing."""
    noise: list[str] = field(default_factory=list)
    """white and/or babble: also score with noisy audio (needs media + audio tokenizer)."""
    snr_db: list[float] = field(default_factory=lambda: [20.0, 10.0, 5.0, 0.0])
    babble_talkers: int = setting(6, ge=1, help="Other speakers mixed into babble noise.")
    seed: int = 0
    batch_size: int = setting(64, ge=1, help="Windows per batch.")
    window_seconds: float = setting(0.0, ge=0, help="0 = the model's window.")
    stride_seconds: float = setting(0.0, ge=0, help="Step between windows; 0 = the window length.")


def model_folders(path: str | Path) -> list[Path]:
    """A model folder itself, or the ``fold_*/model`` folders of an experiment folder (fold order)."""
    from vqmae.checkpoint import ModelFolderError
    from vqmae.hub import resolve_model_folder

    try:  # a hub id org/name -> its snapshot folder in the hub cache
        p = resolve_model_folder(path)
    except ModelFolderError as e:
        raise UserError(str(e)) from None
    if (p / "config.json").is_file():
        return [p]
    folds = sorted(p.glob("fold_*/model"), key=lambda q: int(q.parent.name.split("_")[1]))
    folds = [q for q in folds if (q / "config.json").is_file()]
    if not folds:
        raise UserError(f"{p}: neither a model folder (config.json) nor a finetune experiment folder "
                        "(fold_*/model)")
    return folds


def task_of(info: dict[str, Any]) -> Task:
    t = info.get("task") or {}
    if not t:
        raise UserError("the model records no task (was it saved by vqmae finetune?)")
    return Task(t["kind"], list(t.get("classes", [])), list(t.get("target_names", [])))


def check_store(store, model, info: dict[str, Any], task: Task, where: str) -> None:
    """The store must hold tokens of the model's tokenizers, and the same classes."""
    from vqmae.data.token_store import StoreError

    for m in model.modalities:
        if m == "wave":  # a waveform model (VSSL): its audio comes from the store's media files
            continue
        fp = (info.get("tokenizers", {}).get(m) or {}).get("fingerprint")
        try:
            if fp:
                store.check_tokenizer(m, fp)
            elif m not in store.modalities:
                raise StoreError(f"{store.root}: holds no '{m}' tokens")
        except StoreError as e:
            raise UserError(f"{where}: {e}") from None
    if task.num_classes and store.classes and list(store.classes) != list(task.classes):
        raise UserError(f"{where}: the model's classes {task.classes} differ from the store's {store.classes}")


def clips_of(store, info: dict[str, Any], split: str, task: Task) -> list[int]:
    if split == "all":
        return [i for i, c in enumerate(store.clips) if task.uses(c)]
    fold = info.get("fold")
    if not fold:
        raise UserError(f"split={split}: the model records no fold; use split=all")
    speakers = set(map(str, fold[split]))
    return [i for i, c in enumerate(store.clips) if str(c.speaker) in speakers and task.uses(c)]


def run(cfg: EvaluateConfig) -> dict[str, Any]:
    from vqmae.data.token_store import StoreError, TokenStore
    from vqmae.evaluation.plots import plot_confusion
    from vqmae.evaluation.robustness import NoisyInputs
    from vqmae.vssl.harness import load_fold_model

    if not cfg.model:
        raise UserError("--model is required")
    folders = model_folders(cfg.model)
    out = Path(cfg.out) if cfg.out else Path(cfg.model) / "evaluation"
    out.mkdir(parents=True, exist_ok=True)
    stores: dict[str, Any] = {}
    per_model: list[dict[str, Any]] = []
    noise_per: dict[tuple[str, float], list[dict[str, float]]] = {}
    preds: list[dict[str, Any]] = []
    cm_total = None
    task = None
    noisy = None
    for k, folder in enumerate(folders):
        model, info = load_fold_model(folder)
        task = task_of(info)
        path = cfg.tokens or info.get("store", "")
        if not path:
            raise UserError(f"{folder}: records no store; give --tokens")
        if path not in stores:
            try:
                stores[path] = TokenStore.open(path)
            except StoreError as e:
                raise UserError(str(e)) from None
        store = stores[path]
        check_store(store, model, info, task, str(folder))
        mods = tuple(cfg.modalities) or tuple(model.modalities)
        bad = [m for m in mods if m not in model.modalities]
        if bad:
            raise UserError(f"{folder}: the model takes {list(model.modalities)}, not {bad}")
        clips = clips_of(store, info, cfg.split, task)
        if not clips:
            raise UserError(f"{folder}: no usable clip of the {cfg.split} speakers in {store.root}")
        metrics, cm, pred = evaluate_model(model, store, clips, task, cfg.window_seconds, cfg.stride_seconds,
                                           cfg.batch_size, mods)
        fold = info.get("fold") or {}
        per_model.append({"fold": fold.get("index", k), "model": str(folder), "test_speakers":
                          sorted({str(store.clips[i].speaker) for i in clips}), "n_test": len(clips),
                          "best_epoch": info.get("best_epoch"), "val": {}, "test": metrics,
                          "confusion": cm.tolist() if cm is not None else None})
        preds += [{"model": str(folder), **r} for r in prediction_rows(store, pred, task)]
        if cm is not None:
            cm_total = cm if cm_total is None else cm_total + cm
        log.info("%s: %s", folder, ", ".join(f"{k2} {v:.4g}" for k2, v in metrics.items() if k2 != "selection"))
        if cfg.noise:
            if "audio" not in mods and "wave" not in mods:
                raise UserError("noise robustness needs a model given audio input")
            if noisy is None or noisy.store is not store:
                noisy = NoisyInputs(store, cfg.seed, cfg.babble_talkers)
            for kind in cfg.noise:
                for snr in cfg.snr_db:
                    m = noisy.evaluate(model, kind, snr, clips, task, cfg.window_seconds, cfg.stride_seconds,
                                       cfg.batch_size, mods, pool=clips)
                    noise_per.setdefault((kind, float(snr)), []).append(m)
    assert task is not None
    name = f"{Path(cfg.model).name} ({'+'.join(cfg.modalities) or 'own inputs'}, {cfg.split})"
    exp = {"name": name, "kind": "evaluate", "description": f"saved model(s) on {', '.join(stores)}",
           "modalities": list(cfg.modalities) or list(model.modalities), "folds": per_model,
           "summary": summarize(r["test"] for r in per_model),
           "confusion": cm_total.tolist() if cm_total is not None else None}
    if cm_total is not None:
        plot_confusion(cm_total, task.classes, out / "confusion.png", name)
        exp["confusion_png"] = "confusion.png"
    write_jsonl(out / "predictions.jsonl", preds)
    results: dict[str, Any] = {"task": task.kind, "classes": task.classes, "target_names": task.target_names,
                               "experiments": {name: exp}}
    if noise_per:
        from vqmae.evaluation.plots import plot_noise

        rows = [{"experiment": name, "noise": "clean", "snr_db": math.inf, "summary": exp["summary"]}]
        rows += [{"experiment": name, "noise": kind, "snr_db": snr, "summary": summarize(ms)}
                 for (kind, snr), ms in noise_per.items()]
        plot_noise(rows, out / "noise.png", task.headline,
                   chance=1.0 / task.num_classes if task.num_classes else None)
        results["noise"] = {"metric": task.headline, "rows": rows, "plot": "noise.png"}
    write_results(out, results)
    log.info("evaluate: %s → %s", name, out / "results.md")
    return results

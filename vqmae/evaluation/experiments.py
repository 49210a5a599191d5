"""The experiment runner: one experiment (how to build a model, how to train it) over every fold,
with a per-fold cache (``fold_<k>/fold_result.json`` keyed by the experiment's settings) so a rerun
reuses finished folds; per-fold results are summarised as mean ± std over folds."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from torch import nn

from vqmae.data.token_store import TokenStore
from vqmae.evaluation.codes_probe import codes_fold
from vqmae.evaluation.fold_training import train_fold
from vqmae.evaluation.logreg_probe import logreg_fold
from vqmae.evaluation.protocol import ProtocolConfig
from vqmae.evaluation.results import summarize
from vqmae.evaluation.splits import fold_title
from vqmae.evaluation.task import Task
from vqmae.io import read_json, write_json
from vqmae.runs import log
from vqmae.training import barrier, is_main_process, seed_everything


@dataclass
class Experiment:
    """One row of the results table: how to build a fresh model per fold, and how to train it.

    ``kind``: ``"train"`` (fine-tune all weights), ``"probe"`` (frozen encoder, trained head),
    ``"logreg"`` (scikit-learn on frozen pooled features) or ``"codes"`` (scikit-learn on tokenizer
    codebook statistics, :mod:`vqmae.evaluation.codes_probe`; ``build`` returns a ``CodesModel``)."""

    name: str
    build: Callable[[], nn.Module]
    kind: Literal["train", "probe", "logreg", "codes"] = "train"
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
                log.info("%s %s: done before, reusing %s", exp.name, fold_title(fold, len(folds)), done)
                results.append(prev["result"])
                if on_fold is not None:
                    on_fold(exp, fold, None)
                continue
        log.info("%s: %s (%d train / %d val / %d test speakers)", exp.name, fold_title(fold, len(folds)),
                 len(fold.train), len(fold.val), len(fold.test))
        seed_everything(cfg.train.seed * 1000 + fold.index)  # the same initial head for every run of a fold
        model = exp.build()
        if exp.kind in ("logreg", "codes"):
            probe = codes_fold if exp.kind == "codes" else logreg_fold
            result = probe(model, store, fold, task, cfg, fold_dir, exp.fraction, num_folds=len(folds))
            model = None
        else:
            model, result = train_fold(model, store, fold, task, cfg, fold_dir, exp.fraction,
                                       freeze_encoder=exp.kind == "probe", num_folds=len(folds))
            if save_models and hasattr(model, "save_pretrained") and is_main_process():
                if hasattr(model, "info"):
                    model.info = {**exp.info, "experiment": exp.name, "fold": {
                        "index": fold.index, "train": list(fold.train), "val": list(fold.val),
                        "test": list(fold.test)}, "best_epoch": result["best_epoch"],
                        "label_fraction": exp.fraction}
                if getattr(model, "info", {}).get("tokenizers"):  # self-contained: tokenizers inside
                    from vqmae.hub import bundle_tokenizers

                    model.info["tokenizers"] = bundle_tokenizers(fold_dir / "model", model.info["tokenizers"],
                                                                 strict=False)
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
        "summary_train": summarize(r["train"] for r in results if r.get("train")),
        "confusion": cm.tolist() if cm is not None else None,
        "warnings": [w for r in results for w in r.get("warnings", [])],
    }

"""Training one fold: fine-tune on the training speakers' random windows, keep the epoch with the
best *validation* metric (``vqmae.training.fit`` restores it), then score the test speakers once."""

from __future__ import annotations

import dataclasses
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from vqmae.data.speaker_reference import reference_inputs, with_speaker_reference
from vqmae.data.token_store import TokenStore
from vqmae.evaluation.losses import CCCLoss, make_class_loss
from vqmae.evaluation.protocol import ProtocolConfig
from vqmae.evaluation.scoring import (
    format_metrics,
    model_window_seconds,
    predict_clips,
    prediction_rows,
    printable,
    score,
    window_dataset,
)
from vqmae.evaluation.splits import (
    RepeatDataset,
    fold_clips,
    fold_title,
    fold_warnings,
    speakers_of,
    subsample,
)
from vqmae.evaluation.task import Task
from vqmae.io import write_jsonl
from vqmae.runs import Run
from vqmae.training import StepInfo, fit, is_main_process


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
        out = model(**{m: batch[m] for m in given}, **reference_inputs(batch, given)).float()
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


def _datasets(store: TokenStore, ids: dict[str, list[int]], modalities: Sequence[str], window: float,
              cfg: ProtocolConfig, model: nn.Module | None = None) -> dict[str, Dataset]:
    """Random training windows; every window (``eval_stride_seconds``) of the val / test / training
    clips for scoring. Token windows, or waveform windows for a model that reads ``wave``."""
    stride = cfg.eval_stride_seconds or None

    def every_window(clips: list[int]) -> Dataset:
        return window_dataset(store, clips, window, "all", modalities, stride_seconds=stride, model=model)

    return {"train": window_dataset(store, ids["train"], window, "random", modalities, seed=cfg.train.seed,
                                    model=model),
            "val": every_window(ids["val"]), "test": every_window(ids["test"]),
            "train_eval": every_window(ids["train"])}


def train_fold(model: nn.Module, store: TokenStore, fold: Any, task: Task, cfg: ProtocolConfig,
               out_dir: str | Path, fraction: float = 1.0, freeze_encoder: bool = False,
               num_folds: int | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """Fine-tune ``model`` on one fold and test it once. Writes ``out_dir``: ``train.log``,
    ``metrics.jsonl``, ``predictions.jsonl``. Returns ``(model with the best epoch, fold result)``;
    the result's ``warnings`` say when the fold is too small to mean much (:func:`fold_warnings`)."""
    t0 = time.perf_counter()
    out_dir = Path(out_dir)
    ids = fold_clips(store, fold, task)
    ids["train"] = subsample(store, ids["train"], fraction, cfg.train.seed + fold.index, task)
    warnings = fold_warnings(store, fold, ids)
    mods = tuple(model.modalities)
    window = model_window_seconds(model, cfg.window_seconds)
    ds = _datasets(store, ids, mods, window, cfg, model)
    train_ds: Dataset = with_speaker_reference(ds["train"], model)
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
            run.info("%s has no validation speakers: the last epoch is kept (no model selection)",
                     fold_title(fold, num_folds))
        for w in warnings:
            run.warning("%s", w)
        res = fit(model, train_ds, make_loss_fn(task, cfg, mods), tcfg, run,
                  eval_fn=eval_fn if has_val else None)
        model = res.model
        t_train = time.perf_counter() - t0
        # ---- how well the selected model fits its own training speakers (every window, as test)
        train_metrics = score(predict_clips(model, ds["train_eval"], task, cfg.eval_batch_size), task)[0]
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
        best = "–" if res.best_epoch is None else res.best_epoch + 1  # 1-based, as fit logs epochs
        run.info("%s: best epoch %s (val %s = %.4g), train %s; test %s", fold_title(fold, num_folds), best,
                 select, printable(select, res.best_metrics.get(select, float("nan"))),
                 format_metrics(train_metrics), format_metrics(test))
    finally:
        run.close()
        if not cfg.keep_checkpoints:
            shutil.rmtree(out_dir / "checkpoints", ignore_errors=True)
            shutil.rmtree(out_dir / "best", ignore_errors=True)
    history = [{k: v for k, v in h.items() if k not in ("split", "step")} for h in res.history]
    result = {
        "fold": fold.index,
        "train_speakers": speakers_of(store, ids["train"]), "val_speakers": speakers_of(store, ids["val"]),
        "test_speakers": speakers_of(store, ids["test"]),
        "n_train": len(ids["train"]), "n_val": len(ids["val"]), "n_test": len(ids["test"]),
        "label_fraction": fraction,
        "selected_by": f"val {select}" if has_val else "last epoch (no validation speakers)",
        "best_epoch": res.best_epoch if has_val else res.epochs_done - 1,
        "epochs": res.epochs_done, "steps": res.steps,
        "train": train_metrics,
        "val": {k: v for k, v in res.best_metrics.items() if k not in ("step", "epoch", "split")},
        "test": test,
        "confusion": cm.tolist() if cm is not None else None,
        "test_missing_modality": missing,
        "history": history,
        "warnings": warnings,
        "seconds": time.perf_counter() - t0, "train_seconds": t_train,
    }
    return model, result


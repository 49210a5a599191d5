"""The token-statistics probe (experiment ``codes``): a linear probe on tokenizer codebook statistics.

Per clip and modality, every token is replaced by its tokenizer codebook vector and summarised over
time: audio (T, *token_shape) → mean, std, mean |Δ| between frames, 10th and 90th percentile per
position and dimension; visual → mean, std, mean |Δ| per grid cell and dimension. Without the
tokenizer (a store whose tokenizer folder is gone, test stores) the codebook is one-hot, i.e. the
statistics are code histograms (per token position; cheap for large codebooks). Each speaker's clip features are standardised with that speaker's
own clips (``speaker_norm``; no labels), then per fold: principal components (fitted on the
training speakers), logistic regression / ridge with the strength chosen on the validation
speakers; the test speakers are scored once. Two modalities: late fusion, the mean of the
per-modality class probabilities (and continuous outputs).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from vqmae.data.speaker_reference import position_code_counts
from vqmae.data.token_store import TokenStore
from vqmae.evaluation.logreg_probe import (
    fit_linear,
    fold_ids,
    linear_fold_result,
    standardize_splits,
)
from vqmae.evaluation.protocol import ProtocolConfig
from vqmae.evaluation.task import Task
from vqmae.runs import log

CODES_C = (0.01, 0.03, 0.1, 0.3)
PCA_COMPONENTS = 64
_CACHE: dict[tuple[str, str, str], np.ndarray] = {}
"""Clip features by (store, modality, codebook:clip): the folds of a run share them."""


class CodesModel:
    """What a ``codes`` experiment builds per fold: the modalities and a codebook ``(K, D)`` per
    modality (the tokenizer's, or None: one-hot, i.e. code histograms)."""

    def __init__(self, modalities: tuple[str, ...], codebooks: dict[str, np.ndarray | None]):
        self.modalities, self.codebooks = tuple(modalities), codebooks


def load_codebook(store: TokenStore, modality: str) -> np.ndarray | None:
    """The codebook ``(K, D)`` of the tokenizer that made ``modality``'s tokens (found through the
    store's provenance), or None (one-hot codes: histograms) when it cannot be loaded."""
    K = store.codebook_size(modality)
    prov = store.provenance.get(modality, {})
    try:
        import torch

        from vqmae.hub import resolve_tokenizer_folder, store_tokenizer_record
        from vqmae.tokenizers import load_tokenizer

        if prov.get("architecture") == "synthetic" or not (prov.get("tokenizer_dir") or prov.get("tokenizer_hub_id")):
            raise FileNotFoundError("no tokenizer recorded")
        folder = resolve_tokenizer_folder(None, modality, store_tokenizer_record(prov))
        with torch.no_grad():
            cb = load_tokenizer(folder).quantizer.codebook.detach().float().cpu().numpy()
        cb = cb.reshape(-1, cb.shape[-1])
        if cb.shape[0] != K:
            raise ValueError(f"codebook has {cb.shape[0]} vectors, the store {K} codes")
        return cb
    except Exception as e:  # noqa: BLE001 - any failure: histograms still work
        log.info("codes probe: %s codebook not loaded (%s); using one-hot codes (histograms)", modality, e)
        return None


def build_codes_model(store: TokenStore, modalities: tuple[str, ...]) -> CodesModel:
    return CodesModel(modalities, {m: load_codebook(store, m) for m in modalities})


def clip_code_features(tokens: np.ndarray, codebook: np.ndarray | None, modality: str,
                       codebook_size: int = 0) -> np.ndarray:
    """Tokens ``(T, *token_shape)`` → statistics ``(F,)`` of their codebook vectors over time;
    ``codebook`` None: the code histogram of every token position ``(P * codebook_size,)``."""
    if codebook is None:
        return position_code_counts(tokens, codebook_size).astype(np.float32) / max(len(tokens), 1)
    v = codebook[tokens.astype(np.int64)].reshape(tokens.shape[0], -1).astype(np.float32)
    d = np.abs(np.diff(v, axis=0)).mean(0) if len(v) > 1 else np.zeros(v.shape[1], np.float32)
    parts = [v.mean(0), v.std(0), d]
    if modality == "audio":
        parts += list(np.percentile(v, [10, 90], axis=0))
    return np.concatenate(parts)


def code_features(store: TokenStore, clips: np.ndarray, modality: str, codebook: np.ndarray | None) -> np.ndarray:
    """``(len(clips), F)`` features of ``clips``; cached per store, modality and codebook."""
    tag = "onehot" if codebook is None else str(hash(codebook.tobytes()))
    K = store.codebook_size(modality)
    rows = []
    for i in np.asarray(clips).tolist():
        k = (str(store.root), modality, f"{tag}:{i}")
        if k not in _CACHE:
            _CACHE[k] = clip_code_features(store.read(int(i), modality), codebook, modality, K)
        rows.append(_CACHE[k])
    return np.stack(rows)


def codes_fold(model: CodesModel, store: TokenStore, fold: Any, task: Task, cfg: ProtocolConfig,
               out_dir: str | Path, fraction: float = 1.0, num_folds: int | None = None) -> dict[str, Any]:
    """One fold of the codes probe (module doc) → the fold result (train / val / test metrics)."""
    t0 = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ids, notes = fold_ids(store, fold, task, cfg, fraction)
    order = {s: np.asarray(ids[s], dtype=np.int64) for s in ("train", "val", "test") if ids[s]}
    per_mod, chosen = [], {}
    for m in model.modalities:
        X = {s: code_features(store, idx, m, model.codebooks[m]) for s, idx in order.items()}
        Z = standardize_splits(X, order, store, cfg.speaker_norm)
        out, ch = fit_linear(Z, order, store, task, cfg, CODES_C, pca=PCA_COMPONENTS)
        per_mod.append(out)
        chosen.update({f"{m}_{k}": v for k, v in ch.items()})
    fused: dict[str, dict[str, np.ndarray]] = {}
    for s in order:  # late fusion: mean of the modalities' outputs
        fused[s] = {k: np.mean([o[s][k] for o in per_mod], axis=0) for k in per_mod[0][s]}
    grid = {"C": list(CODES_C), "pca": PCA_COMPONENTS, "fusion": "mean of modality probabilities"}
    return linear_fold_result(store, fold, task, ids, order, fused, chosen, grid, out_dir, fraction, notes, t0,
                              "codes probe", num_folds)

"""How fast is the synthetic corpus made, and how hard is it?

Generates the demo preset (or reads --data), decodes every written file with PyAV, computes
simple per-clip features (vqmae.synth.analysis: prosody + log-mel statistics for audio; mean
and temporal-std grey thumbnails for video) and scores logistic regression with a
speaker-independent split (GroupKFold over speakers): audio alone, video alone, both (early fusion:
concatenated features; late fusion: mean of the two models' log-probabilities).

Target (docs/DATA.md): each modality clearly above chance (1/6) but far from perfect, both
together better than either. Generation speed: wall seconds and clips/s, plus CPU seconds per
clip and the CPU-bound time (CPU seconds / workers), which does not depend on how loaded the
shared machine is. Prints one JSON object.

    python benchmarks/bench_synth.py [--workers 2] [--speakers 12] [--data DIR] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from vqmae.data.manifest import read_manifest
from vqmae.synth import SynthConfig, generate_corpus
from vqmae.synth.analysis import audio_features, visual_features


def decode(path: Path) -> tuple[np.ndarray, int, np.ndarray]:
    """(audio (S,) float32 mono, sample rate, frames (T, H, W, 3) uint8 RGB) with PyAV."""
    with av.open(str(path)) as c:
        frames = np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])
    with av.open(str(path)) as c:
        sr = c.streams.audio[0].sample_rate
        audio = np.concatenate([f.to_ndarray().reshape(f.to_ndarray().shape[0], -1).mean(axis=0)
                                for f in c.decode(audio=0)])
    return audio.astype(np.float32), sr, frames


def model(n_pca: int | None = None):
    steps = [StandardScaler()]
    if n_pca:
        steps.append(PCA(n_components=n_pca, random_state=0))
    steps.append(LogisticRegression(C=0.1, max_iter=3000))
    return make_pipeline(*steps)


def evaluate(xa: np.ndarray, xv: np.ndarray, y: np.ndarray, groups: np.ndarray, n_splits: int) -> dict:
    """Speaker-independent accuracies (pooled over folds) and per-fold spread."""
    pred = {k: np.zeros_like(y) for k in ("audio", "visual", "audiovisual_early", "audiovisual_late")}
    folds = {k: [] for k in pred}
    n_pca = min(64, int(len(y) * (n_splits - 1) / n_splits) - 1)
    n_pca = n_pca if xv.shape[1] > n_pca else None
    for tr, te in GroupKFold(n_splits=n_splits).split(xa, y, groups):
        ma = model().fit(xa[tr], y[tr])
        mv = model(n_pca).fit(xv[tr], y[tr])
        # early fusion: audio features beside the visual features' principal components
        zv = mv[:-1].transform(xv)  # fitted on the training fold only
        xav = np.concatenate([xa, zv], axis=1)
        mav = model().fit(xav[tr], y[tr])
        la, lv = ma.predict_log_proba(xa[te]), mv.predict_log_proba(xv[te])
        pred["audio"][te] = ma.classes_[la.argmax(1)]
        pred["visual"][te] = mv.classes_[lv.argmax(1)]
        pred["audiovisual_late"][te] = ma.classes_[(la + lv).argmax(1)]
        pred["audiovisual_early"][te] = mav.predict(xav[te])
        for k in pred:
            folds[k].append(float(np.mean(pred[k][te] == y[te])))
    return {"accuracy": {k: round(float(np.mean(p == y)), 4) for k, p in pred.items()},
            "fold_std": {k: round(float(np.std(v)), 4) for k, v in folds.items()}}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", help="an existing labelled corpus (skips generation)")
    ap.add_argument("--keep", help="generate into this folder and keep it (default: a temp folder)")
    ap.add_argument("--preset", default="demo")
    ap.add_argument("--speakers", type=int, default=0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--folds", type=int, default=6)
    args = ap.parse_args(argv)
    result: dict = {"bench": "synth"}
    tmp = None
    if args.data:
        root = Path(args.data)
    else:
        root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench_synth_"))
        tmp = None if args.keep else root
        summary = generate_corpus(SynthConfig(preset=args.preset, out=str(root), seed=args.seed,
                                              speakers=args.speakers, workers=args.workers,
                                              overwrite=True))
        gen = {k: summary[k] for k in ("clips", "workers", "seconds", "clips_per_s", "audio_hours",
                                       "synth_s_per_clip", "write_s_per_clip", "cpu_s_per_clip")}
        # the machine is shared: CPU time per clip does not depend on the load, wall time does
        gen["cpu_bound_seconds"] = round(summary["cpu_s_per_clip"] * summary["clips"] / args.workers, 1)
        gen["load_average"] = round(os.getloadavg()[0], 2)
        result["generation"] = gen
    try:
        man = read_manifest(root)
        recs = [r for r in man.records if r.label is not None]
        t0 = time.perf_counter()
        xa, xv = [], []
        for r in recs:
            audio, sr, frames = decode(man.media_path(r))
            xa.append(audio_features(audio, sr))
            xv.append(visual_features(frames))
        result["decode_features_s_per_clip"] = round((time.perf_counter() - t0) / max(len(recs), 1), 4)
        y = np.array([r.label for r in recs])
        groups = np.array([r.speaker for r in recs])
        n_spk = len(set(groups))
        result.update({"clips": len(recs), "speakers": n_spk, "classes": len(man.classes),
                       "chance": round(1 / len(man.classes), 4)})
        result.update(evaluate(np.nan_to_num(np.array(xa)), np.array(xv), y, groups,
                               min(args.folds, n_spk)))
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())

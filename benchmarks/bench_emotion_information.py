"""How much emotion information survives each stage of a `vqmae demo` run?

Speaker-independent logistic regression (GroupKFold over speakers, the same model for every row:
standardise, PCA to at most 64 dimensions when there are more than 200 features, L2 C=0.1) on
per-clip features taken at each stage of a run folder:

* ``audio_codes_bag`` / ``visual_codes_bag``: histograms of the clip's codes (what a bag-of-codes
  model sees);
* ``audio_codes_band_bag``: code histograms per eighth of the frequency axis (keeps where in the
  spectrum a code sits);
* ``audio_decoded``: mean and std over time of the tokenizer's decoded spectrogram (513 bins);
* ``visual_decoded``: mean and temporal std of 16×16 grey thumbnails of the decoded faces.

Compare with ``bench_synth.py`` (the same regression on features of the original media). Needs a
run folder with ``tokens/`` and both ``tokenizer_*/model`` (default ``runs/demo``); without one it
prints ``{"skipped": ...}``. Prints one JSON object.

    python benchmarks/bench_emotion_information.py [--run runs/demo] [--folds 4]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler


def clip_features(run: Path) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Per-clip features of every labelled clip of the run's token store, labels, speakers."""
    from vqmae.data.token_store import TokenStore
    from vqmae.tokenizers import load_tokenizer

    store = TokenStore.open(run / "tokens")
    tok_a = load_tokenizer(run / "tokenizer_audio" / "model").eval()
    tok_v = load_tokenizer(run / "tokenizer_visual" / "model").eval()
    k_a, k_v = store.codebook_size("audio"), store.codebook_size("visual")
    feats: dict[str, list[np.ndarray]] = {k: [] for k in (
        "audio_codes_bag", "audio_codes_band_bag", "audio_decoded", "visual_codes_bag", "visual_decoded")}
    idx = store.clip_indices(labelled=True)
    with torch.no_grad():
        for i in idx:
            a = store.read(int(i), "audio").astype(np.int64)   # (T, 64)
            v = store.read(int(i), "visual").astype(np.int64)  # (T, h, w)
            feats["audio_codes_bag"].append(np.bincount(a.ravel(), minlength=k_a) / a.size)
            bands = np.array_split(a, 8, axis=1)
            feats["audio_codes_band_bag"].append(np.concatenate(
                [np.bincount(b.ravel(), minlength=k_a) / b.size for b in bands]))
            feats["visual_codes_bag"].append(np.bincount(v.ravel(), minlength=k_v) / v.size)
            spec = tok_a.decode(torch.from_numpy(a)).float()    # (T, bins)
            spec = spec.reshape(spec.shape[0], -1).numpy()
            feats["audio_decoded"].append(np.concatenate([spec.mean(0), spec.std(0)]))
            faces = tok_v.decode(torch.from_numpy(v)).float()   # (T, 3, s, s)
            grey = torch.nn.functional.adaptive_avg_pool2d(faces.mean(1, keepdim=True), 16)[:, 0].numpy()
            feats["visual_decoded"].append(np.concatenate([grey.mean(0).ravel(), grey.std(0).ravel()]))
    clips = [store.clips[int(i)] for i in idx]
    y = np.array([c.label for c in clips])
    groups = np.array([c.speaker for c in clips])
    return {k: np.asarray(v) for k, v in feats.items()}, y, groups


def accuracy(x: np.ndarray, y: np.ndarray, groups: np.ndarray, folds: int) -> float:
    steps = [StandardScaler()]
    if x.shape[1] > 200:
        steps.append(PCA(n_components=min(64, x.shape[0] // 2), random_state=0))
    steps.append(LogisticRegression(C=0.1, max_iter=3000))
    pred = cross_val_predict(make_pipeline(*steps), x, y, groups=groups, cv=GroupKFold(folds))
    return float((pred == y).mean())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", default="runs/demo")
    p.add_argument("--folds", type=int, default=4)
    args = p.parse_args(argv)
    run = Path(args.run)
    needed = [run / "tokens" / "store.json", run / "tokenizer_audio" / "model", run / "tokenizer_visual" / "model"]
    missing = [str(n) for n in needed if not n.exists()]
    if missing:
        print(json.dumps({"benchmark": "emotion_information", "skipped": f"not found: {', '.join(missing)} "
                          "(run vqmae demo first, or pass --run)"}))
        return 0
    torch.set_num_threads(1)
    t0 = time.time()
    feats, y, groups = clip_features(run)
    result = {"benchmark": "emotion_information", "run": str(run), "clips": int(len(y)),
              "speakers": int(len(set(groups))), "classes": int(len(set(y))),
              "chance": round(1 / len(set(y)), 4), "folds": args.folds,
              "accuracy": {k: round(accuracy(x, y, groups, args.folds), 4) for k, x in feats.items()},
              "seconds": round(time.time() - t0, 1)}
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

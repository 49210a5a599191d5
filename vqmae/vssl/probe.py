"""A quick linear probe of exported audio encoders — NOT the project's evaluation harness.

    python -m vqmae.vssl.probe --manifest data/demo random=random \
        multitask=runs/vssl_multi/audio_encoder audio=runs/vssl_audio/audio_encoder [--snr 20 10 0]

Per clip: the encoder's features ``(T, D)`` pooled to mean ‖ std ``(2D,)``; logistic regression
(emotion; UAR) and ridge regression (arousal, valence; CCC) over speaker-grouped folds
(``GroupKFold``), trained on clean audio; with ``--snr``, emotion UAR with white noise added to
the test clips at each SNR (one seeded draw per clip). Mean ± std over folds. No validation
split, fixed regularisation: a sanity check of what the features hold until the encoder is
evaluated by ``vqmae finetune`` (see docs/VISUAL_SSL.md). ``random`` = an untrained encoder of
the ``tiny`` size with the log-mel normalisation fitted.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch


def _ccc(a: np.ndarray, b: np.ndarray) -> float:
    ma, mb = a.mean(), b.mean()
    return float(2 * np.mean((a - ma) * (b - mb)) / (a.var() + b.var() + (ma - mb) ** 2))


def _noisy(w: np.ndarray, snr: float | None, seed: int) -> np.ndarray:
    if snr is None:
        return w
    n = np.random.default_rng(seed).standard_normal(len(w)).astype(np.float32)
    return w + n * np.sqrt(np.mean(w ** 2) / 10 ** (snr / 10))


@torch.no_grad()
def pooled_features(encoder, waves: list[np.ndarray], snr: float | None = None) -> np.ndarray:
    """``(N, 2D)``: mean ‖ std over time of ``encoder.encode`` for each waveform."""
    encoder.eval()
    out = []
    for i, w in enumerate(waves):
        f = encoder.encode(torch.from_numpy(_noisy(np.asarray(w, np.float32), snr, i))[None])[0]
        out.append(torch.cat([f.mean(0), f.std(0)]).numpy())
    return np.stack(out)


def probe(encoder, waves, labels, groups, arousal=None, valence=None, snrs=(), folds: int = 4) -> dict:
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.metrics import recall_score
    from sklearn.model_selection import GroupKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    clean = pooled_features(encoder, waves)
    noisy = {snr: pooled_features(encoder, waves, snr) for snr in snrs}
    scores: dict[str, list[float]] = {}
    for tr, te in GroupKFold(folds).split(clean, labels, groups):
        clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=0.5)).fit(clean[tr], labels[tr])
        scores.setdefault("uar", []).append(recall_score(labels[te], clf.predict(clean[te]), average="macro"))
        for snr, x in noisy.items():
            scores.setdefault(f"uar_{snr:g}dB", []).append(
                recall_score(labels[te], clf.predict(x[te]), average="macro"))
        for name, t in (("ccc_arousal", arousal), ("ccc_valence", valence)):
            if t is not None:
                r = make_pipeline(StandardScaler(), Ridge(alpha=10.0)).fit(clean[tr], t[tr])
                scores.setdefault(name, []).append(_ccc(t[te], r.predict(clean[te])))
    return {k: {"mean": float(np.mean(v)), "std": float(np.std(v))} for k, v in scores.items()}


def main(argv: list[str] | None = None) -> int:
    from vqmae.data.clips import load_clip, resolve_clip_config
    from vqmae.data.manifest import read_manifest
    from vqmae.vssl import AudioEncoder, VSSLModel, vssl_model_preset

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--manifest", required=True)
    ap.add_argument("--snr", type=float, nargs="*", default=[])
    ap.add_argument("--folds", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0, help="initialisation of the random encoder")
    ap.add_argument("encoders", nargs="+", help="NAME=FOLDER (an audio_encoder folder) or NAME=random")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    man = read_manifest(args.manifest)
    recs = [r for r in man.records if r.label is not None]
    cfg = resolve_clip_config(man.path, detect_faces=False)
    waves = [load_clip(man.media_path(r), cfg, ("audio",)).audio for r in recs]
    labels = np.array([r.label for r in recs])
    groups = np.array([r.speaker for r in recs])
    aff = {k: (np.array([r.targets[k] for r in recs]) if all(k in r.targets for r in recs) else None)
           for k in ("arousal", "valence")}
    results = {}
    for spec in args.encoders:
        name, _, folder = spec.partition("=")
        if folder == "random":
            torch.manual_seed(args.seed)
            m = VSSLModel(vssl_model_preset("tiny", task="audio"))
            m.fit_normalization([torch.from_numpy(np.asarray(w)) for w in waves[::3]])
            enc = m.encoder
        else:
            enc = AudioEncoder.from_pretrained(folder)
        results[name] = probe(enc, waves, labels, groups, aff["arousal"], aff["valence"], args.snr, args.folds)
        print(name, {k: f"{v['mean']:.3f} ± {v['std']:.3f}" for k, v in results[name].items()}, flush=True)
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

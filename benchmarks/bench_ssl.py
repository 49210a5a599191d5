"""Does self-supervised pretraining help when labels are few? (the self-supervised claim at scale)

The premise of VQ-MAE-AV: many unlabelled speakers, few labelled ones. This benchmark keeps the
two apart, runs every stage with the ordinary ``vqmae`` commands and prints one JSON object:

1. ``vqmae synth``: the labelled demo corpus (30 speakers × 24 clips) and an *unlabelled*
   corpus of other speakers (``--preset pretrain``; ``--unlabelled-clips``).
2. Tokenizers trained, and VQ-MAE-AV pretrained, on the unlabelled corpus only: no stage of
   self-supervision ever sees a speaker of the labelled folds.
3. ``vqmae finetune`` on the labelled corpus (5 speaker-independent folds of 18 / 6 / 6 speakers):
   ``finetune`` (pretrained, all weights trained), ``scratch`` (same architecture, random init)
   and ``probe`` (pretrained encoder frozen) at each label fraction, one audio+visual model per
   fold trained with modality dropout and tested with audio+visual, audio alone and visual alone.

Reported: WAR mean ± std over folds per (label fraction, experiment, input), chance, and the claim
"pretrained > scratch at ≤ 10 % labels by more than one fold-std" answered per fraction.

    python benchmarks/bench_ssl.py [--work runs/bench_ssl] [--fractions 0.05,0.1,0.25,1]
        [--unlabelled-clips 1200] [--pretrain-epochs 30] [--seed 0]
        [--full-label-experiments finetune,scratch,probe]

About 45 minutes on 2 idle CPU cores with the defaults (finished stages are reused on a rerun).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def vqmae(*args: str) -> None:
    cmd = [sys.executable, "-m", "vqmae", *args]
    print("+ vqmae " + " ".join(args), file=sys.stderr, flush=True)
    subprocess.run(cmd, check=True)


def stage(done: Path, *args: str) -> None:
    """Run a command unless ``done`` exists (a finished stage of an earlier run)."""
    if not done.exists():
        vqmae(*args)


def fold_results(folder: Path) -> list[dict]:
    return [json.loads(p.read_text())["result"] for p in sorted(folder.glob("fold_*/fold_result.json"))]


def summary(values: list[float]) -> dict[str, float]:
    v = np.asarray(values, dtype=np.float64)
    return {"mean": float(v.mean()) if len(v) else float("nan"),
            "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0, "n": int(len(v))}


def collect(ft: Path, fractions: list[float]) -> dict[str, dict[str, dict[str, dict[str, float]]]]:
    """``{fraction: {experiment: {"av" | "audio" | "visual": WAR summary}}}`` from the fold files."""
    table: dict[str, dict[str, dict[str, dict[str, float]]]] = {}
    for frac in fractions:
        row = table.setdefault(f"{frac:g}", {})
        for exp in ("finetune", "scratch", "probe"):
            folder = ft / f"{exp}-av" if frac == 1.0 else ft / "label_efficiency" / f"{exp}-av_{frac:g}"
            if frac == 1.0 and not folder.is_dir():  # not among --full-label-experiments
                folder = ft / "label_efficiency" / f"{exp}-av_1"
            folds = fold_results(folder) if folder.is_dir() else []
            if not folds:
                continue
            row[exp] = {"av": summary([f["test"]["war"] for f in folds])}
            for m in ("audio", "visual"):
                row[exp][m] = summary([f["test_missing_modality"][m]["war"] for f in folds
                                       if m in (f.get("test_missing_modality") or {})])
            row[exp]["train_av"] = summary([f["train"]["war"] for f in folds if f.get("train")])
    return table


def claims(table: dict[str, dict[str, dict[str, dict[str, float]]]]) -> dict[str, str]:
    """Per fraction ≤ 10 % and input: is pretrained better than scratch by more than one fold-std?"""
    out = {}
    for frac, row in table.items():
        if float(frac) > 0.1 or "finetune" not in row or "scratch" not in row:
            continue
        for m in ("av", "audio", "visual"):
            a, b = row["finetune"][m], row["scratch"][m]
            d, s = a["mean"] - b["mean"], max(a["std"], b["std"])
            answer = "yes" if d > s else "no" if d < -s else "not distinguishable"
            out[f"{frac} {m}"] = (f"{answer}: finetune {100 * a['mean']:.1f} ± {100 * a['std']:.1f} vs "
                                  f"scratch {100 * b['mean']:.1f} ± {100 * b['std']:.1f} (difference "
                                  f"{100 * d:+.1f}, one fold-std {100 * s:.1f})")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", default="runs/bench_ssl")
    ap.add_argument("--fractions", default="0.05,0.1,0.25,1")
    ap.add_argument("--unlabelled-clips", type=int, default=1200)
    ap.add_argument("--pretrain-epochs", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--full-label-experiments", default="finetune,scratch,probe",
                    help="experiments run with all labels (the label fractions run all three)")
    a = ap.parse_args()
    w = Path(a.work)
    fractions = sorted({float(f) for f in a.fractions.split(",")})
    t0 = time.perf_counter()
    times: dict[str, float] = {}

    def timed(name: str, fn, *args) -> None:
        t = time.perf_counter()
        fn(*args)
        times[name] = round(time.perf_counter() - t, 1)

    seed = f"--seed={a.seed}"
    timed("synth", lambda: (
        stage(w / "labelled" / "dataset.json", "synth", "--preset", "demo", "--out", str(w / "labelled"), seed),
        stage(w / "unlabelled" / "dataset.json", "synth", "--preset", "pretrain", "--out", str(w / "unlabelled"),
              f"--clips={a.unlabelled_clips}", seed)))
    timed("prepare", lambda: [stage(w / f"{c}_prepared" / "manifest.jsonl", "prepare", "--dataset", "synthetic",
                                    "--root", str(w / c), "--out", str(w / f"{c}_prepared"), "detect_faces=false",
                                    *(["--protocol", "none"] if c == "unlabelled" else ["--protocol", "kfold", "--k", "5"]))
                              for c in ("labelled", "unlabelled")])
    timed("tokenizers", lambda: [stage(w / f"tokenizer_{m}" / "model" / "config.json", "train-tokenizer",
                                       "--modality", m, "--manifest", str(w / "unlabelled_prepared"),
                                       "--out", str(w / f"tokenizer_{m}"), "--preset", "demo",
                                       "data.detect_faces=false", f"train.seed={a.seed}")
                                 for m in ("audio", "visual")])
    timed("tokenize", lambda: [stage(w / f"tokens_{c}" / "store.json", "tokenize", "--manifest",
                                     str(w / f"{c}_prepared"), "--audio-tokenizer", str(w / "tokenizer_audio" / "model"),
                                     "--visual-tokenizer", str(w / "tokenizer_visual" / "model"),
                                     "--out", str(w / f"tokens_{c}"), "detect_faces=false")
                               for c in ("unlabelled", "labelled")])
    timed("pretrain", stage, w / "pretrain" / "model" / "config.json", "pretrain", "--tokens",
          str(w / "tokens_unlabelled"), "--out", str(w / "pretrain"), "--preset", "demo",
          f"train.epochs={a.pretrain_epochs}", f"train.seed={a.seed}", "train.progress=false")
    ft = w / "finetune"
    timed("finetune", vqmae, "finetune", "--tokens", str(w / "tokens_labelled"), "--init", str(w / "pretrain" / "model"),
          "--folds", str(w / "labelled_prepared" / "folds.json"), "--out", str(ft), "--preset", "demo",
          "modalities=[av]", f"experiments=[{a.full_label_experiments}]",
          f"label_fractions=[{','.join(f'{f:g}' for f in fractions)}]",
          "label_experiments=[finetune,scratch,probe]", f"seed={a.seed}", "noise=[]")
    pre = json.loads((w / "pretrain" / "model" / "config.json").read_text())
    table = collect(ft, sorted(set(fractions) | {1.0}))
    print(json.dumps({
        "benchmark": "ssl",
        "what": "WAR on held-out speakers (mean ± std over 5 folds), audio+visual model tested with av / "
                "audio alone / visual alone; pretraining and tokenizers on unlabelled speakers only",
        "chance": 1 / 6, "fractions": fractions, "table": table,
        "pretrained_beats_scratch_at_le_10pct": claims(table),
        "pretraining": (pre.get("pretrain") or {}).get("final"),
        "stage_seconds": times, "seconds": round(time.perf_counter() - t0, 1),
        "command": " ".join(sys.argv),
    }, default=str))


if __name__ == "__main__":
    main()

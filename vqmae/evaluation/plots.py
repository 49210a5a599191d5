"""Result plots (matplotlib, Agg backend, written atomically as PNG): confusion matrices,
label-efficiency curves, noise-robustness curves, fine-tuning curves (from each fold's
``metrics.jsonl``) and the information-ladder bar chart."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vqmae.io import atomic_path


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    _plt().close(fig)
    return path


def plot_confusion(cm: np.ndarray | Sequence[Sequence[int]], classes: Sequence[str], path: str | Path,
                   title: str = "") -> Path:
    """Row-normalised confusion matrix: colour and first number of a cell = share of the true
    class's clips (row sums to 100 %, the diagonal is each class's recall); the count below it."""
    plt = _plt()
    cm = np.asarray(cm, dtype=np.int64)
    n = cm.shape[0]
    names = list(classes) if len(classes) == n else [str(i) for i in range(n)]
    support = cm.sum(axis=1, keepdims=True)
    norm = np.divide(cm, np.maximum(support, 1), dtype=np.float64)
    size = max(4.0, 0.6 * n + 2)
    fig, ax = plt.subplots(figsize=(size, size * 0.9))
    im = ax.imshow(norm, vmin=0, vmax=1, cmap="Blues")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="share of the true class (row-normalised)")
    ax.set_xticks(range(n), names, rotation=45, ha="right")
    ax.set_yticks(range(n), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true (cells: % of row, count)")
    for i in range(n):
        for j in range(n):
            ax.text(j, i, f"{100 * norm[i, j]:.0f} %\n({cm[i, j]})" if cm[i, j] else "·", ha="center", va="center", fontsize=7,
                    color="white" if norm[i, j] > 0.5 else "black")
    total = cm.sum()
    acc = np.trace(cm) / total if total else float("nan")
    ax.set_title(f"{title}  (WAR {acc * 100:.1f} %, n = {total})".strip())
    return _save(fig, path)


def _metric_label(metric: str) -> tuple[str, float]:
    from vqmae.evaluation.results import METRIC_TITLES

    title, pct = METRIC_TITLES.get(metric, (metric, False))
    return (f"{title} (%)", 100.0) if pct else (title, 1.0)


def plot_label_efficiency(rows: Sequence[Mapping[str, Any]], path: str | Path, metric: str = "uar",
                          chance: float | None = None) -> Path:
    """x = fraction of training labels (log scale), y = test metric mean ± std, one line per
    experiment. ``rows``: ``{"experiment", "fraction", "summary": {metric: {"mean", "std"}}}``."""
    plt = _plt()
    label, scale = _metric_label(metric)
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for exp in dict.fromkeys(r["experiment"] for r in rows):
        pts = sorted((float(r["fraction"]), r["summary"].get(metric, {})) for r in rows
                     if r["experiment"] == exp)
        x = [p[0] * 100 for p in pts]
        y = np.array([_num(s.get("mean")) for _, s in pts]) * scale
        e = np.array([_num(s.get("std"), 0.0) for _, s in pts]) * scale
        ax.errorbar(x, y, yerr=e, marker="o", capsize=3, label=exp)
    if chance is not None:
        ax.axhline(chance * scale, color="grey", ls=":", lw=1, label="chance")
    ax.set_xscale("log")
    fracs = sorted({float(r["fraction"]) * 100 for r in rows})
    ax.set_xticks(fracs, [f"{f:g}" for f in fracs])
    ax.minorticks_off()
    ax.set_xlabel("training labels used (%)")
    ax.set_ylabel(f"test {label}")
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title("Label efficiency")
    return _save(fig, path)


def plot_noise(rows: Sequence[Mapping[str, Any]], path: str | Path, metric: str = "uar",
               chance: float | None = None) -> Path:
    """x = SNR in dB (clean at the right), y = test metric; one line per (experiment, noise type).
    ``rows``: ``{"experiment", "noise" ("clean"|"white"|"babble"), "snr_db", "summary"}``."""
    plt = _plt()
    label, scale = _metric_label(metric)
    fig, ax = plt.subplots(figsize=(6, 4))
    snrs = sorted({float(r["snr_db"]) for r in rows if r["noise"] != "clean"})
    clean_x = (max(snrs) + 10) if snrs else 0.0
    for exp in dict.fromkeys(r["experiment"] for r in rows):
        clean = [r for r in rows if r["experiment"] == exp and r["noise"] == "clean"]
        for noise in dict.fromkeys(r["noise"] for r in rows if r["noise"] != "clean"):
            pts = sorted((float(r["snr_db"]), r["summary"].get(metric, {})) for r in rows
                         if r["experiment"] == exp and r["noise"] == noise)
            if clean:
                pts.append((clean_x, clean[0]["summary"].get(metric, {})))
            x = [p[0] for p in pts]
            y = np.array([_num(s.get("mean")) for _, s in pts]) * scale
            e = np.array([_num(s.get("std"), 0.0) for _, s in pts]) * scale
            ax.errorbar(x, y, yerr=e, marker="o", capsize=3, label=f"{exp} · {noise}")
    if chance is not None:
        ax.axhline(chance * scale, color="grey", ls=":", lw=1, label="chance")
    ticks = snrs + ([clean_x] if snrs else [])
    ax.set_xticks(ticks, [f"{s:g}" for s in snrs] + (["clean"] if snrs else []))
    ax.set_xlabel("SNR (dB)")
    ax.set_ylabel(f"test {label}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    ax.set_title("Noise robustness (audio)")
    return _save(fig, path)


def plot_finetune_curves(exp_dir: str | Path, path: str | Path, title: str = "") -> Path | None:
    """Per fold (``exp_dir/fold_*/metrics.jsonl``): training loss by epoch (left) and validation
    WAR / UAR by epoch (right; the selected epoch marked). None when no fold logged metrics."""
    from vqmae.io import read_jsonl

    folds = sorted(Path(exp_dir).glob("fold_*/metrics.jsonl"))
    runs = [(f.parent.name, read_jsonl(f)) for f in folds]
    runs = [(n, rows) for n, rows in runs if rows]
    if not runs:
        return None
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    colors = plt.get_cmap("tab10")
    for k, (name, rows) in enumerate(runs):
        c = colors(k % 10)
        train = [r for r in rows if r.get("split") == "train" and "loss" in r]
        by_epoch: dict[int, list[float]] = {}
        for r in train:
            by_epoch.setdefault(int(r.get("epoch", 0)), []).append(float(r["loss"]))
        if by_epoch:
            ep = sorted(by_epoch)
            axes[0].plot([e + 1 for e in ep], [np.mean(by_epoch[e]) for e in ep], "o-", color=c, ms=3,
                         label=name.replace("_", " "))
        val = [r for r in rows if r.get("split") == "val"]
        for key, style in (("war", "o-"), ("uar", "s--")):
            pts = [(int(r.get("epoch", 0)) + 1, 100 * float(r[key])) for r in val if r.get(key) is not None]
            if pts:
                axes[1].plot(*zip(*pts), style, color=c, ms=3, alpha=0.9,
                             label=f"{name.replace('_', ' ')} {key.upper()}")
        best = _selected_epoch(Path(exp_dir) / name / "fold_result.json")
        sel = [(e, w) for e, w in ((int(r.get("epoch", 0)), r.get("war")) for r in val) if e == best and w is not None]
        if sel:
            axes[1].plot(sel[0][0] + 1, 100 * float(sel[0][1]), "*", color=c, ms=12, mec="black")
    axes[0].set(xlabel="epoch", ylabel="training loss (mean over steps)", title="training loss")
    axes[1].set(xlabel="epoch", ylabel="validation speakers (%)",
                title="validation WAR (o) / UAR (s); * = selected epoch")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


def _selected_epoch(fold_result: Path) -> int | None:
    from vqmae.io import read_json

    try:
        data = read_json(fold_result) if fold_result.is_file() else {}
        best = (data.get("result") or data).get("best_epoch")  # {"key", "result": fold result}
    except (OSError, ValueError):
        return None
    return int(best) if isinstance(best, int) else None


def plot_ladder(stages: Sequence[str], columns: Mapping[str, Sequence[float | None]], path: str | Path,
                chance: float | None = None, flagged: Sequence[tuple[str, str]] = ()) -> Path:
    """Grouped bars: x = stage, one bar per column (modality set); accuracy in %; chance dashed;
    bars of ``flagged`` (stage, column) pairs hatched (the stage lost more than half of the
    previous stage's above-chance accuracy)."""
    plt = _plt()
    cols = list(columns)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.3 * len(stages) + 2), 3.8))
    width = 0.8 / max(1, len(cols))
    for j, col in enumerate(cols):
        vals = [np.nan if v is None else 100 * float(v) for v in columns[col]]
        x = np.arange(len(stages)) + (j - (len(cols) - 1) / 2) * width
        bars = ax.bar(x, vals, width=width, label=col)
        for b, st in zip(bars, stages):
            if (st, col) in flagged:
                b.set_hatch("//")
                b.set_edgecolor("red")
    if chance is not None:
        ax.axhline(100 * chance, color="grey", ls="--", lw=1, label=f"chance {100 * chance:.1f} %")
    ax.set_xticks(range(len(stages)), [s.replace(" ", "\n", 1) for s in stages], fontsize=8)
    ax.set_ylabel("held-out speakers, accuracy (%)")
    ax.set_title("Information ladder: emotion accuracy of a linear probe at each stage (hatched: lost > half)")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return _save(fig, path)


def _num(v: Any, default: float = float("nan")) -> float:
    return default if v is None else float(v)

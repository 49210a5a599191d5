"""PNG figures of a trained tokenizer (matplotlib, Agg backend, written atomically).

* :func:`plot_spectrograms`: original vs reconstructed power spectrogram (dB) of one clip.
* :func:`plot_frame_grid`: a row of original frames above their reconstructions.
* :func:`plot_codebook_usage`: code counts, most used first (log scale), with % used/perplexity.
* :func:`plot_training_curves`: losses and codebook perplexity from ``metrics.jsonl``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from vqmae.io import atomic_path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight")
    _pyplot().close(fig)
    return path


def _db(power: torch.Tensor, ref_max: float, top_db: float = 80.0) -> np.ndarray:
    p = power.double().clamp_min(ref_max * 10 ** (-top_db / 10) + 1e-30)
    return (10 * torch.log10(p)).numpy()


def plot_spectrograms(path: str | Path, original: torch.Tensor, recon: torch.Tensor, *,
                      frames_per_second: float, sample_rate: int, title: str = "",
                      lsd_db: float | None = None) -> Path:
    """original, recon: power (T, F) -> PNG with two stacked dB spectrograms."""
    plt = _pyplot()
    ref_max = float(original.max().clamp_min(1e-20))
    a, b = _db(original, ref_max), _db(recon, ref_max)
    vmax, vmin = float(a.max()), float(a.max()) - 80.0
    extent = (0, original.shape[0] / frames_per_second, 0, sample_rate / 2000)
    fig, axes = plt.subplots(2, 1, figsize=(10, 6), sharex=True)
    for ax, img, name in ((axes[0], a, "original"), (axes[1], b, "reconstruction")):
        im = ax.imshow(img.T, origin="lower", aspect="auto", extent=extent, vmin=vmin, vmax=vmax,
                       cmap="magma")
        ax.set_ylabel("frequency (kHz)")
        ax.set_title(name)
    axes[1].set_xlabel("seconds")
    fig.colorbar(im, ax=axes, label="dB")
    sup = title + (f"  (LSD {lsd_db:.2f} dB)" if lsd_db is not None else "")
    if sup:
        fig.suptitle(sup)
    return _save(fig, path)


def plot_frame_grid(path: str | Path, original: torch.Tensor, recon: torch.Tensor, *,
                    max_frames: int = 8, title: str = "") -> Path:
    """original, recon: (T, 3, s, s) in [-0.5, 0.5] -> PNG, originals on top, evenly spaced frames."""
    plt = _pyplot()
    t = original.shape[0]
    idx = np.unique(np.linspace(0, t - 1, num=min(max_frames, t)).round().astype(int))
    fig, axes = plt.subplots(2, len(idx), figsize=(1.6 * len(idx), 3.6), squeeze=False)
    for j, i in enumerate(idx):
        for row, src in enumerate((original, recon)):
            img = (src[i].float().clamp(-0.5, 0.5) + 0.5).permute(1, 2, 0).numpy()
            ax = axes[row][j]
            ax.imshow(img)
            ax.set_xticks([])
            ax.set_yticks([])
            if j == 0:
                ax.set_ylabel("original" if row == 0 else "reconstruction")
        axes[0][j].set_title(f"frame {i}", fontsize=8)
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def plot_codebook_usage(path: str | Path, counts: torch.Tensor, *, title: str = "",
                        stats: dict[str, Any] | None = None) -> Path:
    """counts: (K,) code histogram -> PNG bar chart sorted by frequency (log y)."""
    plt = _pyplot()
    c = np.sort(counts.double().numpy())[::-1]
    fig, ax = plt.subplots(figsize=(8, 3.5))
    ax.bar(np.arange(len(c)), np.maximum(c, 0.5), width=1.0, color="tab:blue")
    ax.set_yscale("log")
    ax.set_xlabel("codes, most used first")
    ax.set_ylabel("count")
    text = title
    if stats:
        text += f"  {stats.get('codes_used_pct', 0):.1f}% of {len(c)} codes used, " \
                f"perplexity {stats.get('perplexity', 0):.1f}"
    ax.set_title(text.strip())
    return _save(fig, path)


def plot_training_curves(path: str | Path, rows: list[dict[str, Any]], title: str = "") -> Path:
    """rows of metrics.jsonl -> PNG: train/val reconstruction loss and train perplexity by step."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    train = [r for r in rows if r.get("split") == "train"]
    val = [r for r in rows if r.get("split") == "val"]
    for rs, name in ((train, "train"), (val, "val")):
        pts = [(r["step"], r["recon_loss"]) for r in rs if "recon_loss" in r]
        if pts:
            axes[0].plot(*zip(*pts), label=name, marker="o" if name == "val" else None)
    axes[0].set_yscale("log")
    axes[0].set_xlabel("step")
    axes[0].set_ylabel("reconstruction loss")
    axes[0].legend()
    pts = [(r["step"], r["perplexity"]) for r in train if "perplexity" in r]
    if pts:
        axes[1].plot(*zip(*pts))
    axes[1].set_xlabel("step")
    axes[1].set_ylabel("batch codebook perplexity")
    if title:
        fig.suptitle(title)
    return _save(fig, path)

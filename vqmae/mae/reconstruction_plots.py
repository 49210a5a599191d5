"""Figures and sound of ``vqmae reconstruct``: original / masked / reconstructed faces and
spectrograms, the mask-ratio sweep, WAV files.

Shapes: faces ``(T, 3, s, s)`` floats in [-0.5, 0.5]; power spectrograms ``(T_a, F)``; token
masks ``(T, g, g)`` (visual) / ``(T_a, P)`` (audio), True = masked.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from vqmae.io import atomic_path


def pixel_mask(token_mask: torch.Tensor, image_size: int) -> torch.Tensor:
    """Visual token mask ``(T, g, g)`` -> pixel mask ``(T, s, s)``."""
    t, g, _ = token_mask.shape
    idx = torch.arange(image_size) * g // image_size
    return token_mask[:, idx][:, :, idx]


def bin_mask(token_mask: torch.Tensor, bins: int) -> torch.Tensor:
    """Audio token mask ``(T, P)`` -> spectrogram mask ``(T, F)`` (position p covers bins
    ``[p·F/P, (p+1)·F/P)``)."""
    p = token_mask.shape[1]
    idx = (torch.arange(bins) * p // bins).clamp_max(p - 1)
    return token_mask[:, idx]


def _db(power: torch.Tensor, ref_max: float, top_db: float = 80.0) -> np.ndarray:
    p = power.double().clamp_min(ref_max * 10 ** (-top_db / 10) + 1e-30)
    return (10 * torch.log10(p)).numpy()


def plot_reconstruction(path: Path, window: dict[str, Any], rec: dict[str, Any], decoded: dict[str, torch.Tensor],
                        *, frames: int, title: str, sample_rate: float | None = None,
                        frames_per_second: float | None = None) -> Path:
    """Rows: original / masked (grey = masked patches) / reconstructed (visible codes kept, masked
    ones predicted, decoded by the tokenizer) faces; then the three spectrograms."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    has_v, has_a = "visual" in window, "audio" in window
    n_rows = (3 if has_v else 0) + (3 if has_a else 0)
    idx = None
    cols = 1
    if has_v:
        t = window["visual"]["input"].shape[0]
        idx = np.unique(np.linspace(0, t - 1, num=min(frames, t)).round().astype(int))
        cols = len(idx)
    heights = ([1.0] * 3 if has_v else []) + ([1.2] * 3 if has_a else [])
    fig = plt.figure(figsize=(max(8.0, 1.5 * cols), 1.7 * sum(heights)))
    gs = fig.add_gridspec(n_rows, cols, height_ratios=heights, hspace=0.35, wspace=0.05)
    row = 0
    if has_v:
        x = window["visual"]["input"]
        s = x.shape[-1]
        pm = pixel_mask(rec["token_mask"]["visual"], s)
        masked = x.float().clone()
        masked.masked_fill_(pm[:, None].expand_as(masked), 0.0)  # mid grey where masked
        for name, src in (("original", x), ("masked", masked), ("reconstructed", decoded["visual"])):
            for j, i in enumerate(idx):
                ax = fig.add_subplot(gs[row, j])
                ax.imshow((src[i].float().clamp(-0.5, 0.5) + 0.5).permute(1, 2, 0).numpy())
                ax.set_xticks([])
                ax.set_yticks([])
                if j == 0:
                    ax.set_ylabel(name, fontsize=9)
                if row == 0:
                    ax.set_title(f"frame {i}", fontsize=8)
            row += 1
    if has_a:
        x = window["audio"]["input"].float()
        ref_max = float(x.max().clamp_min(1e-20))
        bm = bin_mask(rec["token_mask"]["audio"], x.shape[1])
        masked = torch.from_numpy(_db(x, ref_max))
        masked[bm] = float("nan")
        imgs = (("original", _db(x, ref_max)), ("masked", masked.numpy()),
                ("reconstructed", _db(decoded["audio"], ref_max)))
        vmax = float(imgs[0][1].max())
        for name, img in imgs:
            ax = fig.add_subplot(gs[row, :])
            cmap = plt.get_cmap("magma").with_extremes(bad="#7f7f7f")
            # frequency axis in Hz (bins 0..F-1 span 0..sample_rate/2), time in seconds when known
            t_end = img.shape[0] / frames_per_second if frames_per_second else img.shape[0]
            f_end = sample_rate / 2 if sample_rate else img.shape[1]
            ax.imshow(img.T, origin="lower", aspect="auto", vmin=vmax - 80, vmax=vmax, cmap=cmap,
                      extent=(0, t_end, 0, f_end))
            ax.set_ylabel(f"{name}\n{'Hz' if sample_rate else 'frequency bin'}", fontsize=9)
            if row < n_rows - 1:
                ax.set_xticks([])
            else:
                ax.set_xlabel("seconds" if frames_per_second else "audio frame")
            row += 1
    fig.suptitle(title, fontsize=10)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_sweep(path: Path, rows: list[dict[str, Any]]) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    r = [row["ratio"] for row in rows]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    if any("psnr_db" in row for row in rows):
        axes[0].plot(r, [row.get("psnr_db", np.nan) for row in rows], "o-", color="tab:orange", label="faces PSNR (dB)")
        axes[0].set_ylabel("PSNR (dB) ↑", color="tab:orange")
    if any("lsd_db" in row for row in rows):
        ax2 = axes[0].twinx()
        ax2.plot(r, [row.get("lsd_db", np.nan) for row in rows], "s-", color="tab:blue", label="audio LSD (dB)")
        ax2.set_ylabel("log-spectral distance (dB) ↓", color="tab:blue")
    for ax in fig.axes:
        ax.ticklabel_format(axis="y", useOffset=False)
    axes[0].set_xlabel("mask ratio")
    axes[0].set_title("reconstruction quality vs mask ratio")
    axes[0].grid(alpha=0.3)
    for m, color in (("audio", "tab:blue"), ("visual", "tab:orange")):
        if any(f"acc_{m}" in row for row in rows):
            axes[1].plot(r, [100 * row.get(f"acc_{m}", np.nan) for row in rows], "o-", color=color, label=m)
    axes[1].set(xlabel="mask ratio", ylabel="masked-token accuracy (%)", title="token prediction")
    axes[1].grid(alpha=0.3)
    axes[1].legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return path


def write_wav(path: Path, wave: torch.Tensor | np.ndarray, sample_rate: int) -> Path:
    import soundfile as sf

    w = np.asarray(wave, dtype=np.float32)
    peak = float(np.abs(w).max()) if w.size else 0.0
    if peak > 1.0:
        w = w / peak
    with atomic_path(path) as tmp:
        sf.write(str(tmp), w, sample_rate, format="WAV", subtype="PCM_16")
    return path

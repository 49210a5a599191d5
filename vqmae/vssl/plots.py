"""Pictures of a visually guided SSL run: generated-vs-real frame grids and loss curves."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from vqmae.io import atomic_path


def frame_grid(rows: Sequence[np.ndarray], gap: int = 2, scale: int = 2) -> np.ndarray:
    """Rows of frames (each uint8 ``(N, H, W, 3)``, same shape) -> one uint8 image
    ``(R·(scale·H + gap), N·(scale·W + gap), 3)`` (nearest-neighbour upscaling, white gaps)."""
    out_rows = []
    for frames in rows:
        f = np.repeat(np.repeat(np.asarray(frames), scale, axis=1), scale, axis=2)
        n, h, w, _ = f.shape
        row = np.full((h + gap, n * (w + gap), 3), 255, np.uint8)
        for i in range(n):
            row[:h, i * (w + gap): i * (w + gap) + w] = f[i]
        out_rows.append(row)
    return np.concatenate(out_rows, axis=0)


def save_png(path: str | Path, image: np.ndarray) -> Path:
    from PIL import Image

    path = Path(path)
    with atomic_path(path) as tmp:
        Image.fromarray(np.ascontiguousarray(image)).save(tmp, format="PNG")
    return path


def real_vs_generated_png(path: str | Path, pairs: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]],
                          scale: int = 2) -> Path:
    """``pairs`` of (still ``(H, W, 3)``, real ``(N, H, W, 3)``, generated ``(N, H, W, 3)``) uint8:
    per clip one row of real frames (the still first) and one of generated frames (a blank first)."""
    rows = []
    for still, real, gen in pairs:
        rows.append(np.concatenate([still[None], real]))
        rows.append(np.concatenate([np.full_like(still[None], 255), gen]))
    return save_png(path, frame_grid(rows, scale=scale))


def loss_curves_png(path: str | Path, rows: Sequence[dict], keys: Sequence[str]) -> Path | None:
    """Training (and validation, dashed) curves of ``keys`` from metrics.jsonl rows."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    present = [k for k in keys if any(k in r for r in rows)]
    if not present:
        return None
    fig, axes = plt.subplots(1, len(present), figsize=(4 * len(present), 3), squeeze=False)
    for ax, k in zip(axes[0], present):
        for split, style in (("train", "-"), ("val", "--")):
            pts = [(r["step"], r[k]) for r in rows if r.get("split", "train") == split and k in r]
            if pts:
                x, y = zip(*pts)
                ax.plot(x, y, style, label=split)
        silent = [(r["step"], r[f"silent_{k}"]) for r in rows if f"silent_{k}" in r]
        if silent:  # held-out error with the audio replaced by silence
            x, y = zip(*silent)
            ax.plot(x, y, ":", label="val, silent audio")
        ax.set_title(k)
        ax.set_xlabel("step")
        ax.legend()
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return path

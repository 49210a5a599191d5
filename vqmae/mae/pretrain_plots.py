"""Training curves of ``vqmae pretrain``: loss and masked-token accuracy per modality."""

from __future__ import annotations

from pathlib import Path

from vqmae.io import read_jsonl


def plot_curves(metrics_path: Path, out_png: Path, modalities: tuple[str, ...],
                baselines: dict[str, float]) -> Path | None:
    """Loss and masked-token accuracy per modality (train and held-out), baselines dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_jsonl(metrics_path) if metrics_path.is_file() else []
    if not rows:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    colors = {"audio": "tab:blue", "visual": "tab:orange"}
    for m in modalities:
        for split, style in (("train", "-"), ("val", "o-")):
            pts = [(r["step"], r[f"loss_{m}"], r[f"acc_{m}"]) for r in rows
                   if r.get("split") == split and f"loss_{m}" in r]
            if not pts:
                continue
            s, lo, ac = zip(*pts)
            axes[0].plot(s, lo, style, color=colors[m], label=f"{m} {split}", ms=3, alpha=0.9 if split == "val" else 0.6)
            axes[1].plot(s, [100 * a for a in ac], style, color=colors[m], label=f"{m} {split}", ms=3,
                         alpha=0.9 if split == "val" else 0.6)
        for key, ls in (("freq_acc", "--"), ("pos_freq_acc", ":")):
            if f"{key}_{m}" in baselines:
                axes[1].axhline(100 * baselines[f"{key}_{m}"], ls=ls, color=colors[m], lw=1,
                                label=f"{m} {'most frequent code' if key == 'freq_acc' else 'per-position mode'}")
    axes[0].set(xlabel="step", ylabel="cross-entropy (masked indices)", title="masked-token loss")
    axes[1].set(xlabel="step", ylabel="accuracy (%)", title="masked-token accuracy")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=110)
    plt.close(fig)
    return out_png

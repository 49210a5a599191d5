"""Mask a clip, predict the missing tokens with a pretrained VQ-MAE-AV, decode and plot.

    vqmae reconstruct --model RUN/pretrain/model --clip FILE.mp4 --mask-ratio 0.5 [--out DIR]
        [--audio-tokenizer DIR] [--visual-tokenizer DIR] [start=1.0] [sweep=[0,0.1,...,0.9]]

The tokenizer folders default to the ones recorded in the model folder (the token store's
provenance); their fingerprints must match the ones the model was pretrained on. The clip is
decoded like the token store's clips (its ``clip_config`` when the store is still there).

Outputs in ``--out`` (default ``reconstruct_<clip name>`` beside the model folder):
    reconstruction.png   original / masked / reconstructed face frames and spectrograms
    audio_original.wav, audio_tokenizer.wav, audio_reconstructed.wav
                         the input window, Griffin-Lim of the tokenizer's decode of the original
                         codes, Griffin-Lim of the decode of the predicted codes
    sweep.png, sweep.json  PSNR (faces) and log-spectral distance (audio) vs mask ratio,
                         masked-token accuracy per modality
    reconstruction.json  the metrics at --mask-ratio
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vqmae.checkpoint import ModelFolderError, load_pretrained, read_model_config
from vqmae.io import atomic_path, read_json, write_json
from vqmae.mae import VQMAEAV, MaskingConfig, make_masks
from vqmae.mae.patching import unpatchify
from vqmae.pipelines.common import UserError, stage_main

DESCRIPTION = __doc__ or ""


@dataclass
class ReconstructConfig:
    model: str = ""
    """Pretrained VQ-MAE-AV folder (``vqmae pretrain`` OUT/model)."""
    clip: str = ""
    """Media file (audio + video)."""
    out: str = ""
    mask_ratio: float = 0.5
    """Ratio of masked patches in every modality (``audio_ratio``/``visual_ratio`` override)."""
    audio_ratio: float | None = None
    visual_ratio: float | None = None
    audio_kind: str = "random"
    visual_kind: str = "random"
    seed: int = 0
    start: float = -1.0
    """Start of the window in seconds (-1 = the centre window)."""
    audio_tokenizer: str = ""
    visual_tokenizer: str = ""
    detect_faces: bool | None = None
    """Override the store's face handling (None = as the token store was made)."""
    sweep: list[float] = field(default_factory=lambda: [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9])
    """Mask ratios of the sweep plot (empty = no sweep)."""
    frames: int = 8
    """Face frames shown in the PNG."""
    griffin_lim_iters: int = 32


# ----------------------------------------------------------------------------------- loading


def load_setup(cfg: ReconstructConfig) -> tuple[VQMAEAV, dict[str, Any], dict[str, Any]]:
    """The MAE, its tokenizers (checked against the pretraining store's fingerprints) and the
    clip config of the store."""
    from vqmae.data.clips import ClipConfig
    from vqmae.tokenizers import load_tokenizer

    try:
        meta = read_model_config(cfg.model)
        mae = load_pretrained(cfg.model)
    except ModelFolderError as e:
        raise UserError(str(e)) from None
    if not isinstance(mae, VQMAEAV):
        raise UserError(f"{cfg.model}: holds a '{meta['architecture']}' model, not a VQ-MAE-AV")
    store = meta.get("token_store", {})
    prov = store.get("provenance", {})
    tokenizers = {}
    for m in mae.modalities:
        folder = getattr(cfg, f"{m}_tokenizer") or prov.get(m, {}).get("tokenizer_dir", "")
        if not folder:
            raise UserError(f"{cfg.model}: no {m} tokenizer folder recorded; pass --{m}-tokenizer DIR")
        if not Path(folder).is_dir():
            raise UserError(f"{m} tokenizer folder not found: {folder} (pass --{m}-tokenizer DIR)")
        tok = load_tokenizer(folder)
        want = prov.get(m, {}).get("fingerprint")
        if want and tok.fingerprint() != want:
            raise UserError(
                f"{folder}: {m} tokenizer {tok.fingerprint()[:16]}… is not the one the model was pretrained "
                f"with ({want[:16]}…); pass the tokenizer that made the pretraining token store")
        spec = mae.specs[m]
        if tuple(tok.token_shape) != spec.token_shape or tok.codebook_size != spec.codebook_size:
            raise UserError(f"{folder}: {m} tokenizer makes {tuple(tok.token_shape)} codes of "
                            f"{tok.codebook_size}; the model expects {spec.token_shape} of {spec.codebook_size}")
        tokenizers[m] = tok.eval()
    clip_cfg: dict[str, Any] = {}
    store_json = Path(store.get("path", "")) / "store.json" if store.get("path") else None
    if store_json is not None and store_json.is_file():
        clip_cfg = dict(read_json(store_json).get("clip_config") or {})
    clip_cfg = {k: v for k, v in clip_cfg.items() if k in ClipConfig.__dataclass_fields__}
    if cfg.detect_faces is not None:
        clip_cfg["detect_faces"] = cfg.detect_faces
    if "visual" in tokenizers:
        clip_cfg.setdefault("face_size", int(tokenizers["visual"].config.image_size))
    return mae, tokenizers, clip_cfg


def clip_inputs(path: str, tokenizers: dict[str, Any], clip_cfg: dict[str, Any]) -> dict[str, Any]:
    """Decode the clip: per modality the tokenizer input (``prepare``) and its codes."""
    from vqmae.data.clips import ClipConfig, load_aligned_clip
    from vqmae.data.media import MediaError

    try:
        clip = load_aligned_clip(path, ClipConfig(**clip_cfg))
    except (MediaError, FileNotFoundError) as e:
        raise UserError(str(e)) from None
    out: dict[str, Any] = {"clip": clip}
    with torch.no_grad():
        for m, tok in tokenizers.items():
            x = tok.prepare(clip.audio if m == "audio" else clip.faces)
            out[m] = {"input": x, "codes": tok.encode(x)}
    return out


def take_window(x: torch.Tensor, start: int, frames: int) -> torch.Tensor:
    """Frames ``[start, start + frames)``; a shorter clip is looped from its start (the token
    store's ``short="loop"`` rule)."""
    n = x.shape[0]
    if n >= start + frames:
        return x[start:start + frames]
    pos = (torch.arange(frames) + start) % max(1, n)
    return x[pos]


def window_of(inputs: dict[str, Any], mae: VQMAEAV, start_seconds: float) -> tuple[dict[str, Any], float]:
    """Cut the model's window out of every modality (aligned in seconds)."""
    specs = mae.specs
    durations = [inputs[m]["codes"].shape[0] / specs[m].fps for m in specs]
    window = specs[next(iter(specs))].frames / specs[next(iter(specs))].fps
    clip_s = min(durations)
    start = max(0.0, (clip_s - window) / 2) if start_seconds < 0 else min(start_seconds, max(0.0, clip_s - window))
    # snap to the common frame grid (1/25 s at the paper rates)
    grid = min(s.fps for s in specs.values())
    start = round(start * grid) / grid
    out = {}
    for m, s in specs.items():
        f0 = int(round(start * s.fps))
        out[m] = {"codes": take_window(inputs[m]["codes"], f0, s.frames),
                  "input": take_window(inputs[m]["input"], f0, s.frames)}
    return out, start


# ----------------------------------------------------------------------------- reconstruction


@torch.no_grad()
def reconstruct(mae: VQMAEAV, codes: dict[str, torch.Tensor], ratios: dict[str, float], seed: int = 0,
                kinds: dict[str, str] | None = None) -> dict[str, Any]:
    """Mask one window (``codes[m]`` ``(T_m, *S_m)``), predict: predicted codes, token-level
    masks (1 = masked) and the masked-token accuracy per modality."""
    kinds = kinds or {}
    masking = MaskingConfig(ratio_mode="fixed", min_keep=1, min_masked=0,
                            **{f"{m}_ratio": r for m, r in ratios.items()},
                            **{f"{m}_kind": k for m, k in kinds.items()})
    device = next(mae.parameters()).device
    masks = make_masks(mae.mask_grids(), 1, masking, torch.Generator().manual_seed(seed))
    masks = {m: v.to(device) for m, v in masks.items()}
    tokens = {m: codes[m][None].to(device) for m in mae.modalities}
    pred = mae.predict(tokens, masks)
    out: dict[str, Any] = {"pred": {}, "token_mask": {}, "acc": {}}
    for m, spec in mae.specs.items():
        mask = masks[m].mask[:, :, None].expand(-1, -1, spec.indices)
        token_mask = unpatchify(mask, spec.patch, spec.grid)[0].cpu()
        out["pred"][m] = pred[m][0].cpu()
        out["token_mask"][m] = token_mask
        n = int(token_mask.sum())
        out["acc"][m] = float((out["pred"][m] == codes[m].cpu())[token_mask].float().mean()) if n else float("nan")
    return out


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


def score(tokenizers: dict[str, Any], window: dict[str, Any], pred: dict[str, torch.Tensor]) -> dict[str, Any]:
    """Decode predicted codes; PSNR of faces / log-spectral distance of audio vs the input."""
    from vqmae.tokenizers.metrics import log_spectral_distance, psnr

    res: dict[str, Any] = {"decoded": {}}
    with torch.no_grad():
        for m, tok in tokenizers.items():
            dec = tok.decode(pred[m]).float()
            res["decoded"][m] = dec
            x = window[m]["input"].float()
            if m == "visual":
                res["psnr_db"] = psnr(x.clamp(-0.5, 0.5), dec.clamp(-0.5, 0.5))
            else:
                res["lsd_db"] = log_spectral_distance(x, dec)
    return res


# ----------------------------------------------------------------------------------- outputs


def _db(power: torch.Tensor, ref_max: float, top_db: float = 80.0) -> np.ndarray:
    p = power.double().clamp_min(ref_max * 10 ** (-top_db / 10) + 1e-30)
    return (10 * torch.log10(p)).numpy()


def plot_reconstruction(path: Path, window: dict[str, Any], rec: dict[str, Any], decoded: dict[str, torch.Tensor],
                        *, frames: int, title: str) -> Path:
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
            ax.imshow(img.T, origin="lower", aspect="auto", vmin=vmax - 80, vmax=vmax, cmap=cmap)
            ax.set_ylabel(name, fontsize=9)
            ax.set_yticks([])
            if row < n_rows - 1:
                ax.set_xticks([])
            else:
                ax.set_xlabel("audio frame")
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


# -------------------------------------------------------------------------------------- run


def run(cfg: ReconstructConfig) -> dict[str, Any]:
    if not cfg.model or not cfg.clip:
        raise UserError("--model DIR and --clip FILE are required")
    if not Path(cfg.clip).is_file():
        raise UserError(f"clip not found: {cfg.clip}")
    mae, tokenizers, clip_cfg = load_setup(cfg)
    mae.eval()
    out_dir = Path(cfg.out or Path(cfg.model).parent / f"reconstruct_{Path(cfg.clip).stem}")
    out_dir.mkdir(parents=True, exist_ok=True)
    inputs = clip_inputs(cfg.clip, tokenizers, clip_cfg)
    window, start = window_of(inputs, mae, cfg.start)
    codes = {m: window[m]["codes"] for m in mae.modalities}
    kinds = {m: getattr(cfg, f"{m}_kind") for m in mae.modalities}

    def ratios(r: float) -> dict[str, float]:
        return {m: (getattr(cfg, f"{m}_ratio") if getattr(cfg, f"{m}_ratio") is not None else r)
                for m in mae.modalities}

    rec = reconstruct(mae, codes, ratios(cfg.mask_ratio), cfg.seed, kinds)
    scored = score(tokenizers, window, rec["pred"])
    tok_only = score(tokenizers, window, codes)
    result: dict[str, Any] = {"clip": str(cfg.clip), "start_seconds": start, "ratios": ratios(cfg.mask_ratio),
                              "masked_token_accuracy": rec["acc"]}
    for k in ("psnr_db", "lsd_db"):
        if k in scored:
            result[k] = scored[k]
            result[f"tokenizer_only_{k}"] = tok_only[k]
    title = (f"{Path(cfg.clip).name}  start {start:.2f} s, mask "
             + ", ".join(f"{m} {r:.0%}" for m, r in result["ratios"].items())
             + "".join(f" | {m} token acc {100 * a:.1f} %" for m, a in rec["acc"].items()))
    plot_reconstruction(out_dir / "reconstruction.png", window, rec, scored["decoded"], frames=cfg.frames,
                        title=title)
    if "audio" in tokenizers:
        from vqmae.tokenizers.spectrogram import griffin_lim

        tok = tokenizers["audio"]
        acfg = tok.config
        sr = int(tok.sample_rate)
        hop = acfg.hop_length
        clip = inputs["clip"]
        f0 = int(round(start * mae.specs["audio"].fps))
        n = mae.specs["audio"].frames * hop
        write_wav(out_dir / "audio_original.wav", take_window(torch.from_numpy(clip.audio), f0 * hop, n), sr)
        for name, power in (("tokenizer", tok_only["decoded"]["audio"]), ("reconstructed", scored["decoded"]["audio"])):
            wave = griffin_lim(power, acfg.n_fft, hop, acfg.win_length or None, n_iter=cfg.griffin_lim_iters)
            write_wav(out_dir / f"audio_{name}.wav", wave, sr)
    if cfg.sweep:
        rows = []
        for r in cfg.sweep:
            rr = reconstruct(mae, codes, ratios(float(r)), cfg.seed, kinds)
            sc = score(tokenizers, window, rr["pred"])
            row = {"ratio": float(r), **{f"acc_{m}": a for m, a in rr["acc"].items()}}
            row.update({k: sc[k] for k in ("psnr_db", "lsd_db") if k in sc})
            rows.append(row)
        write_json(out_dir / "sweep.json", rows)
        plot_sweep(out_dir / "sweep.png", rows)
        result["sweep"] = rows
    write_json(out_dir / "reconstruction.json", result)
    print(f"reconstruction written to {out_dir}", file=sys.stderr)
    return result


def main(argv: list[str] | None = None) -> int:
    return stage_main("reconstruct", DESCRIPTION, ReconstructConfig, lambda c: (run(c), 0)[1], argv)


if __name__ == "__main__":
    raise SystemExit(main())

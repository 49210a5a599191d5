"""Masked reconstruction of one clip with a pretrained VQ-MAE-AV: the job of ``vqmae reconstruct``.

    mae, tokenizers, clip_cfg = load_setup(ReconstructConfig(model="RUN/pretrain/model", clip="a.mp4"))
    inputs = clip_inputs("a.mp4", tokenizers, clip_cfg)      # {m: {"input": (T, ...), "codes": (T, *S)}}
    window, start = window_of(inputs, mae, -1.0)              # the model's window, aligned in seconds
    rec = reconstruct(mae, {m: window[m]["codes"] for m in mae.modalities}, {"audio": 0.5, "visual": 0.5})

The clip goes through the clip path of every stage (:func:`vqmae.data.clips.load_clip` with the
pretraining store's ``clip_config``, :func:`vqmae.data.clips.resolve_clip_config`) and its checks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from vqmae.checkpoint import ModelFolderError, load_pretrained, read_model_config
from vqmae.config import ConfigError, setting
from vqmae.data.clips import ClipConfig, load_clip, resolve_clip_config
from vqmae.data.encoding import load_tokenizer_folders
from vqmae.io import read_json, write_json
from vqmae.mae import VQMAEAV, MaskingConfig, make_masks
from vqmae.mae.patching import unpatchify
from vqmae.mae.reconstruction_plots import plot_reconstruction, plot_sweep, write_wav


@dataclass
class ReconstructConfig:
    model: str = ""
    """Pretrained VQ-MAE-AV folder (``vqmae pretrain`` OUT/model)."""
    clip: str = ""
    """Media file (audio + video)."""
    out: str = ""
    """Output folder (default reconstruct_<clip name> beside the model folder)."""
    mask_ratio: float = setting(0.5, ge=0, le=1, help="Ratio of masked patches in every modality "
                                "(audio_ratio / visual_ratio override).")
    audio_ratio: float | None = setting(None, ge=0, le=1, help="Mask ratio of the audio tokens (None = mask_ratio).")
    visual_ratio: float | None = setting(None, ge=0, le=1, help="Mask ratio of the visual tokens (None = mask_ratio).")
    audio_kind: str = "random"
    visual_kind: str = "random"
    seed: int = 0
    start: float = setting(-1.0, ge=-1, help="Start of the window in seconds (-1 = the centre window).")
    audio_tokenizer: str = ""
    visual_tokenizer: str = ""
    detect_faces: bool | None = None
    """Override the store's face handling (None = as the token store was made)."""
    sweep: list[float] = field(default_factory=lambda: [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9])
    """Mask ratios of the sweep plot (empty = no sweep)."""
    frames: int = setting(8, ge=1, help="Face frames shown in the PNG.")
    griffin_lim_iters: int = setting(32, ge=1, help="Griffin-Lim iterations of the WAV files.")


def load_setup(cfg: ReconstructConfig) -> tuple[VQMAEAV, dict[str, Any], ClipConfig]:
    """The MAE, its tokenizers (checked against the pretraining store's fingerprints and the
    model's token grids) and the clip config of the store."""
    try:
        meta = read_model_config(cfg.model)
        mae = load_pretrained(cfg.model)
    except ModelFolderError as e:
        raise ConfigError(f"model: {e}") from None
    if not isinstance(mae, VQMAEAV):
        raise ConfigError(f"model: {cfg.model} holds a '{meta['architecture']}' model, not a VQ-MAE-AV")
    store = meta.get("token_store", {})
    prov = store.get("provenance", {})
    from vqmae.hub import resolve_tokenizer_folder, tokenizer_records

    recs = tokenizer_records(meta)  # found from any directory: inside the model, hub id, old paths
    dirs = {}
    for m in mae.modalities:
        if getattr(cfg, f"{m}_tokenizer"):
            dirs[m] = getattr(cfg, f"{m}_tokenizer")
            continue
        if not any((recs.get(m) or {}).get(k) for k in ("dir", "bundled", "hub_id")):
            raise ConfigError(f"{m}_tokenizer: {cfg.model} records no {m} tokenizer folder; pass --{m}-tokenizer DIR")
        try:
            dirs[m] = str(resolve_tokenizer_folder(mae.pretrained_path, m, recs[m]))
        except ModelFolderError as e:
            raise ConfigError(f"{m}_tokenizer: {e}") from None
    tokenizers = load_tokenizer_folders(dirs, {m: prov.get(m, {}).get("fingerprint") for m in dirs},
                                        what="the model was pretrained with; pass the tokenizer "
                                             "that made the pretraining token store")
    for m, tok in tokenizers.items():
        spec = mae.specs[m]
        if tuple(tok.token_shape) != spec.token_shape or tok.codebook_size != spec.codebook_size:
            raise ConfigError(f"{m}_tokenizer: {dirs[m]} makes {tuple(tok.token_shape)} codes of "
                              f"{tok.codebook_size}; the model expects {spec.token_shape} of {spec.codebook_size}")
    recorded: dict[str, Any] = {}
    store_json = Path(store.get("path", "")) / "store.json" if store.get("path") else None
    if store_json is not None and store_json.is_file():
        recorded = dict(read_json(store_json).get("clip_config") or {})
    return mae, tokenizers, resolve_clip_config(recorded, tokenizers, detect_faces=cfg.detect_faces)


def clip_inputs(path: str, tokenizers: dict[str, Any], clip_cfg: ClipConfig) -> dict[str, Any]:
    """Decode and check the clip: per modality the tokenizer input (``prepare``) and its codes."""
    clip = load_clip(path, clip_cfg)
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


def out_folder(cfg: ReconstructConfig) -> Path:
    """``--out``, default ``reconstruct_<clip name>`` beside the model folder."""
    return Path(cfg.out or Path(cfg.model).parent / f"reconstruct_{Path(cfg.clip).stem}")


def run_reconstruction(cfg: ReconstructConfig, out_dir: Path) -> dict[str, Any]:
    """The whole job: reconstruction.png, audio_*.wav, sweep.{png,json} and reconstruction.json
    in ``out_dir`` (see ``vqmae reconstruct --help``); returns reconstruction.json's content."""
    mae, tokenizers, clip_cfg = load_setup(cfg)
    mae.eval()
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
                        title=title, sample_rate=getattr(tokenizers.get("audio"), "sample_rate", None),
                        frames_per_second=mae.specs["audio"].fps if "audio" in mae.specs else None)
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
    return result



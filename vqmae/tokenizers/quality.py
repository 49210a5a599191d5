"""What a trained tokenizer is worth: held-out reconstruction quality, codebook usage, plots,
example PNGs/WAVs, and the per-epoch ``eval_fn`` of its training (``vqmae train-tokenizer``).

Audio: log-spectral distance (dB) between input and decoded power frames; visual: PSNR (dB) and
SSIM of the decoded face crops; both: codes used and perplexity of the code histogram.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

import torch

from vqmae.data.frames import FrameSet, evenly
from vqmae.io import atomic_path, read_jsonl, write_json
from vqmae.tokenizers.base import Tokenizer
from vqmae.tokenizers.metrics import (
    code_histogram,
    codebook_usage,
    log_spectral_distance,
    lsd_per_frame,
    psnr,
    ssim,
)

log = logging.getLogger("vqmae")


@torch.no_grad()
def measure_quality(model: Tokenizer, frames: FrameSet, max_clips: int = 0,
                    with_ssim: bool = True) -> dict[str, Any]:
    """Clip by clip: tokenize, decode, compare. Audio: log-spectral distance (dB, mean over clips);
    visual: PSNR (dB) and SSIM (mean over frames). Plus codebook usage of all the codes."""
    clips = evenly(range(len(frames.clips)), max_clips)
    hist = torch.zeros(model.codebook_size, dtype=torch.long)
    lsd, psnrs, ssims, weights = [], [], [], []
    n_frames = 0
    for i in clips:
        x = frames.prepared(i)
        codes = model.encode(x)
        hist += code_histogram(codes, model.codebook_size)
        y = model.decode(codes)
        n_frames += x.shape[0]
        if frames.modality == "audio":
            lsd.append(log_spectral_distance(x, y))
        else:
            psnrs.append(psnr(x, y))
            ssims.append(ssim(x, y) if with_ssim else float("nan"))
            weights.append(x.shape[0])
    out: dict[str, Any] = {"clips": len(clips), "frames": n_frames,
                           "speakers": sorted({frames.clips[i].speaker for i in clips})}
    if frames.modality == "audio":
        out["lsd_db"] = float(sum(lsd) / max(1, len(lsd)))
    else:
        w = torch.tensor(weights, dtype=torch.float64)
        out["psnr_db"] = float((torch.tensor(psnrs, dtype=torch.float64) * w).sum() / w.sum())
        if with_ssim:
            out["ssim"] = float((torch.tensor(ssims, dtype=torch.float64) * w).sum() / w.sum())
    out.update(codebook_usage(hist, model.codebook_size, counts=True))
    out["histogram"] = hist
    return out


def example_clips(frames: FrameSet, n: int, labels: dict[str, str | None] | None = None) -> list[int]:
    """Which held-out clips to draw: one per emotion (``labels``: clip id -> name), the k-th
    emotion from the k-th speaker in turn where it has one, then more up to ``n``; without
    labels the first ``n``; ``n`` = 0: none."""
    clips = frames.clips
    if n <= 0 or not labels:
        return list(range(min(n, len(clips))))
    speakers = list(dict.fromkeys(c.speaker for c in clips))
    emotions = list(dict.fromkeys(labels[c.id] for c in clips if labels.get(c.id) is not None))
    chosen = []
    for k, name in enumerate(emotions):
        cands = [i for i, c in enumerate(clips) if labels.get(c.id) == name]
        chosen.append(next((i for i in cands if clips[i].speaker == speakers[k % len(speakers)]), cands[0]))
    rest = [i for i in range(len(clips)) if i not in chosen]
    return (chosen + rest)[:max(n, len(chosen))]


def write_examples(model: Tokenizer, frames: FrameSet, out_dir: Path, n: int,
                   griffin_lim_iters: int, labels: dict[str, str | None] | None = None) -> list[str]:
    """PNGs (and WAVs for audio) of held-out clips: one per emotion (``labels``: clip id -> name)."""
    from vqmae.tokenizers import plots

    written = []
    for i in example_clips(frames, n, labels):
        span = frames.clips[i]
        x = frames.prepared(i)
        y = model.decode(model.encode(x))
        safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in span.id)
        if frames.modality == "audio":
            cfg = model.config
            p = plots.plot_spectrograms(out_dir / "plots" / f"spectrogram_{safe}.png", x, y,
                                        frames_per_second=model.frames_per_second,
                                        sample_rate=cfg.sample_rate, title=_titled(span, labels),
                                        lsd_db=log_spectral_distance(x, y))
            written.append(str(p))
            written += _write_wavs(out_dir / "examples", safe, x, y, span.wave, cfg, griffin_lim_iters)
        else:
            p = plots.plot_frame_grid(out_dir / "plots" / f"frames_{safe}.png", x, y,
                                      title=f"{_titled(span, labels)}  PSNR {psnr(x, y):.2f} dB, SSIM {ssim(x, y):.3f}")
            written.append(str(p))
    return written


def _titled(span, labels: dict[str, str | None] | None) -> str:
    name = (labels or {}).get(span.id)
    return f"{span.id} ({name}, speaker {span.speaker})" if name else span.id


def _write_wavs(folder: Path, name: str, x: torch.Tensor, y: torch.Tensor, wave, cfg, iters: int) -> list[str]:
    import soundfile as sf

    from vqmae.tokenizers.spectrogram import griffin_lim

    kw = dict(n_fft=cfg.n_fft, hop_length=cfg.hop_length, win_length=cfg.win_length or None, n_iter=iters)
    items = {"griffinlim_original": griffin_lim(x, **kw), "reconstruction": griffin_lim(y, **kw)}
    if wave is not None:
        items = {"original": torch.as_tensor(wave), **items}
    paths = []
    for suffix, w in items.items():
        w = w.float()
        peak = float(w.abs().max())
        if peak > 1.0:
            w = w / peak
        path = folder / f"{name}_{suffix}.wav"
        with atomic_path(path) as tmp:
            sf.write(str(tmp), w.numpy(), cfg.sample_rate, format="WAV", subtype="PCM_16")
        paths.append(str(path))
    return paths


def _hash(tensors: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for k in sorted(tensors):
        h.update(k.encode())
        h.update(tensors[k].detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()



def make_eval_fn(val_ds, modality: str, n_frames: int):
    """eval_fn(model, epoch) on a fixed, evenly spread subset of held-out frames, in batches
    (frames are built batch by batch: a visual subset could be large as float32)."""
    idx = evenly(range(len(val_ds)), n_frames)
    batch = 512 if modality == "audio" else 64
    floor = None
    if modality == "audio":  # LSD floor: 80 dB under the subset's peak (one floor for all frames)
        peak = max(float(val_ds.__getitems__(idx[s:s + batch]).max()) for s in range(0, len(idx), batch))
        floor = max(peak, 1e-20) * 1e-8

    def eval_fn(model: Tokenizer, epoch: int) -> dict[str, float]:
        device = next(model.parameters()).device
        hist = torch.zeros(model.codebook_size, dtype=torch.long)
        loss_sum = quality_sum = 0.0
        for s in range(0, len(idx), batch):
            x = val_ds.__getitems__(idx[s:s + batch]).to(device)
            out = model(x)
            k = x.shape[0]
            loss_sum += float(out["recon_loss"]) * k
            hist += code_histogram(out["indices"], model.codebook_size)
            recon = out["recon"].float()
            if modality == "audio":
                target = x[:, model.config.context]
                quality_sum += float(lsd_per_frame(target, recon, floor).sum())
            else:
                quality_sum += psnr(x, recon) * k
        usage = codebook_usage(hist, model.codebook_size, counts=True)
        metrics = {"recon_loss": loss_sum / len(idx), "codes_used_pct": usage["codes_used_pct"],
                   "perplexity": usage["perplexity"]}
        metrics["lsd_db" if modality == "audio" else "psnr_db"] = quality_sum / len(idx)
        return metrics

    return eval_fn


def average_batchnorm_stats(model: torch.nn.Module) -> None:
    """BatchNorm running statistics: the mean over ranks (all ranks end identical).

    Under DDP every forward starts from rank 0's buffers (``broadcast_buffers``); only the last
    step's update differs between ranks. Averaging it is what one process would have computed
    from the combined batch (exactly for the mean)."""
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.track_running_stats:
            for buf in (m.running_mean, m.running_var):
                torch.distributed.all_reduce(buf)
                buf /= torch.distributed.get_world_size()


def ddp_check(acc, model: Tokenizer, out: Path) -> None:
    """Every rank hashes its codebook and weights; the main process records and compares them."""
    from accelerate.utils import gather_object

    state = model.state_dict()
    codebook = {k: v for k, v in state.items() if k.startswith("quantizer.")}
    row = {"rank": acc.process_index, "codebook_sha256": _hash(codebook), "state_sha256": _hash(state)}
    rows = gather_object([row])
    if acc.is_main_process:
        rows = sorted(rows, key=lambda r: r["rank"])
        same = len({r["codebook_sha256"] for r in rows}) == 1 and len({r["state_sha256"] for r in rows}) == 1
        write_json(out / "ddp_check.json", {"world": acc.num_processes, "identical": same, "ranks": rows})
        if not same:
            log.warning("ranks ended with different tokenizer states: %s", rows)


def summary_line(q: dict[str, Any], modality: str) -> str:
    parts = [f"LSD {q['lsd_db']:.2f} dB"] if modality == "audio" else \
        [f"PSNR {q['psnr_db']:.2f} dB", f"SSIM {q['ssim']:.3f}"]
    parts.append(f"{q['codes_used_pct']:.1f}% codes used, perplexity {q['perplexity']:.1f}")
    return ", ".join(parts)


def finish(cfg, model: Tokenizer, train_frames: FrameSet, val_frames: FrameSet,
           result, out: Path, timings: dict[str, float]) -> dict[str, Any]:
    """quality.json, the model folder, plots and examples of a finished run (main process)."""
    from vqmae.tokenizers import plots

    held = measure_quality(model, val_frames)
    seen = measure_quality(model, train_frames, cfg.quality_train_clips, with_ssim=False) \
        if cfg.quality_train_clips else None
    both = held["histogram"] + (seen["histogram"] if seen else 0)
    quality: dict[str, Any] = {
        "modality": cfg.modality, "preset": cfg.preset, "manifest": str(cfg.manifest),
        "codebook_size": model.codebook_size, "token_shape": list(model.token_shape),
        "frames_per_second": model.frames_per_second,
        "parameters": sum(p.numel() for p in model.parameters()),
        "steps": result.steps, "epochs": result.epochs_done,
        "held_out": {k: v for k, v in held.items() if k != "histogram"},
        "train": {k: v for k, v in seen.items() if k != "histogram"} if seen else None,
        "all": codebook_usage(both, model.codebook_size, counts=True),
        "timings": {k: round(v, 2) for k, v in timings.items()},
        "skipped_clips": train_frames.skipped + val_frames.skipped,
    }
    model_dir = model.save_pretrained(out / "model", metadata={"training": {
        "preset": cfg.preset, "manifest": str(cfg.manifest), "steps": result.steps,
        "held_out": quality["held_out"]}})
    quality["fingerprint"] = model.fingerprint()
    quality["model"] = str(model_dir)
    write_json(out / "quality.json", quality)

    plots.plot_codebook_usage(out / "plots" / "codebook_usage.png", both,
                              title=f"{cfg.modality} tokenizer, train + held-out codes",
                              stats=quality["all"])
    if (out / "metrics.jsonl").is_file():
        plots.plot_training_curves(out / "plots" / "training_curves.png", read_jsonl(out / "metrics.jsonl"),
                                   title=f"{cfg.modality} tokenizer ({cfg.preset})")
    from vqmae.data.manifest import read_manifest

    labels = {r.id: r.label_name for r in read_manifest(cfg.manifest).records}
    write_examples(model, val_frames, out, cfg.examples, cfg.griffin_lim_iters, labels)
    return quality



"""Stage one: train the audio or the visual VQ-VAE tokenizer on a manifest.

    vqmae train-tokenizer --modality audio --manifest data/manifest.jsonl --out runs/tok_audio \
        [--preset paper|base|demo|tiny] [train.epochs=20] [audio.quantizer.codebook_size=512] ...
    accelerate launch [--multi_gpu --num_processes N] -m vqmae.pipelines.train_tokenizer ...

The preset picks the model config (``audio`` / ``visual`` section) and the training defaults
(``train`` section); every key can still be overridden. Clips are decoded once and held in
memory (``vqmae.data.frames``); whole speakers are held out for validation.

Outputs in ``--out``:
    config.yaml, metrics.jsonl, train.log, tb/, checkpoints/   (the run folder; --resume continues)
    model/                    the tokenizer (config.json + model.safetensors; load_tokenizer)
    quality.json              held-out-speaker reconstruction quality + codebook usage
    plots/*.png               spectrograms or frame grids, codebook usage, training curves
    examples/*.wav            (audio) original, Griffin-Lim of the original, Griffin-Lim of the
                              reconstruction
    ddp_check.json            (with 2+ processes) per-rank hashes of codebook and weights
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from vqmae.config import ConfigError, config_to_dict, parse_config
from vqmae.data.frames import (
    FrameDataConfig,
    FrameSet,
    collate_frames,
    evenly,
    frame_dataset,
    load_frames,
    split_speakers,
)
from vqmae.data.manifest import read_manifest
from vqmae.io import atomic_path, read_jsonl, write_json
from vqmae.pipelines.common import UserError, stage_main
from vqmae.runs import Run
from vqmae.tokenizers import (
    AUDIO_PRESETS,
    AudioVQVAEConfig,
    Tokenizer,
    VisualVQVAEConfig,
    audio_preset,
    build_tokenizer,
    visual_preset,
)
from vqmae.tokenizers.metrics import (
    code_histogram,
    codebook_usage,
    log_spectral_distance,
    lsd_per_frame,
    psnr,
    ssim,
)
from vqmae.training import StepInfo, TrainConfig, fit, make_accelerator, seed_everything

PRESETS = tuple(AUDIO_PRESETS)

_COMMON_TRAIN = dict(optimizer="adam", betas=(0.9, 0.999), weight_decay=0.0, lr=1e-3,
                     schedule="cosine", log_every=20, tensorboard=True)
TRAIN_PRESETS: dict[tuple[str, str], dict[str, Any]] = {
    # the published recipe: Adam 1e-3, 1024 audio frames / 64 face frames per batch
    ("audio", "paper"): dict(_COMMON_TRAIN, batch_size=1024, epochs=30, schedule="constant"),
    ("visual", "paper"): dict(_COMMON_TRAIN, batch_size=64, epochs=30, schedule="constant"),
    ("audio", "base"): dict(_COMMON_TRAIN, batch_size=512, epochs=30, lr=2e-3, warmup_steps=100),
    ("visual", "base"): dict(_COMMON_TRAIN, batch_size=64, epochs=30, warmup_steps=100),
    # sized for the CPU demo (2 cores, ~2 minutes each on the synthetic corpus, frame_stride 2)
    ("audio", "demo"): dict(_COMMON_TRAIN, batch_size=256, epochs=3, lr=2e-3, warmup_steps=20),
    ("visual", "demo"): dict(_COMMON_TRAIN, batch_size=32, epochs=2, lr=2e-3, warmup_steps=20),
    ("audio", "tiny"): dict(_COMMON_TRAIN, batch_size=64, epochs=2, lr=3e-3, log_every=5,
                            tensorboard=False),
    ("visual", "tiny"): dict(_COMMON_TRAIN, batch_size=16, epochs=2, lr=3e-3, log_every=5,
                             tensorboard=False),
}
DATA_PRESETS: dict[tuple[str, str], dict[str, Any]] = {
    ("audio", "demo"): dict(frame_stride=2),
    ("visual", "demo"): dict(frame_stride=2),
}


@dataclass
class TrainTokenizerConfig:
    """Settings of ``vqmae train-tokenizer`` (the preset fills ``audio``/``visual`` and ``train``)."""

    modality: Literal["audio", "visual"] = "audio"
    manifest: str = ""
    """manifest.jsonl (or its folder) written by ``vqmae prepare`` / ``vqmae synth``."""
    out: str = ""
    """Run folder (created)."""
    preset: str = "base"
    """paper | base | demo | tiny: model + training defaults."""
    resume: bool = False
    """Continue from the newest checkpoint in --out."""
    audio: AudioVQVAEConfig = field(default_factory=lambda: audio_preset("base"))
    visual: VisualVQVAEConfig = field(default_factory=lambda: visual_preset("base"))
    data: FrameDataConfig = field(default_factory=FrameDataConfig)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(**TRAIN_PRESETS[("audio", "base")]))
    eval_frames: int = 4096
    """Held-out frames scored after each epoch (0 = all)."""
    quality_train_clips: int = 32
    """Training clips also scored at the end (codebook usage on seen data; 0 = none)."""
    examples: int = 3
    """Held-out clips drawn as PNGs (and written as WAV for audio)."""
    griffin_lim_iters: int = 32
    threads: int = 0
    """torch threads per process on CPU; 0 = the CPUs per process (on an idle 2-core machine 2
    threads trained the demo visual tokenizer 1.4× faster than 1). More threads than free cores
    makes OpenMP spin: on a machine busy with other jobs set 1 (2 threads were 3.5× slower there)."""


def preset_base(modality: str, preset: str) -> dict[str, Any]:
    """The config layer a preset puts under YAML files and command-line overrides."""
    if preset not in PRESETS:
        raise ConfigError(f"preset: unknown preset '{preset}' (known: {', '.join(PRESETS)})")
    return {
        "audio": config_to_dict(audio_preset(preset)),
        "visual": config_to_dict(visual_preset(preset)),
        "train": dict(TRAIN_PRESETS[(modality, preset)]),
        "data": dict(DATA_PRESETS.get((modality, preset), {})),
    }


def resolve_config(argv: list[str]) -> TrainTokenizerConfig:
    """Parse argv in two passes: first to learn modality + preset, then with the preset as base."""
    first = parse_config(TrainTokenizerConfig, argv)
    return parse_config(TrainTokenizerConfig, argv, base=preset_base(first.modality, first.preset))


# ----------------------------------------------------------------------------------- loop


def loss_fn(model: torch.nn.Module, batch: torch.Tensor, info: StepInfo):
    """Reconstruction + commitment loss (batch means); batch codebook usage as metrics."""
    out = model(batch)
    tok = model.module if hasattr(model, "module") else model
    usage = codebook_usage(out["indices"].detach(), tok.codebook_size)
    return out["loss"], {"recon_loss": float(out["recon_loss"].detach()),
                         "commit_loss": float(out["commit_loss"].detach()),
                         "perplexity": usage["perplexity"], "codes_used_pct": usage["codes_used_pct"]}


# -------------------------------------------------------------------------------- quality


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


def write_examples(model: Tokenizer, frames: FrameSet, out_dir: Path, n: int,
                   griffin_lim_iters: int) -> list[str]:
    """PNGs (and WAVs for audio) of the first ``n`` held-out clips."""
    from vqmae.tokenizers import plots

    written = []
    for i in range(min(n, len(frames.clips))):
        span = frames.clips[i]
        x = frames.prepared(i)
        y = model.decode(model.encode(x))
        safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in span.id)
        if frames.modality == "audio":
            cfg = model.config
            p = plots.plot_spectrograms(out_dir / "plots" / f"spectrogram_{safe}.png", x, y,
                                        frames_per_second=model.frames_per_second,
                                        sample_rate=cfg.sample_rate, title=span.id,
                                        lsd_db=log_spectral_distance(x, y))
            written.append(str(p))
            written += _write_wavs(out_dir / "examples", safe, x, y, span.wave, cfg, griffin_lim_iters)
        else:
            p = plots.plot_frame_grid(out_dir / "plots" / f"frames_{safe}.png", x, y,
                                      title=f"{span.id}  PSNR {psnr(x, y):.2f} dB, SSIM {ssim(x, y):.3f}")
            written.append(str(p))
    return written


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


# ------------------------------------------------------------------------------------ run


def run(cfg: TrainTokenizerConfig) -> dict[str, Any]:
    """Train one tokenizer and write the run folder (see the module doc). Returns quality.json."""
    if not cfg.manifest:
        raise UserError("--manifest is required (manifest.jsonl from `vqmae prepare` or `vqmae synth`)")
    if not cfg.out:
        raise UserError("--out is required (the run folder)")
    try:
        manifest = read_manifest(cfg.manifest)
    except (FileNotFoundError, ValueError) as e:
        raise UserError(str(e)) from None
    if not manifest.records:
        raise UserError(f"{cfg.manifest}: the manifest has no clips")
    modality = cfg.modality
    model_cfg = cfg.audio if modality == "audio" else cfg.visual
    out = Path(cfg.out)
    t0 = time.time()

    acc = make_accelerator(cfg.train.mixed_precision, cfg.train.grad_accum)
    if acc.device.type == "cpu":
        per_process = max(1, (os.cpu_count() or 1) // acc.num_processes)
        torch.set_num_threads(cfg.threads or per_process)
    run_ = Run(out, cfg, is_main=acc.is_main_process, tensorboard=cfg.train.tensorboard)
    try:
        seed_everything(cfg.train.seed)
        model = build_tokenizer(modality, model_cfg)  # after the accelerator: codebook sync on
        if acc.num_processes > 1 and acc.device.type == "cuda":
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        train_recs, val_recs = split_speakers(manifest.records, cfg.data.val_speakers, cfg.data.seed)
        train_recs = evenly(train_recs, cfg.data.max_clips)
        val_recs = evenly(val_recs, cfg.data.max_val_clips)
        run_.info("train-tokenizer %s (preset %s): %d training clips, %d held-out clips of %d "
                  "speakers; %s parameters; %d torch thread(s)", modality, cfg.preset, len(train_recs),
                  len(val_recs), len({r.speaker for r in val_recs}),
                  f"{sum(p.numel() for p in model.parameters()):,}", torch.get_num_threads())
        train_frames = load_frames(manifest, train_recs, model, cfg.data)
        val_frames = load_frames(manifest, val_recs, model, cfg.data, keep_waves=modality == "audio")
        t_load = time.time() - t0
        run_.info("decoded %d training frames (%d clips skipped) and %d held-out frames in %.1f s",
                  len(train_frames), len(train_frames.skipped), len(val_frames), t_load)
        if modality == "audio":
            model.fit_normalization(train_frames.frames)  # log-input presets; a resume restores it
        dataset = frame_dataset(train_frames, model, stride=cfg.data.frame_stride)
        val_ds = frame_dataset(val_frames, model)
        eval_fn = _eval_fn(val_ds, modality, cfg.eval_frames)
        result = fit(model, dataset, loss_fn, cfg.train, run_, accelerator=acc,
                     collate_fn=collate_frames, eval_fn=eval_fn, resume=cfg.resume)
        model = result.model  # SyncBatchNorm (GPU only) keeps BatchNorm's state-dict keys
        t_train = time.time() - t0 - t_load
        model.eval()

        if acc.num_processes > 1:
            _average_batchnorm_stats(model)
            _ddp_check(acc, model, out)

        quality: dict[str, Any] = {}
        if acc.is_main_process:
            quality = _finish(cfg, model, train_frames, val_frames, result, out,
                              timings={"decode_s": t_load, "train_s": t_train})
            run_.info("quality (held-out speakers): %s", _summary(quality["held_out"], modality))
            run_.info("train-tokenizer done in %.1f s: %s", time.time() - t0, out / "model")
        acc.wait_for_everyone()
        return quality
    finally:
        run_.close()


def _eval_fn(val_ds, modality: str, n_frames: int):
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


def _average_batchnorm_stats(model: torch.nn.Module) -> None:
    """BatchNorm running statistics: the mean over ranks (all ranks end identical).

    Under DDP every forward starts from rank 0's buffers (``broadcast_buffers``); only the last
    step's update differs between ranks. Averaging it is what one process would have computed
    from the combined batch (exactly for the mean)."""
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.track_running_stats:
            for buf in (m.running_mean, m.running_var):
                torch.distributed.all_reduce(buf)
                buf /= torch.distributed.get_world_size()


def _ddp_check(acc, model: Tokenizer, out: Path) -> None:
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
            import logging

            logging.getLogger("vqmae").warning("ranks ended with different tokenizer states: %s", rows)


def _summary(q: dict[str, Any], modality: str) -> str:
    parts = [f"LSD {q['lsd_db']:.2f} dB"] if modality == "audio" else \
        [f"PSNR {q['psnr_db']:.2f} dB", f"SSIM {q['ssim']:.3f}"]
    parts.append(f"{q['codes_used_pct']:.1f}% codes used, perplexity {q['perplexity']:.1f}")
    return ", ".join(parts)


def _finish(cfg: TrainTokenizerConfig, model: Tokenizer, train_frames: FrameSet, val_frames: FrameSet,
            result, out: Path, timings: dict[str, float]) -> dict[str, Any]:
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
    write_examples(model, val_frames, out, cfg.examples, cfg.griffin_lim_iters)
    return quality


# ----------------------------------------------------------------------------------- main

DESCRIPTION = """Train the audio or visual VQ-VAE tokenizer (stage one) on a manifest.
Presets: paper (the published stacks), base (ours), demo (CPU demo size), tiny (tests).
--preset sets the audio.*, visual.*, train.* and data.* values (the defaults listed below are
the classes' own; the preset's are in docs/TOKENIZERS.md and the run's config.yaml).
Writes OUT/model (load_tokenizer), OUT/quality.json, OUT/plots/*.png, OUT/examples/*.wav."""


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    base = None
    if not any(a in ("-h", "--help") for a in argv):
        try:
            first = parse_config(TrainTokenizerConfig, argv)
            base = preset_base(first.modality, first.preset)
        except ConfigError as e:
            print(f"vqmae train-tokenizer: config error: {e}", file=sys.stderr)
            return 2
    return stage_main("train-tokenizer", DESCRIPTION, TrainTokenizerConfig, run, argv, base=base)


if __name__ == "__main__":
    raise SystemExit(main())

"""The training job of ``vqmae train-tokenizer``: one audio or visual VQ-VAE on a manifest.

    quality = train_tokenizer(cfg)     # cfg: TrainTokenizerConfig; writes the run folder cfg.out

Clips are decoded once into memory (:mod:`vqmae.data.frames`), whole speakers are held out for
validation, the loop is :func:`vqmae.training.fit` (reconstruction + commitment loss), and the
finished model is scored by :mod:`vqmae.tokenizers.quality`.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from vqmae.config import config_to_dict, setting
from vqmae.data.frames import (
    FrameDataConfig,
    collate_frames,
    evenly,
    frame_dataset,
    load_frames,
    split_speakers,
)
from vqmae.data.manifest import read_manifest
from vqmae.runs import Run, check_run_folder
from vqmae.tokenizers import (
    AudioVQVAEConfig,
    VisualVQVAEConfig,
    audio_preset,
    build_tokenizer,
    visual_preset,
)
from vqmae.tokenizers.metrics import codebook_usage
from vqmae.tokenizers.quality import (
    average_batchnorm_stats,
    ddp_check,
    finish,
    make_eval_fn,
    summary_line,
)
from vqmae.training import StepInfo, TrainConfig, fit, make_accelerator, seed_everything


class TokenizerTrainingError(ValueError):
    """A manifest or setting tokenizer training cannot use (a user error)."""


@dataclass(kw_only=True)
class TrainTokenizerConfig:
    """Settings of ``vqmae train-tokenizer`` (the preset fills ``audio``/``visual``, ``train`` and
    ``data``: vqmae/presets/train_tokenizer.yaml and the architecture factories)."""

    modality: Literal["audio", "visual"] = "audio"
    """Which tokenizer to train."""
    manifest: str = setting(help="manifest.jsonl (or its folder) written by `vqmae prepare` / `vqmae synth`.")
    out: str = setting(help="Run folder (created; --resume continues it).")
    preset: str = "base"
    """paper | base | demo | tiny: model + training defaults."""
    resume: bool = False
    """Continue from the newest checkpoint in --out."""
    audio: AudioVQVAEConfig = field(default_factory=lambda: audio_preset("base"))
    visual: VisualVQVAEConfig = field(default_factory=lambda: visual_preset("base"))
    data: FrameDataConfig = field(default_factory=FrameDataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval_frames: int = setting(4096, ge=0, help="Held-out frames scored after each epoch (0 = all).")
    quality_train_clips: int = setting(32, ge=0, help="Training clips also scored at the end "
                                       "(codebook usage on seen data; 0 = none).")
    examples: int = setting(3, ge=0, help="Held-out clips drawn as PNGs (and written as WAV for audio).")
    griffin_lim_iters: int = setting(32, ge=1, help="Griffin-Lim iterations of the example WAVs.")
    threads: int = setting(0, ge=0, help="torch threads per process on CPU; 0 = the CPUs per "
                           "process (recorded in train.log). On a machine busy with other jobs "
                           "set 1: more threads than free cores makes OpenMP spin.")

    def __post_init__(self) -> None:
        for name in ("val_speakers", "max_clips", "max_val_clips", "workers", "seed"):
            if getattr(self.data, name) < 0:
                raise ValueError(f"data.{name}: must be >= 0, got {getattr(self.data, name)}")
        if self.data.frame_stride < 1:
            raise ValueError(f"data.frame_stride: must be >= 1, got {self.data.frame_stride}")


def architecture_base(cfg: TrainTokenizerConfig) -> dict[str, Any]:
    """The architecture layer of a preset (the factories' configs), under files and overrides."""
    return {"audio": config_to_dict(audio_preset(cfg.preset)),
            "visual": config_to_dict(visual_preset(cfg.preset))}


def loss_fn(model: torch.nn.Module, batch: torch.Tensor, info: StepInfo):
    """Reconstruction + commitment loss (batch means); batch codebook usage as metrics."""
    out = model(batch)
    tok = model.module if hasattr(model, "module") else model
    usage = codebook_usage(out["indices"].detach(), tok.codebook_size)
    return out["loss"], {"recon_loss": float(out["recon_loss"].detach()),
                         "commit_loss": float(out["commit_loss"].detach()),
                         "perplexity": usage["perplexity"], "codes_used_pct": usage["codes_used_pct"]}



def train_tokenizer(cfg: TrainTokenizerConfig) -> dict[str, Any]:
    """Train one tokenizer and write the run folder (``vqmae train-tokenizer``'s outputs).
    Returns quality.json (empty on other ranks than the main process)."""
    out = check_run_folder(cfg.out)
    try:
        manifest = read_manifest(cfg.manifest)
    except (FileNotFoundError, ValueError) as e:
        raise TokenizerTrainingError(str(e)) from None
    if not manifest.records:
        raise TokenizerTrainingError(f"{cfg.manifest}: the manifest has no clips")
    modality = cfg.modality
    model_cfg = cfg.audio if modality == "audio" else cfg.visual
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
        eval_fn = make_eval_fn(val_ds, modality, cfg.eval_frames)
        result = fit(model, dataset, loss_fn, cfg.train, run_, accelerator=acc,
                     collate_fn=collate_frames, eval_fn=eval_fn, resume=cfg.resume)
        model = result.model  # SyncBatchNorm (GPU only) keeps BatchNorm's state-dict keys
        t_train = time.time() - t0 - t_load
        model.eval()

        if acc.num_processes > 1:
            average_batchnorm_stats(model)
            ddp_check(acc, model, out)

        quality: dict[str, Any] = {}
        if acc.is_main_process:
            quality = finish(cfg, model, train_frames, val_frames, result, out,
                              timings={"decode_s": t_load, "train_s": t_train})
            run_.info("quality (held-out speakers): %s", summary_line(quality["held_out"], modality))
            run_.info("train-tokenizer done in %.1f s: %s", time.time() - t0, out / "model")
        acc.wait_for_everyone()
        return quality
    finally:
        run_.close()


"""The training job of ``vqmae pretrain-vssl``: visually guided / audio-only / multi-task SSL.

    summary = pretrain_vssl(PretrainVSSLConfig(manifest="data/tiny", out="runs/vssl", task="visual"))

Clips come through the project's clip loader (:func:`vqmae.data.clips.load_clip`, settings from
the dataset's ``prepare`` record), face crops resized to the generator's size, and are kept in a
disk cache of decoded clips (:class:`vqmae.vssl.data.ClipCache`, memory-mapped ``.npy``): a
resumed or repeated run skips decoding, and items read windows straight from the cache. Whole
speakers are held out for validation. The loop is :func:`vqmae.training.fit` (``--resume``,
``accelerate launch``, metrics.jsonl / TensorBoard, progress bar).

Outputs in ``--out``: the run folder (config.yaml, metrics.jsonl, train.log, tb/, checkpoints/),
``model/`` (the whole ``vssl`` model), ``audio_encoder/`` (the encoder alone, for downstream
use), ``generated_vs_real.png`` (visual tasks; held-out speakers, and ``_seen`` for training
speakers), ``curves.png``, ``summary.json`` (final metrics on
the held-out speakers and on up to 12 training clips, middle windows; timings).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from vqmae.config import config_to_dict, setting
from vqmae.io import read_jsonl, write_json
from vqmae.runs import Run
from vqmae.training import StepInfo, TrainConfig, fit, make_accelerator, seed_everything
from vqmae.vssl.config import VSSLConfig, vssl_model_preset
from vqmae.vssl.data import ClipCache, ClipWindows, DecodedClip, collate, resize_faces
from vqmae.vssl.losses import mouth_mask, region_l1
from vqmae.vssl.model import VSSLModel, to_model_images, to_uint8_images


class VSSLTrainingError(ValueError):
    """A manifest or setting the job cannot use (a user error)."""


@dataclass(kw_only=True)
class PretrainVSSLConfig:
    """Settings of ``vqmae pretrain-vssl`` (the preset fills ``model`` and ``train``)."""

    manifest: str = setting(help="manifest.jsonl (or its folder) written by `vqmae prepare` / `vqmae synth`.")
    out: str = setting(help="Run folder (created; --resume continues it).")
    task: Literal["visual", "audio", "multitask"] = "multitask"
    """visual: talking-face generation; audio: PASE-style targets; multitask: both."""
    preset: str = "demo"
    """tiny | demo | base: model size (vqmae.vssl.vssl_model_preset) + training recipe
    (vqmae/presets/vssl.yaml)."""
    resume: bool = False
    """Continue from the newest checkpoint in --out."""
    model: VSSLConfig = field(default_factory=VSSLConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    window: int = setting(16, ge=2, le=250, help="Frames per training item (audio: window × 640 samples).")
    items_per_clip: int = setting(4, ge=1, help="Random windows drawn from each clip per epoch.")
    val_speakers: int = setting(0, ge=0, help="Speakers held out; 0 = about 10 % (at least 1).")
    max_clips: int = setting(0, ge=0, help="Use at most this many training clips (0 = all).")
    max_val_clips: int = setting(24, ge=0, help="Held-out clips scored after each epoch (0 = all).")
    cache: bool = True
    """Keep decoded, face-cropped clips on disk (memory-mapped): a rerun or --resume skips decoding."""
    cache_dir: str = ""
    """Where the clip cache lives ('' = OUT/clip_cache)."""
    detect_faces: bool | None = None
    """None: as the dataset's `prepare` recorded it."""
    backend: str = ""
    """Media backend ('' = as the dataset)."""
    grid_clips: int = setting(4, ge=0, help="Held-out clips in generated_vs_real.png.")
    threads: int = setting(0, ge=0, help="torch threads per process on CPU (0 = CPUs / processes).")


def model_base(cfg: PretrainVSSLConfig) -> dict[str, Any]:
    """The architecture layer of a preset (under files and overrides)."""
    try:
        return {"model": config_to_dict(vssl_model_preset(cfg.preset, task=cfg.task))}
    except ValueError as e:
        raise VSSLTrainingError(f"preset: {e}") from None


def loss_fn(model: torch.nn.Module, batch: dict[str, torch.Tensor], info: StepInfo):
    """The model's own loss (``VSSLModel.forward`` on a batch dict), through the wrapped model."""
    return model(batch)


# ------------------------------------------------------------------------------------- data


def _decoder(manifest, cfg: PretrainVSSLConfig, model_cfg: VSSLConfig):
    from vqmae.data.clips import load_clip, resolve_clip_config

    enc = model_cfg.encoder
    clip_cfg = resolve_clip_config(manifest.path, sample_rate=enc.sample_rate, fps=enc.fps,
                                   detect_faces=cfg.detect_faces, backend=cfg.backend)
    size = model_cfg.generator.face_size

    def decode(path: str) -> DecodedClip:
        clip = load_clip(path, clip_cfg)
        return DecodedClip(resize_faces(np.asarray(clip.faces), size), np.asarray(clip.audio, np.float32))

    settings = {"clip": config_to_dict(clip_cfg), "face_size": size, "version": 1}
    return decode, settings


def load_clips(manifest, records, cache: ClipCache, run: Run) -> tuple[list[DecodedClip], dict[str, float]]:
    """Decode (or read from the cache) every record; undecodable clips are skipped with a warning.
    Returns the clips and timings (seconds per clip for decoding and for cache reads)."""
    from vqmae.data.media import MediaError

    clips, t_miss, t_hit = [], 0.0, 0.0
    for r in records:
        hits = cache.hits
        t0 = time.perf_counter()
        try:
            clip = cache.get(manifest.media_path(r), id=r.id, speaker=r.speaker)
        except (MediaError, OSError) as e:
            run.warning("skipping %s: %s", r.id, e)
            continue
        dt = time.perf_counter() - t0
        if cache.hits > hits:
            t_hit += dt
        else:
            t_miss += dt
        clips.append(clip)
    return clips, {"decode_s_per_clip": t_miss / max(1, cache.misses),
                   "cache_read_s_per_clip": t_hit / max(1, cache.hits)}


# ------------------------------------------------------------------------------- evaluation


@torch.no_grad()
def evaluate(model: VSSLModel, clips: list[DecodedClip], window: int) -> dict[str, float]:
    """Held-out metrics on the middle window of each clip (the training metric names, and for
    visual tasks ``silent_mouth_l1``: the mouth error when the audio is replaced by silence —
    above ``mouth_l1`` when the generator uses the audio)."""
    if not clips:
        return {}
    was_training = model.training
    model.eval()
    ds = ClipWindows(clips, window=window, deterministic=True, samples_per_frame=model.encoder.samples_per_frame)
    dev = next(model.parameters()).device
    sums: dict[str, float] = {}
    for i in range(0, len(ds), 8):
        batch = {k: v.to(dev) for k, v in collate([ds[j] for j in range(i, min(len(ds), i + 8))]).items()}
        loss, metrics = model(batch)
        metrics["loss"] = float(loss)
        n = batch["audio"].shape[0]
        if model.config.visual:
            silent = model.generate(torch.zeros_like(batch["audio"]), to_model_images(batch["still"]))
            real = to_model_images(batch["frames"])
            mm = mouth_mask(real.shape[-1], model.config.mouth_top, model.config.mouth_left, dev)
            metrics["silent_mouth_l1"] = float(region_l1(silent, real, mm))
        for k, v in metrics.items():
            sums[k] = sums.get(k, 0.0) + v * n
    model.train(was_training)
    return {k: v / len(ds) for k, v in sums.items()}


@torch.no_grad()
def grid_pairs(model: VSSLModel, clips: list[DecodedClip], window: int, every: int = 2):
    """(still, real, generated) uint8 arrays of the middle window of each clip (every 2nd frame)."""
    ds = ClipWindows(clips, window=window, deterministic=True, samples_per_frame=model.encoder.samples_per_frame)
    pairs = []
    for i in range(len(ds)):
        it = ds[i]
        gen = model.generate(it["audio"][None], to_model_images(it["still"])[None])[0]
        pairs.append((it["still"].numpy(), it["frames"][::every].numpy(),
                      to_uint8_images(gen)[::every].numpy()))
    return pairs


# ------------------------------------------------------------------------------------ job


def pretrain_vssl(cfg: PretrainVSSLConfig) -> dict[str, Any]:
    """Train and write the run folder (module doc). Returns summary.json (empty off rank 0)."""
    from vqmae.data.frames import evenly, split_speakers
    from vqmae.data.manifest import read_manifest

    try:
        manifest = read_manifest(cfg.manifest)
    except (FileNotFoundError, ValueError) as e:
        raise VSSLTrainingError(str(e)) from None
    if not manifest.records:
        raise VSSLTrainingError(f"{cfg.manifest}: the manifest has no clips")
    model_cfg = replace(cfg.model, task=cfg.task)
    out = Path(cfg.out)
    t0 = time.time()
    acc = make_accelerator(cfg.train.mixed_precision, cfg.train.grad_accum, cfg.train.find_unused_parameters)
    if acc.device.type == "cpu":
        torch.set_num_threads(cfg.threads or max(1, (os.cpu_count() or 1) // acc.num_processes))
    run = Run(out, cfg, is_main=acc.is_main_process, tensorboard=cfg.train.tensorboard)
    try:
        seed_everything(cfg.train.seed)
        model = VSSLModel(model_cfg)
        train_recs, val_recs = split_speakers(manifest.records, cfg.val_speakers, cfg.train.seed)
        train_recs, val_recs = evenly(train_recs, cfg.max_clips), evenly(val_recs, cfg.max_val_clips)
        decode, settings = _decoder(manifest, cfg, model_cfg)
        cache_dir = (cfg.cache_dir or str(out / "clip_cache")) if cfg.cache else None
        cache = ClipCache(cache_dir, decode, settings)
        train_clips, t_train = load_clips(manifest, train_recs, cache, run)
        val_clips, _ = load_clips(manifest, val_recs, cache, run)
        short = [c.id for c in train_clips if c.num_frames <= 1]
        train_clips = [c for c in train_clips if c.num_frames > 1]
        if not train_clips:
            raise VSSLTrainingError(f"{cfg.manifest}: no decodable training clips ({len(short)} too short)")
        t_load = time.time() - t0
        run.info("pretrain-vssl %s (preset %s): %d training clips, %d held-out clips (%d speakers), "
                 "%s parameters, decoded/cached in %.1f s (decode %.3f s/clip, cache read %.4f s/clip)",
                 cfg.task, cfg.preset, len(train_clips), len(val_clips), len({c.speaker for c in val_clips}),
                 f"{sum(p.numel() for p in model.parameters()):,}", t_load,
                 t_train["decode_s_per_clip"], t_train["cache_read_s_per_clip"])
        model.fit_normalization([torch.from_numpy(np.array(c.audio)) for c in train_clips])
        dataset = ClipWindows(train_clips, window=cfg.window, items_per_clip=cfg.items_per_clip,
                              seed=cfg.train.seed, samples_per_frame=model_cfg.encoder.samples_per_frame)
        result = fit(model, dataset, loss_fn, cfg.train, run, accelerator=acc, collate_fn=collate,
                     eval_fn=lambda m, epoch: evaluate(m, val_clips, cfg.window), resume=cfg.resume)
        model = result.model.eval()
        summary: dict[str, Any] = {}
        if acc.is_main_process:
            summary = _finish(cfg, model, val_clips or train_clips[:cfg.grid_clips], train_clips, result, out,
                              {"load_s": t_load, "train_s": time.time() - t0 - t_load, **t_train})
            run.info("pretrain-vssl done in %.1f s: %s", time.time() - t0, out / "model")
        acc.wait_for_everyone()
        return summary
    finally:
        run.close()


def _finish(cfg: PretrainVSSLConfig, model: VSSLModel, val_clips: list[DecodedClip],
            train_clips: list[DecodedClip], result, out: Path, timings: dict[str, float]) -> dict[str, Any]:
    from vqmae.vssl.plots import loss_curves_png, real_vs_generated_png

    model = model.cpu()
    model.save_pretrained(out / "model")
    model.export_encoder().save_pretrained(out / "audio_encoder", metadata={"trained_by": "vssl",
                                                                           "task": cfg.task})
    final = evaluate(model, val_clips, cfg.window)
    seen = evaluate(model, train_clips[:: max(1, len(train_clips) // 12)][:12], cfg.window)
    if model.config.visual and cfg.grid_clips:
        real_vs_generated_png(out / "generated_vs_real.png", grid_pairs(model, val_clips[:cfg.grid_clips], cfg.window))
        step = max(1, len(train_clips) // cfg.grid_clips)
        real_vs_generated_png(out / "generated_vs_real_seen.png",
                              grid_pairs(model, train_clips[::step][:cfg.grid_clips], cfg.window))
    rows = read_jsonl(out / "metrics.jsonl") if (out / "metrics.jsonl").is_file() else []
    loss_curves_png(out / "curves.png", rows, ["loss", "l1", "mouth_l1", "pretext_mse"])
    summary = {"task": cfg.task, "preset": cfg.preset, "steps": result.steps, "epochs": result.epochs_done,
               "held_out": final, "training_speakers": seen, "timings": timings, "model": str(out / "model"),
               "audio_encoder": str(out / "audio_encoder"), "fingerprint": model.fingerprint()}
    write_json(out / "summary.json", summary)
    return summary

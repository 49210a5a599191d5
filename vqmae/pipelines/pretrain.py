"""Stage two: pretrain VQ-MAE-AV on a token store (masked-token prediction).

    vqmae pretrain --tokens STORE --out DIR [--preset paper|base|demo|tiny] \
        [model.depth=12] [model.fusion=caf] [modalities=[audio]] [loss.contrastive_weight=0.1] \
        [masking.ratio_mode=fixed] [train.epochs=100] [train.batch_size=16] [--resume]
    accelerate launch [--multi_gpu --num_processes N] -m vqmae.pipelines.pretrain ...

The model geometry follows the store (token shapes, codebooks, frame rates); the preset gives
the architecture and the training recipe (``paper``: AdamW (0.9, 0.95), weight decay 0.05,
lr = 1e-3 × effective batch / 256, 40 warm-up epochs, cosine to 800 epochs, batch 16).
Masks are drawn per batch from ``StepInfo.generator`` (exact resume on CPU).

Outputs in ``--out``:
    config.yaml, metrics.jsonl, train.log, tb/, checkpoints/   (the run folder; --resume continues)
    model/            VQ-MAE-AV folder (config.json + model.safetensors; the token store's
                      provenance — tokenizer fingerprints and folders — is recorded in config.json)
    summary.json      final masked-token accuracy per modality vs the code-frequency baselines
    curves.png        loss and masked-token accuracy per modality, baselines dashed
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from vqmae.config import ConfigError, config_to_dict, parse_config
from vqmae.io import read_jsonl, write_json
from vqmae.mae import (
    VQMAEAV,
    LossConfig,
    MAEConfig,
    MaskingConfig,
    cfg_for_store,
    mae_loss,
    make_masks,
)
from vqmae.mae.config import MAEConfigError, preset_names
from vqmae.pipelines.common import UserError, stage_main
from vqmae.runs import Run
from vqmae.training import StepInfo, TrainConfig, fit, make_accelerator

DESCRIPTION = __doc__ or ""


@dataclass
class ArchConfig:
    """Overrides of the preset's architecture (unset = the preset's value)."""

    depth: int | None = None
    width: int | None = None
    heads: int | None = None
    mlp_ratio: float | None = None
    decoder_depth: int | None = None
    decoder_heads: int | None = None
    fusion: Literal["saf", "caf"] | None = None
    decoder_fusion: Literal["saf", "caf"] | None = None
    audio_patch: tuple[int, ...] | None = None
    visual_patch: tuple[int, ...] | None = None
    audio_embed_dim: int | None = None
    visual_embed_dim: int | None = None
    drop_path: float | None = None
    pos_init: Literal["random", "sincos"] | None = None

    def overrides(self) -> dict[str, Any]:
        return {k: v for k, v in config_to_dict(self).items() if v is not None}


@dataclass
class PretrainConfig:
    """Settings of ``vqmae pretrain`` (the preset fills ``model`` and ``train``)."""

    tokens: str = ""
    """Token store written by ``vqmae tokenize``."""
    out: str = ""
    """Run folder (created)."""
    preset: str = "paper"
    """paper | base | demo | tiny: architecture + training recipe."""
    model: ArchConfig = field(default_factory=ArchConfig)
    modalities: list[str] = field(default_factory=list)
    """Modalities to pretrain on (default: all of the store's); one modality = unimodal VQ-MAE."""
    window_seconds: float = 2.0
    clips: str = ""
    """Optional text file of clip ids (one per line) to pretrain on; default: every clip."""
    val_fraction: float = 0.1
    """Speakers held out to monitor masked-token accuracy each epoch (0 = none)."""
    val_max_items: int = 256
    eval_ratio: float = 0.5
    """Mask ratio of every modality when scoring held-out windows (fixed masks)."""
    baseline_clips: int = 512
    """Clips whose codes give the code-frequency baselines (0 = all)."""
    example: bool = True
    """After training, mask the first held-out clip at ``eval_ratio`` and write what the model
    predicts, decoded by the tokenizers, to ``OUT/example/`` (``vqmae reconstruct``; needs the
    media files and the tokenizer folders; skipped with a warning when they are gone)."""
    masking: MaskingConfig = field(default_factory=MaskingConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    resume: bool = False
    """Continue from the newest checkpoint in --out."""


TRAIN_PRESETS: dict[str, dict[str, Any]] = {
    # the published recipe (VoxCeleb2): batch 16, base lr 1e-3, warm-up 40 / 800 epochs
    "paper": dict(epochs=800, warmup_epochs=40, batch_size=16, base_lr=1e-3, weight_decay=0.05,
                  betas=(0.9, 0.95), log_every=50),
    "base": dict(epochs=400, warmup_epochs=20, batch_size=64, base_lr=1.5e-3, weight_decay=0.05,
                 betas=(0.9, 0.95), log_every=50, grad_clip=1.0),
    # a few minutes on 2 CPU cores for the demo corpus (a few hundred clips)
    "demo": dict(epochs=12, warmup_epochs=1, batch_size=16, base_lr=3.2e-2, weight_decay=0.05,
                 betas=(0.9, 0.95), log_every=10, grad_clip=1.0),
    "tiny": dict(epochs=2, warmup_steps=1, batch_size=4, base_lr=2e-2, log_every=1, tensorboard=False),
}


DATA_PRESETS: dict[str, dict[str, Any]] = {
    "demo": {"window_seconds": 1.0},
}


def preset_base(preset: str) -> dict[str, Any]:
    if preset not in TRAIN_PRESETS:
        raise ConfigError(f"preset: unknown preset '{preset}' (known: {', '.join(preset_names())})")
    return {"train": dict(TRAIN_PRESETS[preset]), **DATA_PRESETS.get(preset, {})}


def resolve_config(argv: list[str]) -> PretrainConfig:
    first = parse_config(PretrainConfig, argv)
    return parse_config(PretrainConfig, argv, base=preset_base(first.preset))


# ------------------------------------------------------------------------------ model + data


def build_model_config(cfg: PretrainConfig, provenance: dict[str, dict[str, Any]]) -> MAEConfig:
    """The MAE config for this store and these settings (clear errors for misfit patches)."""
    modalities = tuple(cfg.modalities) or None
    try:
        return cfg_for_store(provenance, preset=cfg.preset, window_seconds=cfg.window_seconds,
                             modalities=modalities, contrastive=cfg.loss.contrastive_weight > 0,
                             **cfg.model.overrides())
    except MAEConfigError as e:
        hint = " (preset 'paper' keeps the published patch sizes; preset 'demo' or 'base' picks fitting ones)" \
            if cfg.preset == "paper" else ""
        raise UserError(f"{cfg.tokens}: {e}{hint}") from None


def split_clips(store, clip_ids: list[int], val_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Hold out whole speakers (a seeded choice) for validation."""
    if val_fraction <= 0:
        return clip_ids, []
    speakers = sorted({store.clips[i].speaker for i in clip_ids})
    if len(speakers) < 2:
        return clip_ids, []
    rng = np.random.default_rng(seed)
    n_val = min(len(speakers) - 1, max(1, round(val_fraction * len(speakers))))
    val_speakers = set(rng.permutation(speakers)[:n_val].tolist())
    train = [i for i in clip_ids if store.clips[i].speaker not in val_speakers]
    val = [i for i in clip_ids if store.clips[i].speaker in val_speakers]
    return train, val


def code_frequency_baselines(store, clip_ids: list[int], modalities: tuple[str, ...],
                             max_clips: int = 512) -> dict[str, float]:
    """Accuracy of always predicting the most frequent code (``freq_acc_<m>``) and the most
    frequent code of each token position (``pos_freq_acc_<m>``), over the codes of up to
    ``max_clips`` clips (evenly spaced)."""
    if max_clips and len(clip_ids) > max_clips:
        clip_ids = [clip_ids[int(k)] for k in np.linspace(0, len(clip_ids) - 1, max_clips)]
    out: dict[str, float] = {}
    for m in modalities:
        k = store.codebook_size(m)
        shape = store.token_shape(m)
        positions = int(np.prod(shape))
        counts = np.zeros(positions * k, dtype=np.int64)
        offsets = np.arange(positions, dtype=np.int64) * k
        for i in clip_ids:
            codes = np.asarray(store.read(i, m), dtype=np.int64).reshape(-1, positions)
            counts += np.bincount((codes + offsets).ravel(), minlength=positions * k)
        counts = counts.reshape(positions, k)
        total = max(1, int(counts.sum()))
        out[f"freq_acc_{m}"] = float(counts.sum(0).max() / total)
        out[f"pos_freq_acc_{m}"] = float(counts.max(1).sum() / total)
    return out


def make_loss_fn(cfg: PretrainConfig, mae_cfg: MAEConfig):
    grids = {m: mae_cfg.spec(m).grid for m in mae_cfg.modalities}

    def loss_fn(model: torch.nn.Module, batch: dict[str, torch.Tensor], info: StepInfo):
        tokens = {m: batch[m] for m in mae_cfg.modalities}
        b = next(iter(tokens.values())).shape[0]
        ratios = cfg.masking.ratios(mae_cfg.modalities, info.generator)
        masks = {k: v.to(info.device) for k, v in
                 make_masks(grids, b, cfg.masking, info.generator, ratios).items()}
        out = model(tokens, masks)
        loss, metrics = mae_loss(out, cfg.loss, mae_cfg.modalities)
        for m, r in ratios.items():
            metrics[f"mask_ratio_{m}"] = r
        return loss, metrics

    return loss_fn


@torch.no_grad()
def evaluate_masked(model: VQMAEAV, dataset, cfg: PretrainConfig, batch_size: int,
                    max_items: int = 0, seed: int = 12345) -> dict[str, float]:
    """Masked-token loss/accuracy per modality on fixed windows with fixed masks
    (ratio ``cfg.eval_ratio`` for every modality, the same masks every epoch)."""
    from torch.utils.data import DataLoader

    mae_cfg = model.config
    device = next(model.parameters()).device
    grids = model.mask_grids()
    masking = MaskingConfig(ratio_mode="fixed", audio_ratio=cfg.eval_ratio, visual_ratio=cfg.eval_ratio,
                            audio_kind=cfg.masking.audio_kind, visual_kind=cfg.masking.visual_kind)
    n = len(dataset) if not max_items else min(len(dataset), max_items)
    sub = torch.utils.data.Subset(dataset, list(range(n)))
    gen = torch.Generator().manual_seed(seed)
    sums: dict[str, float] = {}
    was_training = model.training
    model.eval()
    for batch in DataLoader(sub, batch_size=batch_size, shuffle=False):
        tokens = {m: batch[m].to(device) for m in mae_cfg.modalities}
        b = next(iter(tokens.values())).shape[0]
        masks = {k: v.to(device) for k, v in make_masks(grids, b, masking, gen).items()}
        out = model(tokens, masks)
        for m in mae_cfg.modalities:
            for key in ("loss_sum", "correct", "count"):
                sums[f"{key}_{m}"] = sums.get(f"{key}_{m}", 0.0) + float(out[f"{key}_{m}"])
    model.train(was_training)
    metrics = {}
    for m in mae_cfg.modalities:
        count = max(1.0, sums.get(f"count_{m}", 0.0))
        metrics[f"loss_{m}"] = sums.get(f"loss_sum_{m}", 0.0) / count
        metrics[f"acc_{m}"] = sums.get(f"correct_{m}", 0.0) / count
    return metrics


# ------------------------------------------------------------------------------------ plots


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


# -------------------------------------------------------------------------------------- run


def _read_clip_list(path: str, store) -> list[int]:
    p = Path(path)
    if not p.is_file():
        raise UserError(f"clips: file not found: {p}")
    ids = [line.strip() for line in p.read_text().splitlines() if line.strip() and not line.startswith("#")]
    try:
        return [store.index_of(i) for i in ids]
    except KeyError as e:
        raise UserError(f"{p}: {e.args[0]}") from None


def run(cfg: PretrainConfig) -> dict[str, Any]:
    from vqmae.data.token_dataset import TokenDataset
    from vqmae.data.token_store import StoreError, TokenStore

    if not cfg.tokens or not cfg.out:
        raise UserError("--tokens STORE and --out DIR are required")
    try:
        store = TokenStore.open(cfg.tokens)
    except StoreError as e:
        raise UserError(str(e)) from None
    mae_cfg = build_model_config(cfg, store.provenance)
    modalities = mae_cfg.modalities

    acc = make_accelerator(cfg.train.mixed_precision, cfg.train.grad_accum)
    run_ = Run(cfg.out, cfg, is_main=acc.is_main_process, tensorboard=cfg.train.tensorboard)
    t_start = time.time()
    try:
        clip_ids = _read_clip_list(cfg.clips, store) if cfg.clips else list(range(len(store)))
        train_ids, val_ids = split_clips(store, clip_ids, cfg.val_fraction, cfg.train.seed)
        train_ds = TokenDataset(store, train_ids, window_seconds=cfg.window_seconds, mode="random",
                                modalities=modalities, seed=cfg.train.seed)
        val_ds = (TokenDataset(store, val_ids, window_seconds=cfg.window_seconds, mode="center",
                               modalities=modalities) if val_ids else None)
        if len(train_ds) == 0:
            raise UserError(f"{cfg.tokens}: no clip to pretrain on")
        baselines = code_frequency_baselines(store, train_ids, modalities, cfg.baseline_clips)

        torch.manual_seed(cfg.train.seed)
        model = VQMAEAV(mae_cfg)
        n_params = sum(p.numel() for p in model.parameters())
        run_.info("VQ-MAE-AV (%s preset, %s fusion, modalities %s): %s parameters, %s patches per window",
                  cfg.preset, mae_cfg.fusion, "+".join(modalities), f"{n_params:,}",
                  " + ".join(f"{mae_cfg.spec(m).num_patches} {m}" for m in modalities))
        run_.info("data: %d training clips, %d held-out clips (%d speakers held out), %.3g s windows",
                  len(train_ds), len(val_ids), len({store.clips[i].speaker for i in val_ids}), cfg.window_seconds)
        run_.info("code-frequency baselines (accuracy to beat): %s",
                  ", ".join(f"{m}: {100 * baselines[f'freq_acc_{m}']:.1f} % most frequent code, "
                            f"{100 * baselines[f'pos_freq_acc_{m}']:.1f} % per-position mode" for m in modalities))

        def eval_fn(unwrapped: torch.nn.Module, epoch: int) -> dict[str, float]:
            metrics = evaluate_masked(unwrapped, val_ds, cfg, cfg.train.batch_size, cfg.val_max_items) \
                if val_ds is not None else {}
            return {**metrics, **baselines}

        result = fit(model, train_ds, make_loss_fn(cfg, mae_cfg), cfg.train, run_, accelerator=acc,
                     eval_fn=eval_fn, resume=cfg.resume)
        model = result.model
        elapsed = time.time() - t_start
        summary: dict[str, Any] = {"steps": result.steps, "epochs": result.epochs_done,
                                   "seconds": round(elapsed, 1), "parameters": n_params,
                                   "train_clips": len(train_ds), "val_clips": len(val_ids),
                                   "baselines": baselines}
        if acc.is_main_process:
            rows = read_jsonl(run_.metrics_path) if run_.metrics_path.is_file() else []
            train_rows = [r for r in rows if r.get("split") == "train"]
            val_rows = [r for r in rows if r.get("split") == "val" and any(k.startswith("acc_") for k in r)]
            if train_rows:
                last = train_rows[-1]
                summary["train"] = {k: last[k] for k in last if k.startswith(("loss", "acc_"))}
            if val_rows:
                last = val_rows[-1]
                summary["val"] = {k: last[k] for k in last if k.startswith(("loss_", "acc_"))}
            scored = summary.get("val") or summary.get("train") or {}
            summary["beats_baseline"] = {m: scored.get(f"acc_{m}", 0.0) > baselines[f"pos_freq_acc_{m}"]
                                         for m in modalities}
            meta = {"token_store": {"path": str(Path(cfg.tokens).resolve()),
                                    "provenance": {m: _provenance_record(store.provenance[m]) for m in modalities}},
                    "pretrain": {"preset": cfg.preset, "masking": config_to_dict(cfg.masking),
                                 "loss": config_to_dict(cfg.loss), "steps": result.steps,
                                 "baselines": baselines, "final": scored}}
            model.save_pretrained(Path(cfg.out) / "model", metadata=meta)
            write_json(Path(cfg.out) / "summary.json", summary)
            plot_curves(run_.metrics_path, Path(cfg.out) / "curves.png", modalities, baselines)
            for m in modalities:
                if f"acc_{m}" in scored:
                    run_.info("%s: masked-token accuracy %.1f %% (%s) vs %.1f %% most frequent code / %.1f %% "
                              "per-position mode", m, 100 * scored[f"acc_{m}"], "held-out" if "val" in summary
                              else "train", 100 * baselines[f"freq_acc_{m}"], 100 * baselines[f"pos_freq_acc_{m}"])
            if cfg.example and val_ids:
                summary["example"] = _reconstruction_example(cfg, store, val_ids[0], run_)
                write_json(Path(cfg.out) / "summary.json", summary)
            run_.info("pretraining done in %.0f s: model in %s", elapsed, Path(cfg.out) / "model")
        acc.wait_for_everyone()
        return summary
    finally:
        run_.close()


def _reconstruction_example(cfg: PretrainConfig, store, index: int, run_: Run) -> str:
    """``vqmae reconstruct`` of one held-out clip into OUT/example; '' when it cannot run."""
    from vqmae.data.manifest import read_manifest
    from vqmae.pipelines import reconstruct

    clip = store.clips[int(index)]
    try:
        media = read_manifest(store.meta["manifest"]).root / clip.path
        if not media.is_file():
            raise FileNotFoundError(f"media file not found: {media}")
        out = Path(cfg.out) / "example"
        reconstruct.run(reconstruct.ReconstructConfig(
            model=str(Path(cfg.out) / "model"), clip=str(media), out=str(out),
            mask_ratio=cfg.eval_ratio, seed=cfg.train.seed, sweep=[0.25, 0.5, 0.75]))
    except (UserError, FileNotFoundError, KeyError, ValueError) as e:
        run_.warning("no reconstruction example for %s: %s", clip.id, e)
        return ""
    run_.info("reconstruction example (held-out clip %s): %s", clip.id, out)
    return str(out.relative_to(cfg.out))


def _provenance_record(p: dict[str, Any]) -> dict[str, Any]:
    keep = ("fingerprint", "architecture", "codebook_size", "token_shape", "frames_per_second",
            "sample_rate", "tokenizer_dir")
    return {k: p[k] for k in keep if k in p}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    base = None
    if not any(a in ("-h", "--help") for a in argv):
        try:
            base = preset_base(parse_config(PretrainConfig, argv).preset)
        except ConfigError as e:
            print(f"vqmae pretrain: config error: {e}", file=sys.stderr)
            return 2
    return stage_main("pretrain", DESCRIPTION, PretrainConfig, lambda c: (run(c), 0)[1], argv, base=base)


if __name__ == "__main__":
    raise SystemExit(main())

"""The pretraining job of ``vqmae pretrain``: masked-token prediction on a token store.

    summary = pretrain(cfg)        # cfg: PretrainConfig; writes the run folder cfg.out

Data: windows of ``window_seconds`` from the store (:class:`~vqmae.data.token_dataset.TokenDataset`),
random windows for training, centre windows of held-out speakers for validation. Each training
batch gets masks drawn from ``StepInfo.generator`` (exact resume on CPU); the held-out score uses
fixed masks at ``eval_ratio``. The code-frequency baselines (most frequent code; most frequent
code per token position) are the accuracies a model must beat to have learned anything.

A resumed run refuses a token store whose tokenizer fingerprints differ from the ones it started
with (``RUN/token_store.json``): weights trained on one tokenization are meaningless on another.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from vqmae.config import config_to_dict, setting
from vqmae.data.clips import WINDOW_SECONDS
from vqmae.io import read_json, read_jsonl, write_json
from vqmae.mae.config import MAEConfig, MAEConfigError, cfg_for_store
from vqmae.mae.losses import LossConfig, mae_loss
from vqmae.mae.masking import MaskingConfig, make_masks
from vqmae.mae.model import VQMAEAV
from vqmae.runs import Run, check_run_folder
from vqmae.training import StepInfo, TrainConfig, fit, list_checkpoints, make_accelerator


class PretrainError(ValueError):
    """A token store, clip list or run folder that pretraining cannot use (a user error)."""


@dataclass
class ArchConfig:
    """Overrides of the preset's architecture (unset = the preset's value)."""

    depth: int | None = setting(None, ge=1, help="Encoder blocks.")
    width: int | None = setting(None, ge=1, help="Transformer width.")
    heads: int | None = setting(None, ge=1, help="Encoder attention heads.")
    mlp_ratio: float | None = setting(None, gt=0, help="MLP hidden size / width.")
    decoder_depth: int | None = setting(None, ge=1, help="Decoder blocks.")
    decoder_heads: int | None = setting(None, ge=1, help="Decoder attention heads.")
    fusion: Literal["saf", "caf"] | None = None
    """saf: one joint self-attention sequence; caf: per-modality cross-attention."""
    decoder_fusion: Literal["saf", "caf"] | None = None
    """Fusion of the decoder blocks (saf | caf)."""
    audio_patch: tuple[int, ...] | None = None
    """(frames, *per token axis) of an audio patch."""
    visual_patch: tuple[int, ...] | None = None
    """(frames, height, width) of a visual tube."""
    audio_embed_dim: int | None = setting(None, ge=1, help="Embedding size of one audio code.")
    visual_embed_dim: int | None = setting(None, ge=1, help="Embedding size of one visual code.")
    drop_path: float | None = setting(None, ge=0, lt=1, help="Stochastic depth rate.")
    pos_init: Literal["random", "sincos"] | None = None
    """Start of the learned positional embeddings."""

    def overrides(self) -> dict[str, Any]:
        return {k: v for k, v in config_to_dict(self).items() if v is not None}


@dataclass(kw_only=True)
class PretrainConfig:
    """Settings of ``vqmae pretrain`` (the preset fills ``train`` and the architecture)."""

    tokens: str = setting(help="Token store written by `vqmae tokenize`.")
    out: str = setting(help="Run folder (created; --resume continues it).")
    preset: str = "paper"
    """paper | base | demo | tiny (vqmae/presets/pretrain.yaml + mae.yaml): architecture + recipe."""
    model: ArchConfig = field(default_factory=ArchConfig)
    modalities: list[Literal["audio", "visual"]] = field(default_factory=list)
    """Modalities to pretrain on (default: all of the store's); one modality = unimodal VQ-MAE."""
    window_seconds: float = setting(WINDOW_SECONDS, gt=0, help="Seconds of tokens per training window.")
    clips: str = ""
    """Optional text file of clip ids (one per line) to pretrain on; default: every clip."""
    val_fraction: float = setting(0.1, ge=0, lt=1, help="Share of speakers held out to monitor "
                                  "masked-token accuracy each epoch (0 = none).")
    val_max_items: int = setting(256, ge=0, help="Held-out windows scored per epoch (0 = all).")
    eval_ratio: float = setting(0.5, ge=0, le=1, help="Mask ratio of every modality when scoring "
                                "held-out windows (fixed masks).")
    baseline_clips: int = setting(512, ge=0, help="Clips whose codes give the code-frequency "
                                  "baselines (0 = all).")
    example: bool = True
    """After training, mask the first held-out clip at ``eval_ratio`` and write what the model
    predicts, decoded by the tokenizers, to ``OUT/example/`` (``vqmae reconstruct``; needs the
    media files and the tokenizer folders; skipped with a warning when they are gone)."""
    masking: MaskingConfig = field(default_factory=MaskingConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    codebook_init: bool = True
    """Start each modality's code embeddings from its tokenizer's codebook (standardised), so that
    codes the tokenizer places close together start close together; False: random (the paper's)."""
    resume: bool = False
    """Continue from the newest checkpoint in --out (the same token store only)."""


# ------------------------------------------------------------------------------ model + data


def build_model_config(cfg: PretrainConfig, provenance: dict[str, dict[str, Any]]) -> MAEConfig:
    """The MAE config for this store and these settings (clear errors for misfit patches)."""
    modalities = tuple(cfg.modalities) or None
    try:
        return cfg_for_store(provenance, preset=cfg.preset, window_seconds=cfg.window_seconds,
                             modalities=modalities, contrastive=cfg.loss.contrastive_weight > 0,
                             **cfg.model.overrides())
    except MAEConfigError as e:
        hint = " (preset 'paper' keeps the published patch sizes; preset 'demo' or 'base' picks " \
               "fitting ones)" if cfg.preset == "paper" else ""
        raise PretrainError(f"{cfg.tokens}: {e}{hint}") from None


def store_codebooks(store) -> dict[str, torch.Tensor]:
    """The codebooks ``{modality: (K, D)}`` of the tokenizers that made the store's tokens (those
    that load)."""
    from vqmae.evaluation.codes_probe import load_codebook

    books = {m: load_codebook(store, m) for m in store.modalities}
    return {m: torch.from_numpy(cb) for m, cb in books.items() if cb is not None}


def init_from_codebooks(encoder: torch.nn.Module, codebooks: dict[str, torch.Tensor]) -> list[str]:
    """Initialise ``encoder.embed[m]`` from ``codebooks[m]`` where given; returns the modalities
    initialised."""
    done = []
    for m, emb in encoder.embed.items():
        if m in codebooks:
            emb.init_from_codebook(codebooks[m])
            done.append(m)
    return done


def init_from_tokenizer_codebooks(encoder: torch.nn.Module, store, run_: Run | None = None) -> list[str]:
    """Initialise ``encoder.embed[m]`` from the codebook of the tokenizer that made the store's
    ``m`` tokens (where that tokenizer loads); returns the modalities initialised."""
    done = init_from_codebooks(encoder, store_codebooks(store))
    if run_ is not None:
        run_.info("code embeddings from the tokenizer codebooks: %s", ", ".join(done) or "none (random)")
    return done


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
        positions = int(np.prod(store.token_shape(m)))
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
    """``loss_fn(model, batch, info)`` for :func:`vqmae.training.fit`: masks drawn per batch
    from ``info.generator``; metrics per modality plus the mask ratios used."""
    grids = {m: mae_cfg.spec(m).grid for m in mae_cfg.modalities}

    def loss_fn(model: torch.nn.Module, batch: dict[str, torch.Tensor], info: StepInfo):
        tokens = {m: batch[m] for m in mae_cfg.modalities}
        b = next(iter(tokens.values())).shape[0]
        ratios = cfg.masking.ratios(mae_cfg.modalities, info.generator)
        masks = {k: v.to(info.device) for k, v in
                 make_masks(grids, b, cfg.masking, info.generator, ratios).items()}
        loss, metrics = mae_loss(model(tokens, masks), cfg.loss, mae_cfg.modalities)
        for m, r in ratios.items():
            metrics[f"mask_ratio_{m}"] = r
        return loss, metrics

    return loss_fn


@torch.no_grad()
def evaluate_masked(model: VQMAEAV, dataset, cfg: PretrainConfig, batch_size: int,
                    max_items: int = 0, seed: int = 12345) -> dict[str, float]:
    """Masked-token loss/accuracy per modality on fixed windows with fixed masks
    (ratio ``cfg.eval_ratio`` for every modality, the same masks every epoch)."""
    from torch.utils.data import DataLoader, Subset

    mae_cfg = model.config
    device = next(model.parameters()).device
    grids = model.mask_grids()
    masking = MaskingConfig(ratio_mode="fixed", audio_ratio=cfg.eval_ratio, visual_ratio=cfg.eval_ratio,
                            audio_kind=cfg.masking.audio_kind, visual_kind=cfg.masking.visual_kind)
    n = len(dataset) if not max_items else min(len(dataset), max_items)
    gen = torch.Generator().manual_seed(seed)
    sums: dict[str, float] = {}
    was_training = model.training
    model.eval()
    for batch in DataLoader(Subset(dataset, list(range(n))), batch_size=batch_size, shuffle=False):
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


# ------------------------------------------------------------------------ store provenance

STORE_RECORD = "token_store.json"


def provenance_record(p: dict[str, Any]) -> dict[str, Any]:
    """The provenance facts of one modality kept with the pretrained model."""
    keep = ("fingerprint", "architecture", "codebook_size", "token_shape", "frames_per_second",
            "sample_rate", "tokenizer_dir", "tokenizer_hub_id", "tokenizer_revision")
    return {k: p[k] for k in keep if k in p}


def _fingerprints(provenance: dict[str, dict[str, Any]]) -> dict[str, str]:
    return {m: str(p.get("fingerprint", "")) for m, p in sorted(provenance.items())}


def _short(fps: dict[str, str]) -> str:
    return ", ".join(f"{m} {fp[:12] or '?'}" for m, fp in fps.items())


def check_resume_store(out: Path, tokens: str, provenance: dict[str, dict[str, Any]]) -> None:
    """On ``--resume``: refuse a token store whose tokenizer fingerprints differ from those of
    the store the run started on (recorded in ``RUN/token_store.json``, else in the old
    ``config.yaml``'s store)."""
    if not list_checkpoints(out):
        return
    before: dict[str, str] | None = None
    where = ""
    if (out / STORE_RECORD).is_file():
        rec = read_json(out / STORE_RECORD)
        before, where = rec.get("fingerprints"), rec.get("path", "")
    elif (out / "config.yaml").is_file():
        import yaml

        from vqmae.data.token_store import StoreError, TokenStore

        where = str((yaml.safe_load((out / "config.yaml").read_text()) or {}).get("tokens", ""))
        try:
            before = _fingerprints(TokenStore.open(where).provenance) if where else None
        except (StoreError, FileNotFoundError, OSError):
            before = None
    now = _fingerprints(provenance)
    if before is not None and before != now:
        raise PretrainError(
            f"--resume: {out} was trained on token store {where or '?'} (tokenizers {_short(before)}), "
            f"but --tokens {tokens} holds tokens of other tokenizers ({_short(now)}); resume with "
            "the same store, or start a new --out")


def record_store(out: Path, tokens: str, provenance: dict[str, dict[str, Any]]) -> None:
    write_json(out / STORE_RECORD, {"path": str(Path(tokens).resolve()),
                                    "fingerprints": _fingerprints(provenance)})


# -------------------------------------------------------------------------------------- job


def _read_clip_list(path: str, store) -> list[int]:
    p = Path(path)
    if not p.is_file():
        raise PretrainError(f"clips: file not found: {p}")
    ids = [ln.strip() for ln in p.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    try:
        return [store.index_of(i) for i in ids]
    except KeyError as e:
        raise PretrainError(f"{p}: {e.args[0]}") from None


def _final_scores(run_: Run, baselines: dict[str, float], modalities: tuple[str, ...]) -> dict[str, Any]:
    rows = read_jsonl(run_.metrics_path) if run_.metrics_path.is_file() else []
    train_rows = [r for r in rows if r.get("split") == "train"]
    val_rows = [r for r in rows if r.get("split") == "val" and any(k.startswith("acc_") for k in r)]
    out: dict[str, Any] = {}
    if train_rows:
        out["train"] = {k: v for k, v in train_rows[-1].items() if k.startswith(("loss", "acc_"))}
    if val_rows:
        out["val"] = {k: v for k, v in val_rows[-1].items() if k.startswith(("loss_", "acc_"))}
    scored = out.get("val") or out.get("train") or {}
    out["beats_baseline"] = {m: scored.get(f"acc_{m}", 0.0) > baselines[f"pos_freq_acc_{m}"]
                             for m in modalities}
    return out


@dataclass
class PretrainResult:
    summary: dict[str, Any]
    """What ``OUT/summary.json`` holds (complete on the main process)."""
    val_ids: list[int]
    """Store indices of the held-out clips."""
    store: Any
    is_main: bool


def pretrain(cfg: PretrainConfig) -> PretrainResult:
    """Train VQ-MAE-AV on ``cfg.tokens`` into the run folder ``cfg.out``; write ``OUT/model``
    (the token store's provenance in config.json), ``OUT/summary.json`` and ``OUT/curves.png``."""
    from vqmae.data.token_dataset import TokenDataset
    from vqmae.data.token_store import StoreError, TokenStore
    from vqmae.mae.pretrain_plots import plot_curves

    out = check_run_folder(cfg.out)
    try:
        store = TokenStore.open(cfg.tokens)
    except StoreError as e:
        raise PretrainError(str(e)) from None
    if cfg.resume:
        check_resume_store(out, cfg.tokens, store.provenance)
    mae_cfg = build_model_config(cfg, store.provenance)
    modalities = mae_cfg.modalities
    acc = make_accelerator(cfg.train.mixed_precision, cfg.train.grad_accum)
    run_ = Run(out, cfg, is_main=acc.is_main_process, tensorboard=cfg.train.tensorboard)
    t_start = time.time()
    try:
        if acc.is_main_process:
            record_store(out, cfg.tokens, store.provenance)
        clip_ids = _read_clip_list(cfg.clips, store) if cfg.clips else list(range(len(store)))
        train_ids, val_ids = split_clips(store, clip_ids, cfg.val_fraction, cfg.train.seed)
        train_ds = TokenDataset(store, train_ids, window_seconds=cfg.window_seconds, mode="random",
                                modalities=modalities, seed=cfg.train.seed)
        val_ds = (TokenDataset(store, val_ids, window_seconds=cfg.window_seconds, mode="center",
                               modalities=modalities) if val_ids else None)
        if len(train_ds) == 0:
            raise PretrainError(f"{cfg.tokens}: no clip to pretrain on")
        baselines = code_frequency_baselines(store, train_ids, modalities, cfg.baseline_clips)

        torch.manual_seed(cfg.train.seed)
        model = VQMAEAV(mae_cfg)
        if cfg.codebook_init:
            init_from_tokenizer_codebooks(model.encoder, store, run_)
        n_params = sum(p.numel() for p in model.parameters())
        run_.info("VQ-MAE-AV (%s preset, %s fusion, modalities %s): %s parameters, %s patches per window",
                  cfg.preset, mae_cfg.fusion, "+".join(modalities), f"{n_params:,}",
                  " + ".join(f"{mae_cfg.spec(m).num_patches} {m}" for m in modalities))
        run_.info("data: %d training clips, %d held-out clips (%d speakers held out), %.3g s windows",
                  len(train_ds), len(val_ids), len({store.clips[i].speaker for i in val_ids}),
                  cfg.window_seconds)
        run_.info("code-frequency baselines (accuracy to beat): %s",
                  ", ".join(f"{m}: {100 * baselines[f'freq_acc_{m}']:.1f} % most frequent code, "
                            f"{100 * baselines[f'pos_freq_acc_{m}']:.1f} % per-position mode" for m in modalities))

        def eval_fn(unwrapped: torch.nn.Module, epoch: int) -> dict[str, float]:
            metrics = evaluate_masked(unwrapped, val_ds, cfg, cfg.train.batch_size, cfg.val_max_items) \
                if val_ds is not None else {}
            return {**metrics, **baselines}

        result = fit(model, train_ds, make_loss_fn(cfg, mae_cfg), cfg.train, run_, accelerator=acc,
                     eval_fn=eval_fn, resume=cfg.resume)
        summary: dict[str, Any] = {"steps": result.steps, "epochs": result.epochs_done,
                                   "seconds": round(time.time() - t_start, 1), "parameters": n_params,
                                   "train_clips": len(train_ds), "val_clips": len(val_ids),
                                   "baselines": baselines}
        if acc.is_main_process:
            summary.update(_final_scores(run_, baselines, modalities))
            scored = summary.get("val") or summary.get("train") or {}
            meta = {"token_store": {"path": str(Path(cfg.tokens).resolve()),
                                    "provenance": {m: provenance_record(store.provenance[m]) for m in modalities}},
                    "pretrain": {"preset": cfg.preset, "masking": config_to_dict(cfg.masking),
                                 "loss": config_to_dict(cfg.loss), "steps": result.steps,
                                 "baselines": baselines, "final": scored}}
            result.model.save_pretrained(out / "model", metadata=meta)
            from vqmae.hub import make_self_contained

            make_self_contained(out / "model", strict=False)  # the store's tokenizers go inside the folder
            write_json(out / "summary.json", summary)
            plot_curves(run_.metrics_path, out / "curves.png", modalities, baselines)
            for m in modalities:
                if f"acc_{m}" in scored:
                    run_.info("%s: masked-token accuracy %.1f %% (%s) vs %.1f %% most frequent code / "
                              "%.1f %% per-position mode", m, 100 * scored[f"acc_{m}"],
                              "held-out" if "val" in summary else "train",
                              100 * baselines[f"freq_acc_{m}"], 100 * baselines[f"pos_freq_acc_{m}"])
            run_.info("pretraining done in %.0f s: model in %s", time.time() - t_start, out / "model")
        acc.wait_for_everyone()
        return PretrainResult(summary, val_ids, store, acc.is_main_process)
    finally:
        run_.close()

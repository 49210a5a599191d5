"""The VSSL stages of ``vqmae demo vssl=true`` (:mod:`vqmae.stage_runner` runs them after
``finetune``, before ``report``): ``pretrain-vssl`` for each pretext (visual, audio, multitask)
with a CPU-affordable recipe, then ``vqmae finetune --init RUN/vssl/pretrain_<task>/audio_encoder``
on the run's folds for each encoder (audio: also an encoder of the same architecture from
scratch), in the demo's fine-tuning preset and with the VQ-MAE-AV model's window; the report's
VSSL section (:func:`vqmae.vssl.report.vssl_section`) puts them beside VQ-MAE-AV's audio branch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vqmae.vssl.config import TASKS as VSSL_TASKS

VSSL_STAGES: dict[str, str] = {**{f"vssl_{t}": "pretrain-vssl" for t in VSSL_TASKS},
                               **{f"finetune_vssl_{t}": "finetune" for t in VSSL_TASKS}}
"""Stage name -> CLI command, in run order."""
PRETRAIN_RECIPE = ["--preset", "tiny", "max_clips=96", "max_val_clips=12", "window=8", "items_per_clip=4",
                   "train.batch_size=8", "train.epochs=24", "train.lr=5e-3"]
"""docs/VISUAL_SSL.md's CPU recipe: the tiny model, 96 training clips, 1152 steps (1.5–4 CPU minutes
per pretext on the demo corpus; the visual ones the longest)."""


def vssl_stage_dirs(run: Path) -> dict[str, Path]:
    """Where each VSSL stage writes: ``RUN/vssl/pretrain_<task>``, ``RUN/vssl/finetune_<task>``."""
    return {stage: Path(run) / "vssl" / (f"pretrain_{stage[5:]}" if stage.startswith("vssl_")
                                         else f"finetune_{stage[len('finetune_vssl_'):]}")
            for stage in VSSL_STAGES}


def _window_seconds(cfg: Any) -> float:
    """The window of the run's VQ-MAE-AV model (its pretraining preset's; 0 = the default 2 s)."""
    from vqmae.presets import preset_values

    try:
        return float(preset_values("pretrain", cfg.mae_preset).get("window_seconds", 0.0))
    except (KeyError, ValueError):
        return 0.0


def vssl_stage_commands(cfg: Any, run: Path, prepared: Path, tokens: Path, detect_faces: bool
                        ) -> dict[str, list[str]]:
    """The argv of every VSSL stage (module arguments). ``cfg``: the pipeline's settings; the
    fine-tuning runs get the ``finetune`` stage's preset arguments (e.g. ``max_folds`` of quick)."""
    d = vssl_stage_dirs(run)
    cmds: dict[str, list[str]] = {}
    for t in VSSL_TASKS:
        cmds[f"vssl_{t}"] = ["--manifest", str(prepared), "--out", str(d[f"vssl_{t}"]), "--task", t,
                             *PRETRAIN_RECIPE, f"detect_faces={str(detect_faces).lower()}", f"train.seed={cfg.seed}"]
    window = _window_seconds(cfg)
    for t in VSSL_TASKS:
        experiments = "finetune,scratch" if t == "audio" else "finetune"
        cmds[f"finetune_vssl_{t}"] = [
            "--tokens", str(tokens), "--init", str(d[f"vssl_{t}"] / "audio_encoder"),
            "--folds", str(prepared / "folds.json"), "--out", str(d[f"finetune_vssl_{t}"]),
            "--preset", cfg.finetune_preset, "modalities=[audio]", f"experiments=[{experiments}]",
            f"seed={cfg.seed}", *([f"window_seconds={window:g}"] if window else []),
            *[str(a) for a in cfg.preset_args.get("finetune", [])]]
    return cmds

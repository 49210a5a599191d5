"""Runs the pipeline's stages (``vqmae demo`` / ``vqmae run``): each stage is a CLI command
(``vqmae.cli.COMMANDS`` gives the order and modules; this module adds the folder each writes in the
run), wired output to input, run as a subprocess (or in this process), skipped on a rerun when its
command line and every upstream stage are unchanged (``RUN/stages.json``), then the run report."""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from vqmae.errors import UserError
from vqmae.io import read_json, write_json
from vqmae.runs import log
from vqmae.vssl.pipeline import VSSL_STAGES, vssl_stage_commands, vssl_stage_dirs

STAGE_FOLDERS: dict[str, str] = {
    "synth": "corpus", "prepare": "prepared", "train-tokenizer": "tokenizer_{modality}",
    "tokenize": "tokens", "pretrain": "pretrain", "finetune": "finetune", "report": ".",
}
"""The CLI commands the pipeline runs, and the folder of the run each one writes. Their order and
modules come from ``vqmae.cli.COMMANDS``; a folder with ``{modality}`` makes one stage per modality."""
MODALITIES = ("audio", "visual")
ACCELERATED = {"train-tokenizer", "tokenize", "pretrain", "finetune"}
"""Commands run under ``accelerate launch`` when num_processes > 1."""


def pipeline_stages() -> dict[str, str]:
    """Stage name -> CLI command, in pipeline order (``tokenizer_audio``, ``tokenizer_visual``
    for ``train-tokenizer``)."""
    from vqmae.cli import COMMANDS

    stages: dict[str, str] = {}
    for command in COMMANDS:
        folder = STAGE_FOLDERS.get(command)
        if folder is None:
            continue
        if "{modality}" in folder:
            stages.update({folder.format(modality=m): command for m in MODALITIES})
        else:
            stages[command] = command
    return stages


STAGES = list(pipeline_stages())
FACE_CENTRED = {"synthetic", "voxceleb2"}


@dataclass
class PipelineConfig:
    """Settings of ``vqmae demo`` / ``vqmae run``."""

    mode: Literal["demo", "run"] = "demo"
    """demo: generate the synthetic corpus first; run: use dataset/root."""
    out: str = ""
    """Run folder ('' = runs/demo, or runs/<dataset> in run mode)."""
    preset: str = ""
    """Named settings from vqmae/presets/demo.yaml: quick (about 3 minutes on 2 CPU cores; also
    --quick) | tiny (every stage at the smallest size, seconds)."""
    fresh: bool = False
    """Redo every stage."""
    redo: list[str] = field(default_factory=list)
    """Redo these stages (and every stage after them)."""
    seed: int = 0
    dataset: str = "synthetic"
    """Adapter for run mode: ravdess | crema-d | enterface | voxceleb2 | lrw | csv | synthetic."""
    root: str = ""
    """Dataset folder (run mode)."""
    detect_faces: bool | None = None
    """null = the dataset's default (off for face-centred sources: synthetic, VoxCeleb2)."""
    synth_preset: str = "demo"
    synth_speakers: int = 0
    """Speakers of the synthetic corpus (0 = the preset's)."""
    protocol: str = "kfold"
    """Fold protocol (vqmae prepare): kfold | loso | ravdess6 | cremad5."""
    folds: int = 0
    """k of k-fold (0 = 5: the demo's 30 speakers give 18 training / 6 validation / 6 test per fold)."""
    tokenizer_preset: str = "demo"
    mae_preset: str = "demo"
    finetune_preset: str = "demo"
    modalities: list[str] = field(default_factory=lambda: ["audio", "visual", "av"])
    experiments: list[str] = field(default_factory=lambda: ["codes", "finetune"])
    trained_modalities: list[str] = field(default_factory=lambda: ["av"])
    """Input sets of the trained experiments (finetune, scratch): one audio+visual model per fold,
    also tested with each modality alone ([] = every set of ``modalities``)."""
    audio_tokenizer: str = ""
    """Use this trained audio tokenizer folder instead of training one (e.g. from VoxCeleb2)."""
    visual_tokenizer: str = ""
    """Use this trained visual tokenizer folder instead of training one."""
    pretrained: str = ""
    """Use this pretrained VQ-MAE-AV folder instead of pretraining (fine-tune only)."""
    in_process: bool = False
    """Run each stage's command in this process (``vqmae.cli.main``) instead of a subprocess:
    faster for tiny runs and tests; no ``accelerate launch``."""
    num_processes: int = 1
    """> 1: training stages run under ``accelerate launch --multi_gpu --num_processes N``."""
    stages: list[str] = field(default_factory=lambda: list(STAGES))
    """Stages to run (the others must already be done)."""
    args: dict = field(default_factory=dict)
    """Extra command-line arguments per stage, e.g. {pretrain: ["train.epochs=50"]}."""
    preset_args: dict = field(default_factory=dict)
    """Extra arguments per stage that a preset sets (before args)."""
    vssl: bool = False
    """Also the visually guided SSL audio encoders (vqmae.vssl.pipeline): pretrain-vssl (visual,
    audio, multitask) and finetune of each on the same folds (audio), after finetune; the report
    puts them beside VQ-MAE-AV's audio branch. About 10 more CPU minutes on the demo corpus."""


def _stage_dirs(run: Path) -> dict[str, Path]:
    stages = pipeline_stages()
    return {stage: run / STAGE_FOLDERS[command].format(modality=stage.rpartition("_")[2])
            for stage, command in stages.items()}


def stage_commands(cfg: PipelineConfig, run: Path) -> dict[str, list[str]]:
    """The argv of every stage (module arguments, without ``python -m MODULE``)."""
    d = _stage_dirs(run)
    dataset = "synthetic" if cfg.mode == "demo" else cfg.dataset
    root = str(d["synth"]) if cfg.mode == "demo" else cfg.root
    detect = cfg.detect_faces if cfg.detect_faces is not None else dataset not in FACE_CENTRED
    cmds: dict[str, list[str]] = {}
    if cfg.mode == "demo":
        cmds["synth"] = ["--preset", cfg.synth_preset, "--out", str(d["synth"]), "--seed", str(cfg.seed)]
        if cfg.synth_speakers:
            cmds["synth"] += ["--speakers", str(cfg.synth_speakers)]
    cmds["prepare"] = ["--dataset", dataset, "--root", root, "--out", str(d["prepare"]),
                       "--protocol", cfg.protocol, "--k", str(cfg.folds or 5), "--seed", str(cfg.seed),
                       f"detect_faces={str(detect).lower()}"]
    for modality in ("audio", "visual"):
        cmds[f"tokenizer_{modality}"] = [
            "--modality", modality, "--manifest", str(d["prepare"]), "--out", str(d[f"tokenizer_{modality}"]),
            "--preset", cfg.tokenizer_preset, f"data.detect_faces={str(detect).lower()}",
            f"train.seed={cfg.seed}"]
    audio_tok = cfg.audio_tokenizer or str(d["tokenizer_audio"] / "model")
    visual_tok = cfg.visual_tokenizer or str(d["tokenizer_visual"] / "model")
    if cfg.audio_tokenizer:
        del cmds["tokenizer_audio"]
    if cfg.visual_tokenizer:
        del cmds["tokenizer_visual"]
    cmds["tokenize"] = ["--manifest", str(d["prepare"]),
                        "--audio-tokenizer", audio_tok, "--visual-tokenizer", visual_tok,
                        "--out", str(d["tokenize"]), f"detect_faces={str(detect).lower()}"]
    cmds["pretrain"] = ["--tokens", str(d["tokenize"]), "--out", str(d["pretrain"]),
                        "--preset", cfg.mae_preset, f"train.seed={cfg.seed}"]
    if cfg.pretrained:
        del cmds["pretrain"]
    cmds["finetune"] = ["--tokens", str(d["tokenize"]), "--init", cfg.pretrained or str(d["pretrain"] / "model"),
                        "--folds", str(d["prepare"] / "folds.json"), "--out", str(d["finetune"]),
                        "--preset", cfg.finetune_preset,
                        f"modalities=[{','.join(cfg.modalities)}]",
                        f"experiments=[{','.join(cfg.experiments)}]", f"seed={cfg.seed}"]
    if cfg.trained_modalities:
        cmds["finetune"].append(f"trained_modalities=[{','.join(cfg.trained_modalities)}]")
    if cfg.vssl:
        cmds.update(vssl_stage_commands(cfg, run, d["prepare"], d["tokenize"], detect))
    for stage, extra in cfg.preset_args.items():
        if stage in cmds:
            cmds[stage] += [str(a) for a in extra]
    for stage, extra in cfg.args.items():
        if stage not in cmds:
            close = difflib.get_close_matches(stage, list(cmds), n=1)
            raise UserError(f"args: unknown stage '{stage}'" + (f"; did you mean '{close[0]}'?" if close else
                                                                 f" (stages: {', '.join(cmds)})"))
        cmds[stage] += [str(a) for a in (extra if isinstance(extra, list) else shlex.split(str(extra)))]
    return cmds


def _command(stage: str) -> str:
    """The CLI command of a stage (the VSSL stages included)."""
    return {**pipeline_stages(), **VSSL_STAGES}[stage]


def _launcher(stage: str, cfg: PipelineConfig) -> list[str]:
    from vqmae.cli import COMMANDS

    command = _command(stage)
    module = COMMANDS[command][0]
    if cfg.num_processes > 1 and command in ACCELERATED:
        return [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu",
                "--num_processes", str(cfg.num_processes), "--num_machines", "1",
                "--dynamo_backend", "no", "--mixed_precision", "no", "-m", module]
    return [sys.executable, "-m", module]


def _display_command(stage: str, cfg: PipelineConfig) -> list[str]:
    """What a user types for this stage (recorded in stages.json and the report)."""
    launcher = _launcher(stage, cfg)
    if launcher[1:3] == ["-m", "accelerate.commands.launch"]:
        return ["accelerate", "launch", *launcher[3:]]
    return ["vqmae", _command(stage)]


def _key(parts: list[str]) -> str:
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:16]


def run(cfg: PipelineConfig) -> int:
    name = "demo" if cfg.mode == "demo" else (cfg.dataset or "run")
    run_dir = Path(cfg.out or f"runs/{name}").resolve()
    if cfg.mode == "run" and not cfg.root:
        raise UserError("run mode needs root=DATASET_FOLDER (and dataset=NAME)")
    for s in cfg.stages + cfg.redo:
        if s not in STAGES and s not in VSSL_STAGES:
            close = difflib.get_close_matches(s, STAGES, n=1)
            raise UserError(f"unknown stage '{s}'" + (f"; did you mean '{close[0]}'?" if close else ""))
    run_dir.mkdir(parents=True, exist_ok=True)
    from vqmae.config import save_config

    save_config(cfg, run_dir / "pipeline.yaml")
    dirs = {**_stage_dirs(run_dir), **vssl_stage_dirs(run_dir)}
    cmds = stage_commands(cfg, run_dir)
    state_path = run_dir / "stages.json"
    state = read_json(state_path) if state_path.is_file() and not cfg.fresh else {}
    order = [s for s in [*STAGES[:-1], *VSSL_STAGES, STAGES[-1]] if s in cmds or s == "report"]
    selected = set(cfg.stages) | (set(VSSL_STAGES) if "finetune" in cfg.stages else set())
    redo_from = min((order.index(s) for s in cfg.redo if s in order), default=len(order))
    upstream_key = ""
    t_start = time.time()
    for i, stage in enumerate(order):
        argv = cmds.get(stage, [])
        key = _key([upstream_key, stage, argv])
        upstream_key = key
        prev = state.get(stage, {})
        done = prev.get("status") == "done" and prev.get("key") == key and i < redo_from and not cfg.fresh
        if stage not in selected:
            needed_later = any(s in selected for s in order[i + 1:])
            if needed_later and not done and stage != "report":
                raise UserError(f"stage '{stage}' is not done yet but later stages need it; "
                                f"add it to stages=")
            continue
        if done:
            log.info("[%s] done earlier (%.0f s); skipping — --fresh or redo=[%s] to run it again",
                     stage, prev.get("seconds", 0), stage)
            continue
        t0 = time.time()
        if stage == "report":
            from vqmae.run_report import build_report

            md, html = build_report(run_dir)
            command = f"vqmae report {run_dir}"
        else:
            out_dir = dirs[stage]
            if out_dir.exists() and (cfg.fresh or prev.get("key") != key) and out_dir != run_dir:
                shutil.rmtree(out_dir)  # stale output of another configuration
            full = _launcher(stage, cfg) + argv
            command = shlex.join(_display_command(stage, cfg) + argv)
            log.info("[%s] %s", stage, command)
            if cfg.in_process:
                from vqmae.cli import main as cli_main

                returncode = cli_main([_command(stage), *argv])
            else:
                returncode = subprocess.run(full, env=dict(os.environ)).returncode
            if returncode != 0:
                state[stage] = {"status": "failed", "key": key, "command": command,
                                "seconds": round(time.time() - t0, 1), "returncode": returncode}
                write_json(state_path, state)
                raise UserError(f"stage '{stage}' failed (exit {returncode}); command: {command}")
        state[stage] = {"status": "done", "key": key, "command": command,
                        "seconds": round(time.time() - t0, 1),
                        "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}
        write_json(state_path, state)
        log.info("[%s] finished in %.0f s", stage, time.time() - t0)
    total = sum(v.get("seconds", 0) for v in state.values())
    print()
    print(f"vqmae {cfg.mode}: all stages done in {time.time() - t_start:.0f} s this time "
          f"({total:.0f} s of stage time in all).")
    width = max(17, *(len(s) for s in order))
    for stage in order:
        s = state.get(stage, {})
        print(f"  {stage:<{width}} {s.get('status', '-'):<6} {s.get('seconds', 0):7.1f} s")
    print(f"report: {run_dir / 'report.html'}  (and report.md)")
    return 0

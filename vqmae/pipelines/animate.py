"""Animate a still face with speech using a talking-face model from `vqmae pretrain-vssl`.

    vqmae animate --model runs/vssl/model --image face.png --audio speech.wav --out talking.mp4 \
        [--size 256] [--device cpu|cuda|auto]

Writes an mp4 (H.264 + AAC, 25 fps) of the generated face with the original audio. The image is
centre-cropped to a square and resized to the model's face size: give a face-centred picture.
``--model`` is a model folder (or the run folder holding ``model/``) of a visual or multitask run.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from vqmae.config import setting
from vqmae.pipelines.common import UserError, stage_main

DESCRIPTION = __doc__ or ""


@dataclass(kw_only=True)
class AnimateConfig:
    model: str = setting(help="vssl model folder (or a pretrain-vssl run folder).")
    image: str = setting(help="Still face image (png / jpg).")
    audio: str = setting(help="Speech (wav / flac / ogg: anything soundfile reads).")
    out: str = setting(help="Output video (.mp4).")
    size: int = setting(256, ge=16, le=2048, help="Side of the output video (the generated face upscaled).")
    device: Literal["auto", "cpu", "cuda"] = "auto"


def run(cfg: AnimateConfig) -> dict:
    import torch

    from vqmae.checkpoint import ModelFolderError
    from vqmae.vssl.animate import animate, load_face_image, load_speech, write_talking_video
    from vqmae.vssl.model import VSSLModel

    folder = Path(cfg.model)
    if (folder / "model" / "config.json").is_file():
        folder = folder / "model"
    for what, p in (("image", cfg.image), ("audio", cfg.audio)):
        if not Path(p).is_file():
            raise UserError(f"--{what} {p}: no such file")
    if Path(cfg.out).suffix.lower() != ".mp4":
        raise UserError(f"--out {cfg.out}: must end in .mp4")
    try:
        model = VSSLModel.from_pretrained(folder)
    except ModelFolderError as e:
        raise UserError(str(e)) from None
    if not model.config.visual:
        raise UserError(f"--model {cfg.model}: a '{model.config.task}' model has no face generator "
                        "(train it with --task visual or multitask)")
    device = "cuda" if cfg.device == "auto" and torch.cuda.is_available() else cfg.device.replace("auto", "cpu")
    model = model.to(device)
    try:
        face = load_face_image(cfg.image, model.config.generator.face_size)
    except OSError as e:
        raise UserError(f"--image {cfg.image}: cannot read it ({e})") from None
    try:
        wave, original, sr = load_speech(cfg.audio, model.encoder.sample_rate)
    except (RuntimeError, OSError) as e:
        raise UserError(f"--audio {cfg.audio}: cannot read it ({e})") from None
    if len(wave) < model.encoder.samples_per_frame:
        raise UserError(f"--audio {cfg.audio}: shorter than one video frame (40 ms)")
    frames = animate(model, face, wave)
    write_talking_video(cfg.out, frames, original, sr, size=cfg.size)
    print(f"{cfg.out}: {len(frames)} frames ({len(frames) / 25:.2f} s) at {cfg.size}x{cfg.size}")
    return {"frames": len(frames), "out": cfg.out}


def main(argv: list[str] | None = None) -> int:
    return stage_main("animate", DESCRIPTION, AnimateConfig, run, list(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    raise SystemExit(main())

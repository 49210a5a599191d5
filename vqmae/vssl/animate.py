"""Animate a still face with speech: the talking-face generator of a ``vssl`` model on its own.

    face = load_face_image("face.png", model.config.generator.face_size)   # (H, W, 3) uint8
    wave, original, sr = load_speech("speech.wav", model.encoder.sample_rate)
    frames = animate(model, face, wave)                                      # (T, H, W, 3) uint8
    write_talking_video("talking.mp4", frames, original, sr, size=256)

The image is centre-cropped to a square and resized to the model's face size (give a
face-centred picture, like the training crops). The speech is mixed to mono, resampled to the
encoder's rate and peak-normalised as the clip loader does; the video carries the *original*
samples (mono) at their own rate. ``T = 16 kHz samples // 640`` (25 fps).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from vqmae.vssl.model import VSSLModel, to_model_images, to_uint8_images

SILENCE_PEAK = 1e-4


def load_face_image(path: str | Path, size: int) -> np.ndarray:
    """Image file -> centre square crop resized to ``(size, size, 3)`` uint8 RGB."""
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("RGB")
        w, h = im.size
        s = min(w, h)
        left, top = (w - s) // 2, (h - s) // 2
        im = im.crop((left, top, left + s, top + s)).resize((size, size), Image.Resampling.LANCZOS)
        return np.asarray(im, dtype=np.uint8).copy()


def load_speech(path: str | Path, sample_rate: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Audio file (soundfile) -> (model input ``(S,)`` float32 at ``sample_rate``, peak-normalised;
    the original mono samples ``(S0,)`` float32; their rate)."""
    import soundfile as sf

    data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    original = data.mean(axis=1).astype(np.float32)
    wave = torch.from_numpy(original)
    if sr != sample_rate:
        import torchaudio

        wave = torchaudio.functional.resample(wave, sr, sample_rate)
    wave = wave.numpy().astype(np.float32)
    peak = float(np.abs(wave).max()) if wave.size else 0.0
    if peak > SILENCE_PEAK:
        wave = wave / peak
    return wave, original, int(sr)


@torch.no_grad()
def animate(model: VSSLModel, face: np.ndarray, wave: np.ndarray, chunk: int = 64) -> np.ndarray:
    """Still ``(H, W, 3)`` uint8 + speech ``(S,)`` at the encoder's rate -> frames ``(T, H, W, 3)``
    uint8. Frames are rendered ``chunk`` at a time with the audio window's context around each
    chunk, so the result does not depend on ``chunk``."""
    if not model.config.visual:
        raise ValueError(f"a '{model.config.task}' model has no face generator (train with task visual or multitask)")
    size = model.config.generator.face_size
    if face.shape[:2] != (size, size):
        from vqmae.vssl.data import resize_faces

        face = resize_faces(face[None], size)[0]
    model.eval()
    dev = next(model.parameters()).device
    feats = model.encoder.encode(torch.from_numpy(np.asarray(wave, np.float32)).to(dev)[None])  # (1, T, D)
    still = to_model_images(torch.from_numpy(face).to(dev))[None]
    k = model.config.generator.audio_window
    t = feats.shape[1]
    out = []
    for s in range(0, t, chunk):
        e = min(t, s + chunk)
        a, b = max(0, s - k), min(t, e + k)
        gen = model.decode_frames(feats[:, a:b], still)[0, s - a: s - a + (e - s)]
        out.append(to_uint8_images(gen).cpu().numpy())
    return np.concatenate(out, axis=0)


def write_talking_video(path: str | Path, frames: np.ndarray, audio: np.ndarray, sample_rate: int,
                        size: int = 256, fps: float = 25.0) -> Path:
    """mp4 (H.264 + AAC) of ``frames`` ``(T, h, w, 3)`` upscaled to ``size`` (even) and ``audio``
    ``(S,)`` float in [-1, 1] at ``sample_rate``."""
    from vqmae.synth.writer import write_clip

    size = int(size) + int(size) % 2
    if frames.shape[1] != size:
        import cv2

        frames = np.stack([cv2.resize(f, (size, size), interpolation=cv2.INTER_CUBIC) for f in frames])
    audio = np.clip(np.asarray(audio, np.float32), -1.0, 1.0)
    return write_clip(path, frames, audio, fps=fps, sample_rate=sample_rate, container="mp4")

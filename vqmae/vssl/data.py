"""Training items of the visually guided SSL model: windows of decoded, face-cropped clips.

:class:`ClipWindows` cuts each clip (faces uint8 ``(T, H, W, 3)`` + audio float32 ``(T * 640,)``)
into training items::

    {"audio": (W * 640,) float32, "frames": (W, H, W, 3) uint8, "still": (H, W, 3) uint8,
     "frame_mask": (W,) float32, "index": ()}

``W`` = ``window`` frames starting at a random frame; ``still`` is a random frame of the same
clip *outside* the window when the clip is longer than the window (else a frame inside it, whose
``frame_mask`` entry is 0, so no frame is ever its own identity image). Randomness depends only
on ``(seed, epoch, index)`` (exact resume; ``set_epoch`` is called by ``vqmae.training.fit``);
``deterministic=True`` always takes the middle window and a fixed still (validation, grids).

:class:`ClipCache` keeps decoded clips on disk as ``.npy`` pairs (memory-mapped reads), keyed by
the media file (path, size, mtime) and the decoding settings, so epochs after the first skip
video decoding, face cropping and resampling.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from vqmae.io import atomic_path


@dataclass
class DecodedClip:
    """``faces`` uint8 ``(T, H, W, 3)``; ``audio`` float32 ``(T * samples_per_frame,)``."""

    faces: np.ndarray
    audio: np.ndarray
    id: str = ""
    speaker: str = ""

    @property
    def num_frames(self) -> int:
        return int(self.faces.shape[0])


class ClipWindows(Dataset):
    """Windows of ``window`` frames from clips (module doc). ``clips`` is a sequence of
    :class:`DecodedClip` or a callable ``i -> DecodedClip`` with ``num_clips`` given."""

    def __init__(self, clips: Sequence[DecodedClip] | Callable[[int], DecodedClip], *, window: int,
                 samples_per_frame: int = 640, items_per_clip: int = 1, seed: int = 0,
                 deterministic: bool = False, num_clips: int | None = None):
        if window < 1:
            raise ValueError("window must be >= 1 frame")
        self._get = clips if callable(clips) else clips.__getitem__
        self.num_clips = num_clips if num_clips is not None else len(clips)  # type: ignore[arg-type]
        self.window, self.spf = window, samples_per_frame
        self.items_per_clip, self.seed = items_per_clip, seed
        self.deterministic = deterministic
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_clips * self.items_per_clip

    def _choose(self, n: int, index: int) -> tuple[int, int]:
        w = self.window
        if self.deterministic:
            start = max(0, (n - w) // 2)
            outside = [i for i in (0, n - 1) if not start <= i < start + w]
            return start, outside[0] if outside else start
        rng = np.random.default_rng([self.seed, self.epoch, index])
        start = int(rng.integers(0, max(1, n - w + 1)))
        candidates = np.concatenate([np.arange(0, start), np.arange(start + w, n)])
        if candidates.size:
            return start, int(rng.choice(candidates))
        return start, int(rng.integers(0, n))

    def __getitem__(self, index: int) -> dict[str, Any]:
        clip = self._get(index // self.items_per_clip)
        n, w, spf = clip.num_frames, self.window, self.spf
        start, still = self._choose(n, index)
        frames = np.asarray(clip.faces[start:start + w])
        audio = np.asarray(clip.audio[start * spf:(start + w) * spf], dtype=np.float32)
        mask = np.ones(w, dtype=np.float32)
        if frames.shape[0] < w:  # short clip: pad with the last frame / silence, masked out
            pad = w - frames.shape[0]
            mask[frames.shape[0]:] = 0
            frames = np.concatenate([frames, np.repeat(frames[-1:], pad, axis=0)])
        if audio.shape[0] < w * spf:
            audio = np.concatenate([audio, np.zeros(w * spf - audio.shape[0], np.float32)])
        if start <= still < start + w:
            mask[still - start] = 0
        return {"audio": torch.from_numpy(np.array(audio)),  # copies: the cache is read-only
                "frames": torch.from_numpy(np.array(frames)),
                "still": torch.from_numpy(np.array(clip.faces[still])),
                "frame_mask": torch.from_numpy(mask), "index": torch.tensor(index)}


def resize_faces(faces: np.ndarray, size: int) -> np.ndarray:
    """uint8 ``(T, h, w, 3)`` -> ``(T, size, size, 3)`` (area interpolation; unchanged if equal)."""
    if faces.shape[1] == size and faces.shape[2] == size:
        return faces
    import cv2

    return np.stack([cv2.resize(f, (size, size), interpolation=cv2.INTER_AREA) for f in faces])


class ClipCache:
    """Decoded, face-cropped clips on disk (module doc). ``decode(path) -> DecodedClip`` runs on a miss."""

    def __init__(self, folder: str | Path | None, decode: Callable[[str], DecodedClip],
                 settings: dict[str, Any]):
        self.folder = Path(folder) if folder else None
        self.decode = decode
        self.settings_key = json.dumps(settings, sort_keys=True, default=str)
        self.hits = self.misses = 0
        if self.folder is not None:
            self.folder.mkdir(parents=True, exist_ok=True)

    def key(self, path: str | Path) -> str:
        st = os.stat(path)
        text = f"{Path(path).resolve()}|{st.st_size}|{st.st_mtime_ns}|{self.settings_key}"
        return hashlib.sha256(text.encode()).hexdigest()[:24]

    def get(self, path: str | Path, id: str = "", speaker: str = "") -> DecodedClip:
        if self.folder is None:
            self.misses += 1
            clip = self.decode(str(path))
            clip.id, clip.speaker = id, speaker
            return clip
        k = self.key(path)
        faces_p, audio_p = self.folder / f"{k}.faces.npy", self.folder / f"{k}.audio.npy"
        if faces_p.is_file() and audio_p.is_file():
            self.hits += 1
            return DecodedClip(np.load(faces_p, mmap_mode="r"), np.load(audio_p, mmap_mode="r"), id, speaker)
        self.misses += 1
        clip = self.decode(str(path))
        with atomic_path(audio_p) as tmp, open(tmp, "wb") as f:
            np.save(f, np.ascontiguousarray(clip.audio, dtype=np.float32))
        with atomic_path(faces_p) as tmp, open(tmp, "wb") as f:
            np.save(f, np.ascontiguousarray(clip.faces, dtype=np.uint8))
        clip.id, clip.speaker = id, speaker
        return clip


def collate(items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    return {k: torch.stack([it[k] for it in items]) for k in items[0]}

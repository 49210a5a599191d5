"""Training frames for the tokenizers, decoded once from a manifest and held in memory.

    train_recs, val_recs = split_speakers(manifest.records, val_speakers=0, seed=0)
    frames = load_frames(manifest, train_recs, tokenizer, FrameDataConfig())
    ds = AudioFrameDataset(frames, context=2)      # item: (1 + 2·context, F) power windows
    ds = VisualFrameDataset(frames)                # item: (3, s, s) float in [-0.5, 0.5]

* Each clip is decoded once with :func:`vqmae.data.clips.load_clip` (the clip path of every
  stage, with its checks; audio: optionally only its audio track, which skips video decoding and
  face crops) and turned into the
  tokenizer's input frames with ``tokenizer.prepare``: power STFT frames (float32) for audio,
  face crops at the tokenizer's size (uint8, 3× smaller than floats) for video, every
  ``frame_stride``-th frame. Clips that fail to decode are skipped with a warning.
* Validation holds out whole speakers (:func:`split_speakers`), so reconstruction quality is
  measured on voices and faces the tokenizer never saw.
* Under data parallelism every rank decodes its share of the clips and the shares are
  exchanged, so the set (and its order) is the same on every rank.
* Items are pure functions of the index (no randomness), batched through ``__getitems__``.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from vqmae.config import setting
from vqmae.data.clips import MODALITIES, ClipConfig, load_clip, resolve_clip_config
from vqmae.data.manifest import ClipRecord, Manifest
from vqmae.tokenizers.base import Tokenizer

log = logging.getLogger("vqmae")


@dataclass
class FrameDataConfig:
    """Which clips and frames train a tokenizer (``data`` in the train-tokenizer config)."""

    val_speakers: int = setting(0, ge=0)
    """Speakers held out for validation; 0 = about 10 % of them (at least 1 when there are 2+)."""
    max_clips: int = setting(0, ge=0)
    """Use at most this many training clips, evenly spread over the manifest (0 = all)."""
    max_val_clips: int = setting(24, ge=0)
    """Validation clips decoded (evenly spread over the held-out speakers; 0 = all)."""
    frame_stride: int = setting(1, ge=1)
    """Train on every k-th frame of each clip (neighbouring frames are nearly identical). Video:
    only those frames are decoded into memory; audio: all frames are kept (the encoder's context
    windows need them) and the training items are every k-th."""
    workers: int = setting(2, ge=0)
    """Threads decoding clips (decoding releases the GIL)."""
    detect_faces: bool | None = None
    """None: as the dataset's ``prepare`` recorded in dataset.json (else detection on)."""
    backend: str = ""
    """Media backend (auto | decord | pyav); empty: the dataset's / auto."""
    audio_only_decode: bool = True
    """Audio tokenizer: decode only the audio track (same samples as the full clip path, no
    video decoding or face crops)."""
    seed: int = 0
    """Seed of the held-out speaker choice."""


@dataclass
class ClipSpan:
    id: str
    speaker: str
    start: int
    length: int
    wave: np.ndarray | None = None
    """Audio of validation clips (for listening to reconstructions)."""


@dataclass
class FrameSet:
    """Prepared frames of many clips, concatenated: ``frames`` (N, *frame_shape)."""

    modality: str
    frames: torch.Tensor
    clips: list[ClipSpan] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.frames.shape[0])

    def clip_frames(self, i: int) -> torch.Tensor:
        c = self.clips[i]
        return self.frames[c.start:c.start + c.length]

    def clip_bounds(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(N,) start and end (exclusive) of each frame's clip."""
        start = torch.empty(len(self), dtype=torch.long)
        end = torch.empty(len(self), dtype=torch.long)
        for c in self.clips:
            start[c.start:c.start + c.length] = c.start
            end[c.start:c.start + c.length] = c.start + c.length
        return start, end

    def prepared(self, i: int) -> torch.Tensor:
        """Clip ``i`` as the tokenizer's input: (T, F) power or (T, 3, s, s) float."""
        x = self.clip_frames(i)
        return uint8_to_input(x) if self.modality == "visual" else x


def uint8_to_input(faces: torch.Tensor) -> torch.Tensor:
    """(N, s, s, 3) uint8 -> (N, 3, s, s) float32 in [-0.5, 0.5] (as VisualVQVAE.prepare)."""
    return faces.permute(0, 3, 1, 2).float().div(255.0).sub(0.5)


def input_to_uint8(x: torch.Tensor) -> torch.Tensor:
    """(N, 3, s, s) float in [-0.5, 0.5] -> (N, s, s, 3) uint8."""
    return ((x.clamp(-0.5, 0.5) + 0.5) * 255.0).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous()


# ------------------------------------------------------------------------------ splits


def split_speakers(records: Sequence[ClipRecord], val_speakers: int = 0,
                   seed: int = 0) -> tuple[list[ClipRecord], list[ClipRecord]]:
    """Hold out whole speakers: (train records, validation records), a pure function of the seed.

    ``val_speakers`` 0 = round(10 %) of the speakers, at least 1 when there are two or more. With
    a single speaker, every 10th clip is held out instead (and a warning says so).
    """
    speakers = sorted({r.speaker for r in records})
    if len(speakers) < 2:
        if records:
            log.warning("only one speaker: holding out every 10th clip (not speaker-independent)")
        val = [r for i, r in enumerate(records) if i % 10 == 9]
        ids = {r.id for r in val}
        return [r for r in records if r.id not in ids], val
    n = val_speakers or max(1, round(0.1 * len(speakers)))
    n = min(n, len(speakers) - 1)
    held = set(random.Random(seed).sample(speakers, n))
    train = [r for r in records if r.speaker not in held]
    val = [r for r in records if r.speaker in held]
    return train, val


def evenly(items: Sequence[Any], k: int) -> list[Any]:
    """At most ``k`` items spread evenly over ``items`` (k <= 0: all), order kept."""
    if k <= 0 or len(items) <= k:
        return list(items)
    return [items[math.floor(i * len(items) / k)] for i in range(k)]


# ----------------------------------------------------------------------------- loading


def clip_config_for(manifest: Manifest, data: FrameDataConfig, tokenizer: Tokenizer) -> ClipConfig:
    """The ClipConfig to decode this dataset with: :func:`vqmae.data.clips.resolve_clip_config`
    of the dataset's media settings, the tokenizer's rate and the ``data`` overrides (the same
    call ``vqmae tokenize`` makes)."""
    return resolve_clip_config(manifest.path, {tokenizer.modality: tokenizer},
                               detect_faces=data.detect_faces, backend=data.backend)


def _decode_one(path: str, tokenizer: Tokenizer, clip_cfg: ClipConfig, data: FrameDataConfig,
                keep_wave: bool) -> tuple[torch.Tensor, np.ndarray | None]:
    if tokenizer.modality == "audio":
        modalities = ("audio",) if data.audio_only_decode else MODALITIES
        wave = np.ascontiguousarray(load_clip(path, clip_cfg, modalities).audio, dtype=np.float32)
        return tokenizer.prepare(torch.from_numpy(wave)), (wave if keep_wave else None)
    faces = load_clip(path, clip_cfg).faces[:: max(1, data.frame_stride)]
    return input_to_uint8(tokenizer.prepare(torch.from_numpy(np.ascontiguousarray(faces)))), None


def _rank_world() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def load_frames(manifest: Manifest, records: Sequence[ClipRecord], tokenizer: Tokenizer,
                data: FrameDataConfig, keep_waves: bool = False) -> FrameSet:
    """Decode ``records`` and prepare their frames for ``tokenizer`` (see the module doc).

    Under torch.distributed, rank r decodes clips r, r + W, ... and all ranks receive all of
    them, in manifest order.
    """
    clip_cfg = clip_config_for(manifest, data, tokenizer)
    rank, world = _rank_world()
    mine = list(range(rank, len(records), world))

    def work(i: int):
        rec = records[i]
        try:
            x, wave = _decode_one(str(manifest.media_path(rec)), tokenizer, clip_cfg, data, keep_waves)
            return i, x, wave, None
        except Exception as e:  # a bad file must not stop training: skip it, say why
            return i, None, None, f"{type(e).__name__}: {e}"

    if data.workers > 1 and len(mine) > 1:
        with ThreadPoolExecutor(max_workers=data.workers) as pool:
            results = list(pool.map(work, mine))
    else:
        results = [work(i) for i in mine]
    if world > 1:
        gathered: list[Any] = [None] * world
        torch.distributed.all_gather_object(gathered, results)
        results = [r for part in gathered for r in part]
    results.sort(key=lambda r: r[0])

    chunks, spans, skipped = [], [], []
    n = 0
    for i, x, wave, err in results:
        rec = records[i]
        if err is not None or x is None or x.shape[0] == 0:
            reason = err or "no frames"
            skipped.append({"id": rec.id, "path": rec.path, "error": reason})
            if rank == 0:
                log.warning("skipping %s: %s", rec.path, reason)
            continue
        chunks.append(x)
        spans.append(ClipSpan(rec.id, rec.speaker, n, int(x.shape[0]), wave))
        n += int(x.shape[0])
    if not chunks:
        raise ValueError(f"no usable clips among {len(records)} (first error: "
                         f"{skipped[0]['error'] if skipped else 'none'})")
    return FrameSet(tokenizer.modality, torch.cat(chunks), spans, skipped)


# ----------------------------------------------------------------------------- datasets


def collate_frames(batch: Any) -> torch.Tensor:
    """Collate for the frame datasets: ``__getitems__`` already returns a stacked tensor."""
    if isinstance(batch, torch.Tensor):
        return batch
    return torch.stack(list(batch))


class AudioFrameDataset(Dataset):
    """Item k: power windows (1 + 2·context, F) centred on the k-th kept frame (every
    ``stride``-th frame of each clip); clip edges are repeated."""

    def __init__(self, frames: FrameSet, context: int = 0, stride: int = 1):
        if frames.modality != "audio":
            raise ValueError("AudioFrameDataset needs audio frames")
        self.frames = frames.frames
        self.context = context
        self.start, self.end = frames.clip_bounds()
        self.offsets = torch.arange(-context, context + 1)
        stride = max(1, stride)
        self.items = torch.cat([torch.arange(c.start, c.start + c.length, stride) for c in frames.clips]) \
            if frames.clips else torch.zeros(0, dtype=torch.long)

    def __len__(self) -> int:
        return int(self.items.shape[0])

    def __getitems__(self, indices: Sequence[int]) -> torch.Tensor:
        i = self.items[torch.as_tensor(list(indices), dtype=torch.long)]
        idx = i[:, None] + self.offsets[None]
        idx = torch.maximum(torch.minimum(idx, (self.end[i] - 1)[:, None]), self.start[i][:, None])
        return self.frames[idx]

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.__getitems__([index])[0]


class VisualFrameDataset(Dataset):
    """Item i: face frame (3, s, s) float32 in [-0.5, 0.5]."""

    def __init__(self, frames: FrameSet):
        if frames.modality != "visual":
            raise ValueError("VisualFrameDataset needs visual frames")
        self.frames = frames.frames

    def __len__(self) -> int:
        return int(self.frames.shape[0])

    def __getitems__(self, indices: Sequence[int]) -> torch.Tensor:
        return uint8_to_input(self.frames[torch.as_tensor(list(indices), dtype=torch.long)])

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.__getitems__([index])[0]


def frame_dataset(frames: FrameSet, tokenizer: Tokenizer, stride: int = 1) -> Dataset:
    """The training dataset of ``frames`` (audio: every ``stride``-th frame's window; video
    frames were strided when decoded)."""
    if frames.modality == "audio":
        return AudioFrameDataset(frames, context=tokenizer.config.context, stride=stride)
    return VisualFrameDataset(frames)

"""Waveform windows of a token store's clips: the evaluation harness's items for models that read
raw audio (the VSSL audio encoder) instead of tokens.

::

    ds = WaveDataset(store, clip_ids, window_seconds=2.0, mode="random", seed=0)
    item = ds[0]   # {"wave": float32 (32000,), "label": int, "targets": float32 (2,), "clip": int,
                   #  "start": int, "valid": int}

The windows are those of :class:`~vqmae.data.token_dataset.TokenDataset` over the store's audio
tokens (same modes, seeds, strides and short-clip rule; ``start`` / ``valid`` in steps of the
audio token grid, 1/50 s at the paper rates), cut from the clip's waveform instead of its tokens:
the media file of each stored clip (its manifest row, the dataset root recorded in the manifest's
``dataset.json``) decoded by the project's one clip path (:func:`vqmae.data.clips.load_clip`,
audio-only fast path, the store's ``clip_config``) at ``sample_rate``, peak-normalised per clip
as ``vqmae tokenize`` read it. Each clip is decoded once per process (:func:`clip_waves`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from fractions import Fraction
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from vqmae.data.clips import WINDOW_SECONDS
from vqmae.data.token_dataset import TokenDataset
from vqmae.data.token_store import StoreError, TokenStore
from vqmae.errors import UserError

WaveLoader = Callable[[int], np.ndarray]
"""Store clip index -> float32 ``(S,)`` waveform."""

_WAVES: dict[tuple[str, int], tuple[WaveLoader, dict[int, np.ndarray]]] = {}


def clip_waves(store: TokenStore, sample_rate: int = 16000) -> WaveLoader:
    """Store clip index -> its peak-normalised waveform float32 ``(S,)`` at ``sample_rate``,
    decoded on first use and kept in memory for the life of the process (one cache per store
    folder and rate, shared by every dataset and fold; 64 kB per second of audio at 16 kHz: 110 MB
    for the demo corpus, about 1.2 GB for CREMA-D). A store whose manifest or media files are not
    where it recorded them (a moved corpus) is a :class:`UserError` naming the file."""
    from vqmae.data.media import MediaError
    from vqmae.evaluation.noise import default_audio_loader

    key = (str(Path(store.root).resolve()), int(sample_rate))
    if key not in _WAVES:
        try:
            decode = default_audio_loader(store, sample_rate=sample_rate)
        except (StoreError, FileNotFoundError, ValueError) as e:
            raise UserError(f"waveform input: {e}") from None
        _WAVES[key] = (decode, {})
    decode, cache = _WAVES[key]

    def load(i: int) -> np.ndarray:
        wave = cache.get(i)
        if wave is None:
            try:
                wave = cache[i] = np.asarray(decode(i), dtype=np.float32)
            except (StoreError, MediaError, OSError) as e:
                raise UserError(f"waveform input of clip '{store.ids[i]}': {e}") from None
        return wave

    return load


class WaveDataset(Dataset):
    """Waveform windows of a :class:`TokenStore` (module doc).

    Args:
        store: the store (or its path).
        clip_ids: clips to use (ids or indices into ``store.clips``); None = all.
        window_seconds: window length (a multiple of the audio token period).
        mode: ``"random"`` (one window per clip, from (seed, epoch, index); :meth:`set_epoch`),
            ``"center"`` or ``"all"`` (every ``stride_seconds``, the last one ending at the clip's end).
        seed, short, stride_seconds: as :class:`TokenDataset` (``short``: ``"loop"`` repeats a
            short clip's audio from its start, ``"edge"`` repeats its last token period, ``"drop"``).
        sample_rate: rate of the waveforms (the model's).
        loader: clip index -> float32 ``(S,)``; default :func:`clip_waves` (noise evaluations
            pass a loader of noisy waveforms).

    Item: ``"wave"`` float32 ``(window_seconds * sample_rate,)``; ``"label"`` int (-1 if none);
    ``"targets"`` float32 ``(2,)`` [arousal, valence] (nan if none); ``"clip"`` int (store index);
    ``"start"``, ``"valid"`` int (audio token steps; ``valid`` < window for short clips).
    """

    modalities = ("wave",)

    def __init__(self, store: TokenStore | str | Path, clip_ids: Iterable[int | str] | None = None,
                 window_seconds: float = WINDOW_SECONDS, mode: Literal["random", "center", "all"] = "random",
                 seed: int = 0, short: Literal["loop", "edge", "drop"] = "loop",
                 stride_seconds: float | None = None, sample_rate: int = 16000,
                 loader: WaveLoader | None = None):
        if not isinstance(store, TokenStore):
            store = TokenStore.open(store)
        grid_mod = "audio" if "audio" in store.modalities else store.modalities[0]
        self.plan = TokenDataset(store, clip_ids, window_seconds, mode, (grid_mod,), seed, short, stride_seconds)
        rate = Fraction(store.frames_per_second(grid_mod)).limit_denominator(1000)
        sps = Fraction(int(sample_rate)) / rate
        if sps.denominator != 1:
            raise ValueError(f"{store.root}: {grid_mod} tokens at {float(rate):g} per second do not divide "
                             f"{sample_rate} Hz into whole samples")
        self.store, self.sample_rate, self.short = store, int(sample_rate), short
        self.samples_per_step = int(sps)
        self.window = self.plan.window
        self.window_samples = self.window * self.samples_per_step
        self.window_seconds = self.plan.window_seconds
        self.item_clip = self.plan.item_clip
        self._steps = store.frames(grid_mod)[self.item_clip].tolist()
        self._clips = self.item_clip.tolist()
        self.load = loader or clip_waves(store, sample_rate)

    @property
    def mode(self) -> str:
        return self.plan.mode

    def set_epoch(self, epoch: int) -> None:
        """Random windows depend on (seed, epoch, index): call once per epoch."""
        self.plan.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self._clips)

    def window_starts(self) -> np.ndarray:
        """int64 ``(len,)``: each item's first audio token step in the current epoch."""
        return self.plan.window_starts()

    def cut(self, wave: np.ndarray, start: int, steps: int) -> np.ndarray:
        """float32 ``(window_samples,)``: the window at token step ``start`` of a clip of ``steps``
        token steps (zero-padded where the decoded audio is a few samples shorter than its tokens;
        a clip shorter than the window is filled by the rule ``short``)."""
        sps, w = self.samples_per_step, self.window_samples
        if steps >= self.window:
            seg = wave[start * sps:start * sps + w]
        else:
            n = min(steps * sps, wave.shape[0])
            pos = np.arange(w)
            if self.short == "loop":
                pos = pos % max(n, 1)
            else:  # "edge": repeat the last token period
                last = max(n - sps, 0)
                pos = np.where(pos < n, pos, last + (pos - n) % max(n - last, 1))
            seg = wave[:n][pos] if n else np.zeros(w, np.float32)
        if seg.shape[0] < w:
            seg = np.concatenate([seg, np.zeros(w - seg.shape[0], np.float32)])
        return np.array(seg, dtype=np.float32)  # a copy: cached waveforms stay untouched

    def __getitem__(self, index: int) -> dict[str, object]:
        i, steps = self._clips[index], self._steps[index]
        start = self.plan.window_start(index)
        return {"wave": torch.from_numpy(self.cut(self.load(i), start, steps)),
                "label": int(self.store.labels[i]),
                "targets": torch.from_numpy(self.store.targets[i].copy()),
                "clip": i, "start": start, "valid": min(steps, self.window)}

"""Aligned token windows of a token store: the dataset every model trains and evaluates on.

::

    from vqmae.data.token_store import TokenStore
    from vqmae.data.token_dataset import TokenDataset

    ds = TokenDataset(TokenStore.open("out/tokens"), window_seconds=2.0, mode="random", seed=0)
    item = ds[0]   # {"audio": int32 (100, 64), "visual": int32 (50, 24, 24), "label", "targets", ...}

Windows are aligned in time: a window starts on the common frame grid of all modalities
(1/25 s for 50 audio + 25 video frames per second), so audio frame ``2c`` pairs with video frame ``c``.

**Clips shorter than a window** (rule ``short``): ``"loop"`` (default) repeats the clip from its
start until the window is full; ``"edge"`` repeats its last frame; ``"drop"`` leaves such clips out.
Items carry ``valid``: how many leading grid steps of the window are real (the rest repeat);
multiply by ``TokenDataset.per_step[modality]`` for frames of a modality (audio: 2, video: 1).
Clips without a single aligned frame (e.g. video but no audio tokens) are left out.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from vqmae.data.clips import WINDOW_SECONDS
from vqmae.data.token_store import StoreError, TokenStore


def _rate(x: float) -> Fraction:
    return Fraction(x).limit_denominator(1000)


def frame_grid(fps: dict[str, float]) -> tuple[Fraction, dict[str, int]]:
    """Common frame grid of modalities: (grid rate in steps/s, frames per step per modality).

    {"audio": 50, "visual": 25} -> (25, {"audio": 2, "visual": 1}).
    """
    rates = {m: _rate(f) for m, f in fps.items()}
    num = 0
    den = 1
    for r in rates.values():
        num = math.gcd(num, r.numerator)
        den = den * r.denominator // math.gcd(den, r.denominator)
    grid = Fraction(num, den)
    per = {}
    for m, r in rates.items():
        k = r / grid
        if k.denominator != 1:
            raise StoreError(f"frame rates {fps} have no common grid")
        per[m] = int(k)
    return grid, per


def _mix_np(seed: int, epoch: int, index: np.ndarray) -> np.ndarray:
    """uint64 hash of (seed, epoch, index) per index (a splitmix64 chain): stable across
    platforms, processes and numpy versions."""
    z = np.full(index.shape, 0x9E3779B97F4A7C15, dtype=np.uint64)
    for x in (np.full(index.shape, seed & 0xFFFFFFFFFFFFFFFF, dtype=np.uint64),
              np.full(index.shape, epoch & 0xFFFFFFFFFFFFFFFF, dtype=np.uint64), index):
        z = z + x * np.uint64(0xBF58476D1CE4E5B9)
        z ^= z >> np.uint64(31)
        z = z * np.uint64(0x94D049BB133111EB)
        z ^= z >> np.uint64(29)
    return z


class TokenDataset(Dataset):
    """Aligned token windows of a :class:`TokenStore`.

    Args:
        store: the store (or its path).
        clip_ids: clips to use (ids or indices into ``store.clips``); None = all.
        window_seconds: window length; with the paper rates 2.0 s = 100 audio + 50 video frames.
        mode: ``"random"``: one item per clip, a random window from (seed, epoch, index);
            ``"center"``: one item per clip, the centre window; ``"all"``: one item per window,
            windows tiling each clip every ``stride_seconds`` (the last one ends at the clip's end).
        modalities: modalities returned (None = all of the store's).
        seed: seed of the random windows (see :meth:`set_epoch`).
        short: rule for clips shorter than a window: ``"loop"`` | ``"edge"`` | ``"drop"``.
        stride_seconds: step between windows in mode ``"all"`` (default: the window length).
        index_dtype: ``"int32"`` (default: the models embed int32 indices directly; the MAE loss
            widens only its masked targets, per batch) or ``"int64"`` (for code that needs
            LongTensor indices, e.g. ``F.one_hot``; ~1.6x slower reads).

    Item (shapes for the paper presets, 2 s)::

        "audio": int32 (100, 64)   "visual": int32 (50, 24, 24)   (``index_dtype``)
        "start": int  first grid step (video frame) of the window in the clip
        "valid": int  real grid steps (video frames at the paper rates; ×2 for audio) at the start
                      of the window: the window length unless the clip is shorter
        "label": int  class index (-1 if none)   "targets": float32 (2,) [arousal, valence] (nan if none)
        "clip": int  index into store.clips
        (the default collate turns the ints "start", "valid", "label", "clip" into int64 (B,) tensors)
    """

    def __init__(
        self,
        store: TokenStore | str | Path,
        clip_ids: Iterable[int | str] | None = None,
        window_seconds: float = WINDOW_SECONDS,
        mode: Literal["random", "center", "all"] = "random",
        modalities: Sequence[str] | None = None,
        seed: int = 0,
        short: Literal["loop", "edge", "drop"] = "loop",
        stride_seconds: float | None = None,
        index_dtype: Literal["int32", "int64"] = "int32",
    ):
        if not isinstance(store, TokenStore):
            store = TokenStore.open(store)
        if mode not in ("random", "center", "all"):
            raise ValueError(f"mode must be 'random', 'center' or 'all', not {mode!r}")
        if short not in ("loop", "edge", "drop"):
            raise ValueError(f"short must be 'loop', 'edge' or 'drop', not {short!r}")
        if index_dtype not in ("int32", "int64"):
            raise ValueError(f"index_dtype must be 'int32' or 'int64', not {index_dtype!r}")
        self.index_dtype = np.dtype(index_dtype)
        self.store = store
        self.modalities = tuple(store.modalities if modalities is None else modalities)
        for m in self.modalities:
            if m not in store.modalities:
                raise StoreError(f"{store.root}: holds no '{m}' tokens (modalities: {store.modalities})")
        self.mode, self.seed, self.short, self.epoch = mode, int(seed), short, 0
        grid, self.per_step = frame_grid({m: store.frames_per_second(m) for m in self.modalities})
        self.window_seconds = float(window_seconds)
        self.window = self._steps(window_seconds, grid, "window_seconds")
        self.stride = self.window if stride_seconds is None else self._steps(stride_seconds, grid, "stride_seconds")
        self.window_frames = {m: self.window * k for m, k in self.per_step.items()}
        self._plan = [(m, self.per_step[m], self.window_frames[m]) for m in self.modalities]

        idx = (np.arange(len(store), dtype=np.int64) if clip_ids is None
               else np.array([store.index_of(c) for c in clip_ids], dtype=np.int64))
        # clip length in grid steps: the aligned part of all modalities
        steps = np.min(np.stack([store.frames(m)[idx] // k for m, k in self.per_step.items()]), axis=0) \
            if len(idx) else np.zeros(0, dtype=np.int64)
        keep = steps >= (self.window if short == "drop" else 1)  # no aligned frame: left out
        idx, steps = idx[keep], steps[keep]
        self.clip_steps = steps
        if mode == "all":
            clips, starts, item_steps = [], [], []
            for i, n in zip(idx.tolist(), steps.tolist()):
                s = list(range(0, max(n - self.window, 0) + 1, self.stride))
                if n > self.window and s[-1] + self.window < n:
                    s.append(n - self.window)  # the last window ends at the clip's end
                clips += [i] * len(s)
                starts += s
                item_steps += [n] * len(s)
            self.item_clip = np.array(clips, dtype=np.int64)
            self.item_start: np.ndarray | None = np.array(starts, dtype=np.int64)
            self._item_steps = np.array(item_steps, dtype=np.int64)
        else:
            self.item_clip = idx
            self.item_start = None
            self._item_steps = steps
        self._clip_list, self._steps_list = self.item_clip.tolist(), self._item_steps.tolist()
        self._starts: list[int] = []
        self._starts_epoch: int | None = None
        self._labels, self._targets = store.labels, store.targets
        self._label_list = np.asarray(store.labels).tolist()

    @staticmethod
    def _steps(seconds: float, grid: Fraction, name: str) -> int:
        x = seconds * grid
        n = round(float(x))
        if n <= 0 or abs(float(x) - n) > 1e-6:
            raise ValueError(f"{name}={seconds} is not a positive multiple of the frame grid (1/{grid} s)")
        return n

    def set_epoch(self, epoch: int) -> None:
        """Random windows depend on (seed, epoch, index): call once per epoch."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.item_clip)

    def window_starts(self) -> np.ndarray:
        """int64 (len,): first grid step (video frame at the paper rates) of every item's window
        in the current epoch. Random starts are uniform over the clip, a hash of (seed, epoch, index)."""
        if self.item_start is not None:
            return self.item_start
        span = np.maximum(self._item_steps - self.window, 0)
        if self.mode == "center":
            return span // 2
        h = _mix_np(self.seed, self.epoch, np.arange(len(span), dtype=np.uint64))
        return (h % (span + 1).astype(np.uint64)).astype(np.int64)

    def window_start(self, index: int) -> int:
        return self._current_starts()[index]

    def _current_starts(self) -> list[int]:
        if self._starts_epoch != self.epoch:
            self._starts, self._starts_epoch = self.window_starts().tolist(), self.epoch
        return self._starts

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        i = self._clip_list[index]
        start = self._current_starts()[index]
        n = self._steps_list[index]
        out: dict[str, torch.Tensor] = {}
        store = self.store
        for m, k, w in self._plan:
            if n >= self.window:
                arr = store.read_frames(i, m, start * k, start * k + w)
            else:  # short clip: fill the window by rule ``short``
                pos = np.arange(w)
                pos = pos % (n * k) if self.short == "loop" else np.minimum(pos, n * k - 1)
                arr = store.read_frames(i, m, 0, n * k)[pos]
            out[m] = torch.from_numpy(arr.astype(self.index_dtype))  # widened once from the stored uint16
        out["label"] = self._label_list[i]  # ints: cheaper than tensors; collated into int64 (B,)
        out["targets"] = torch.from_numpy(self._targets[i].copy())
        out["clip"] = i
        out["start"] = start
        out["valid"] = min(n, self.window)
        return out

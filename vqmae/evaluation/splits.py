"""Which clips each split of a speaker-independent fold uses: the fold's speakers' clips that
have what the task needs, a seeded class-stratified fraction of the training labels, and the
warnings of folds too small to mean anything."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from vqmae.data.token_store import TokenStore
from vqmae.evaluation.task import Task

MIN_TEST_SPEAKERS = 2
"""A fold tested on fewer speakers measures one person, not speaker independence."""
MIN_TEST_CLIPS = 10
"""Below this a single clip moves the fold's UAR by several points."""
MIN_TRAIN_SPEAKERS = 4
"""Fewer training speakers rarely generalise to an unseen one."""


def fold_title(fold: Any, num_folds: int | None = None) -> str:
    """How logs and results name a fold: 1-based, ``"fold 1/4"`` (``"fold 1"`` without a count).
    Folders and JSON keep the 0-based ``fold.index`` (``fold_0/``)."""
    return f"fold {fold.index + 1}/{num_folds}" if num_folds else f"fold {fold.index + 1}"


def fold_clips(store: TokenStore, fold: Any, task: Task) -> dict[str, list[int]]:
    """Store clip indices of each split of ``fold`` (``.train``, ``.val``, ``.test`` speaker lists)
    that have what ``task`` needs. Raises ``ValueError`` if a speaker is in two splits."""
    splits = {s: set(map(str, getattr(fold, s))) for s in ("train", "val", "test")}
    for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
        shared = splits[a] & splits[b]
        if shared:
            raise ValueError(f"{fold_title(fold)}: speakers {sorted(shared)[:5]} are in both {a} and {b}")
    usable = task.usable(store)
    out = {s: [i for i in store.clip_indices(spk).tolist() if usable[i]] for s, spk in splits.items()}
    if not out["train"]:
        raise ValueError(f"{fold_title(fold)}: no usable training clip in {store.root} for the "
                         f"training speakers {sorted(splits['train'])[:5]}")
    if not out["test"]:
        raise ValueError(f"{fold_title(fold)}: no usable test clip for the test speakers "
                         f"{sorted(splits['test'])[:5]}")
    return out


def subsample(store: TokenStore, clips: Sequence[int], fraction: float, seed: int, task: Task) -> list[int]:
    """A seeded, class-stratified ``fraction`` of ``clips`` (at least one clip per class present).
    Regression-only tasks draw uniformly. ``fraction >= 1`` returns ``clips``."""
    clips = list(clips)
    if fraction >= 1.0:
        return clips
    if fraction <= 0:
        raise ValueError(f"label fraction must be in (0, 1], got {fraction}")
    rng = np.random.default_rng([seed, int(round(fraction * 1e6))])
    if task.num_classes:
        by: dict[int, list[int]] = {}
        for i in clips:
            by.setdefault(int(store.labels[i]), []).append(i)
        chosen = []
        for _, members in sorted(by.items()):
            k = max(1, int(round(fraction * len(members))))
            chosen += rng.choice(members, size=min(k, len(members)), replace=False).tolist()
        return sorted(chosen)
    k = max(2, int(round(fraction * len(clips))))
    return sorted(rng.choice(clips, size=min(k, len(clips)), replace=False).tolist())


class RepeatDataset(Dataset):
    """``dataset`` repeated ``times`` (item ``j`` = ``dataset[j % n]``); passes ``set_epoch`` on."""

    def __init__(self, dataset: Dataset, times: int):
        self.dataset, self.times = dataset, max(1, int(times))
        self.n = len(dataset)  # type: ignore[arg-type]

    def __len__(self) -> int:
        return self.n * self.times

    def __getitem__(self, j: int) -> Any:
        return self.dataset[j % self.n]

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)


def speakers_of(store: TokenStore, clips: Sequence[int]) -> list[str]:
    """The sorted speaker ids of ``clips`` (store clip indices)."""
    return sorted({str(store.speakers[i]) for i in clips})


def fold_warnings(store: TokenStore, fold: Any, ids: dict[str, list[int]]) -> list[str]:
    """Why the numbers of a fold (clip ids per split from :func:`fold_clips`) may mean little:
    too few test speakers or clips ("fold too small to mean anything"), too few training speakers."""
    def speakers(split: str) -> int:
        return len(speakers_of(store, ids[split]))

    out = []
    n_test, n_test_spk, n_train_spk = len(ids["test"]), speakers("test"), speakers("train")
    if n_test_spk < MIN_TEST_SPEAKERS or n_test < MIN_TEST_CLIPS:
        out.append(f"{fold_title(fold)}: fold too small to mean anything ({n_test_spk} test speaker(s), "
                   f"{n_test} test clips; want >= {MIN_TEST_SPEAKERS} speakers and >= {MIN_TEST_CLIPS} clips)")
    if n_train_spk < MIN_TRAIN_SPEAKERS:
        out.append(f"{fold_title(fold)}: only {n_train_spk} training speaker(s) (want >= {MIN_TRAIN_SPEAKERS}); "
                   "the model may not generalise to unseen speakers")
    return out
